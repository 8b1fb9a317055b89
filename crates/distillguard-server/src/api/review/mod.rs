//! The analyst review API under `/v1` (documented in `docs/review-api.md` and `/openapi.json`).
//!
//! Reading needs the `analyst` role, writing `analyst` or `admin` (`admin` passes every check,
//! see [`crate::auth::Caller::require`]). Handlers reach the store through [`AppState::store`].

pub(crate) mod admin;
pub(crate) mod params;
pub(crate) mod subjects;
#[cfg(test)]
mod tests;

use axum::routing::{delete, get, patch, post};
use axum::Router;
use distillguard_store::StoreError;

use super::AppState;
use crate::error::ApiError;
use subjects::{Accounts, Clusters};

/// The OpenAPI document of the review API, also kept as `docs/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../../../docs/openapi.json");

/// Every review route; merge into the main router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(admin::openapi))
        .route("/v1/accounts", get(subjects::list::<Accounts>))
        .route(
            "/v1/accounts/bulk-review",
            post(subjects::bulk_review::<Accounts>),
        )
        .route("/v1/accounts/{id}", get(subjects::get_account))
        .route(
            "/v1/accounts/{id}/review",
            patch(subjects::review::<Accounts>),
        )
        .route(
            "/v1/accounts/{id}/notes",
            get(subjects::list_notes::<Accounts>).post(subjects::add_note::<Accounts>),
        )
        .route("/v1/accounts/{id}/audit", get(subjects::audit::<Accounts>))
        .route("/v1/clusters", get(subjects::list::<Clusters>))
        .route(
            "/v1/clusters/bulk-review",
            post(subjects::bulk_review::<Clusters>),
        )
        .route("/v1/clusters/{id}", get(subjects::get_cluster))
        .route(
            "/v1/clusters/{id}/review",
            patch(subjects::review::<Clusters>),
        )
        .route(
            "/v1/clusters/{id}/notes",
            get(subjects::list_notes::<Clusters>).post(subjects::add_note::<Clusters>),
        )
        .route("/v1/clusters/{id}/audit", get(subjects::audit::<Clusters>))
        .route(
            "/v1/allowlist",
            get(admin::list_allowlist).post(admin::add_allowlist),
        )
        .route("/v1/allowlist/{entry}", delete(admin::remove_allowlist))
        .route("/v1/stats", get(admin::stats))
}

/// Seconds a client is told to wait when the database is unreachable.
const STORE_RETRY_AFTER_SECS: u64 = 5;

/// The HTTP meaning of each store failure.
pub(crate) fn api_error(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound(what) => ApiError::NotFound(what),
        StoreError::VersionConflict { current } => ApiError::Conflict(format!(
            "the finding changed since you read it; the current version is {current}"
        )),
        StoreError::Conflict(what) => {
            ApiError::Conflict(format!("a concurrent change won ({what}); retry"))
        }
        error @ (StoreError::InvalidTransition { .. } | StoreError::InvalidInput(_)) => {
            ApiError::Unprocessable(error.to_string())
        }
        // 409, not 400: the request is well formed, but the cursor conflicts with the query (it
        // was made for another filter or sort, or altered); the first page is always readable.
        StoreError::InvalidCursor => ApiError::Conflict(
            "the cursor does not belong to this query; start again from the first page".into(),
        ),
        StoreError::Unavailable(source) => {
            tracing::warn!(error = %source, "store unavailable");
            ApiError::Unavailable {
                retry_after_secs: STORE_RETRY_AFTER_SECS,
            }
        }
        other => ApiError::Internal(other.into()),
    }
}
