//! Bearer-token authentication with four roles.
//!
//! Only SHA-256 digests of tokens are kept in memory, and a presented token is compared against
//! every configured digest in constant time, so neither timing nor a heap dump reveals a secret.

use std::fmt;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::AppState;
use crate::error::ApiError;

/// What a token may do. `Admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Ingest,
    Analyst,
    Admin,
    /// A gateway's bouncer: reads decisions (`GET /v1/decisions`) and nothing else.
    Enforcer,
}

impl Role {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "ingest" => Some(Role::Ingest),
            "analyst" => Some(Role::Analyst),
            "admin" => Some(Role::Admin),
            "enforcer" => Some(Role::Enforcer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
            Role::Enforcer => "enforcer",
        }
    }

    /// Whether a caller holding `self` may act where `required` is needed.
    pub fn allows(self, required: Role) -> bool {
        self == Role::Admin || self == required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One configured token: its role and the SHA-256 of the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub role: Role,
    digest: [u8; 32],
}

impl fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSpec({}, {})", self.role, self.fingerprint())
    }
}

/// Tokens shorter than this are refused: they would be guessable.
const MIN_TOKEN_LEN: usize = 12;

impl TokenSpec {
    /// Parses `role:secret` or `role:sha256:HEX`.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let (role, rest) = entry
            .split_once(':')
            .ok_or_else(|| "expected role:token or role:sha256:HEX".to_string())?;
        let role = Role::parse(role.trim())
            .ok_or_else(|| format!("unknown role {role:?} (ingest, analyst, admin or enforcer)"))?;
        let rest = rest.trim();
        if let Some(hex_digest) = rest.strip_prefix("sha256:") {
            let bytes =
                hex::decode(hex_digest).map_err(|_| "sha256 digest is not hex".to_string())?;
            let digest: [u8; 32] = bytes
                .try_into()
                .map_err(|_| "sha256 digest must be 64 hex characters".to_string())?;
            return Ok(Self { role, digest });
        }
        if rest.len() < MIN_TOKEN_LEN {
            return Err(format!("token must be at least {MIN_TOKEN_LEN} characters"));
        }
        Ok(Self {
            role,
            digest: Sha256::digest(rest.as_bytes()).into(),
        })
    }

    /// A short, non-secret name for audit entries and logs.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.digest[..4])
    }
}

/// Checks presented tokens against the configured ones.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    tokens: Vec<TokenSpec>,
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `None` when authentication is off (loopback-only mode).
    pub role: Option<Role>,
    /// Recorded in audit entries: `analyst-1a2b3c4d`, or `local` with auth off.
    pub actor: String,
}

impl Caller {
    /// 403 unless the caller's role allows `required`.
    pub fn require(&self, required: Role) -> Result<(), ApiError> {
        match self.role {
            None => Ok(()),
            Some(role) if role.allows(required) => Ok(()),
            Some(_) => Err(ApiError::Forbidden(required)),
        }
    }
}

impl Authenticator {
    pub fn new(tokens: Vec<TokenSpec>) -> Self {
        Self { tokens }
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Resolves an `Authorization` header value to a caller, or 401.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Caller, ApiError> {
        if !self.enabled() {
            return Ok(Caller {
                role: None,
                actor: "local".to_string(),
            });
        }
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Scan every entry so timing does not reveal which one matched.
        let mut matched: Option<&TokenSpec> = None;
        for spec in &self.tokens {
            if bool::from(spec.digest.ct_eq(&presented)) && matched.is_none() {
                matched = Some(spec);
            }
        }
        let spec = matched.ok_or(ApiError::Unauthorized)?;
        Ok(Caller {
            role: Some(spec.role),
            actor: format!("{}-{}", spec.role, spec.fingerprint()),
        })
    }
}

impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        state.auth.authenticate(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(vec![
            TokenSpec::parse("ingest:ingest-token-123").unwrap(),
            TokenSpec::parse(&format!(
                "analyst:sha256:{}",
                hex::encode(Sha256::digest(b"analyst-token-456"))
            ))
            .unwrap(),
        ])
    }

    #[test]
    fn a_known_token_resolves_to_its_role() {
        let caller = auth()
            .authenticate(Some("Bearer ingest-token-123"))
            .unwrap();
        assert_eq!(caller.role, Some(Role::Ingest));
        assert!(!caller.actor.contains("ingest-token-123"));
        let caller = auth()
            .authenticate(Some("Bearer analyst-token-456"))
            .unwrap();
        assert_eq!(caller.role, Some(Role::Analyst));
    }

    #[test]
    fn missing_or_unknown_tokens_are_unauthorized() {
        assert!(matches!(
            auth().authenticate(None),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            auth().authenticate(Some("Bearer nope-nope-nope")),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            auth().authenticate(Some("Basic abc")),
            Err(ApiError::Unauthorized)
        ));
    }

    #[test]
    fn the_wrong_role_is_forbidden_and_admin_may_do_everything() {
        let ingest = auth()
            .authenticate(Some("Bearer ingest-token-123"))
            .unwrap();
        assert!(ingest.require(Role::Ingest).is_ok());
        assert!(matches!(
            ingest.require(Role::Analyst),
            Err(ApiError::Forbidden(_))
        ));
        assert!(Role::Admin.allows(Role::Analyst));
        assert!(Role::Admin.allows(Role::Ingest));
    }

    #[test]
    fn an_enforcer_token_passes_only_the_enforcer_check() {
        let auth = Authenticator::new(vec![
            TokenSpec::parse("enforcer:enforcer-token-789").unwrap()
        ]);
        let caller = auth
            .authenticate(Some("Bearer enforcer-token-789"))
            .unwrap();
        assert!(caller.require(Role::Enforcer).is_ok());
        for other in [Role::Ingest, Role::Analyst, Role::Admin] {
            assert!(caller.require(other).is_err(), "enforcer passed {other}");
        }
        assert!(Role::Admin.allows(Role::Enforcer));
    }

    #[test]
    fn with_auth_off_everyone_is_the_local_operator() {
        let caller = Authenticator::default().authenticate(None).unwrap();
        assert_eq!(caller.role, None);
        assert!(caller.require(Role::Admin).is_ok());
    }

    #[test]
    fn short_tokens_and_unknown_roles_are_refused() {
        assert!(TokenSpec::parse("ingest:short").is_err());
        assert!(TokenSpec::parse("root:long-enough-token").is_err());
        assert!(TokenSpec::parse("analyst:sha256:abcd").is_err());
    }
}
