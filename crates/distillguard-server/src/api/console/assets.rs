//! The console's static files, embedded in the binary (no CDN, nothing to install).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Name, content type and bytes of every asset (vendored libraries: `assets/vendor/README.md`).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "htmx.min.js",
        "text/javascript",
        include_bytes!("../../../assets/vendor/htmx.min.js"),
    ),
    (
        "cytoscape.min.js",
        "text/javascript",
        include_bytes!("../../../assets/vendor/cytoscape.min.js"),
    ),
    (
        "console.js",
        "text/javascript",
        include_bytes!("../../../assets/console.js"),
    ),
    (
        "console.css",
        "text/css",
        include_bytes!("../../../assets/console.css"),
    ),
];

/// `GET /ui/assets/{name}`: public (the login page needs its style), cached for a day; URLs carry
/// the service version, so an upgrade is fetched anew.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
