//! Authentication and roles of the gRPC calls.
//!
//! Every `proto.JobsService` and `scheduler.v1.JobEvents` call carries a JWT
//! in the `authorization` metadata entry, bare or as `Bearer <token>`. The
//! token must be signed with RS256 by the auth service whose RSA public key
//! `AUTH_PUBLIC_KEY_FILE` names: any other algorithm (`none`, HS256, even
//! HS256 keyed with the public key's bytes, RS384, ...) is refused before the
//! signature is looked at. `exp` is required; `exp` and `nbf` are checked
//! with [`LEEWAY_SECS`] of tolerance for clock skew between the auth service
//! and this one. `iss` and `aud` are not checked: the key alone says who
//! issued the token.
//!
//! The claim `role` (a string, in any case) says what the caller may call:
//! `admin` everything, `executor` only [`EXECUTOR_METHODS`] (the events
//! stream, its acknowledgements and run results: what an executor needs,
//! and no job management), `viewer` only [`VIEWER_METHODS`] (every read:
//! jobs, runs, schedule previews and the events stream; no change).
//! A missing, malformed, forged, expired or not-yet-valid token is
//! UNAUTHENTICATED; a valid token whose role may not call the method is
//! PERMISSION_DENIED. Status messages say what is wrong in fixed words and
//! never repeat the token or its claims; the logs do not either.
//!
//! A token is checked when the call starts; a stream outlives that check,
//! so [`Authenticated`] ends a server stream ([`STREAMING_METHODS`]) with
//! UNAUTHENTICATED `token expired` once the token's `exp` and the leeway
//! have passed: a revoked executor is cut off by its token's lifetime at
//! the latest.
//!
//! Reflection and health are not behind this check (see `startup`):
//! [`Authenticated`] wraps only the `JobsService` and `JobEvents` servers.

mod service;

use std::{collections::HashSet, fmt, sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use rsa::traits::PublicKeyParts;
use serde::Deserialize;
use tokio::time::Instant;
use tonic::{Status, codegen::http::HeaderMap};

pub use service::Authenticated;

use crate::config::AuthPublicKey;

/// Tolerance, in seconds, on `exp` and `nbf` for clock skew between the auth
/// service and this one: a token is accepted up to 30 s after its `exp` and
/// from 30 s before its `nbf`.
pub const LEEWAY_SECS: u64 = 30;

/// The `role` claim of a caller that may call everything (compared without
/// regard to case).
pub const ADMIN_ROLE: &str = "admin";

/// The `role` claim of an executor (compared without regard to case).
pub const EXECUTOR_ROLE: &str = "executor";

/// The `role` claim of a caller that may read but not change (compared
/// without regard to case): the web console's operators who only watch.
pub const VIEWER_ROLE: &str = "viewer";

/// The gRPC methods (request paths) a viewer may call: the reads.
pub const VIEWER_METHODS: [&str; 6] = [
    "/proto.JobsService/GetJob",
    "/proto.JobsService/ListJobs",
    "/proto.JobsService/CountJobs",
    "/proto.JobsService/ListJobRuns",
    "/proto.JobsService/PreviewSchedule",
    "/scheduler.v1.JobEvents/Subscribe",
];

/// The gRPC methods (request paths) an executor may call.
pub const EXECUTOR_METHODS: [&str; 3] = [
    "/scheduler.v1.JobEvents/Subscribe",
    "/scheduler.v1.JobEvents/ReportResult",
    "/scheduler.v1.JobEvents/Ack",
];

/// The server-streaming methods: their streams end when the token expires.
/// (A unary call is answered within the request timeout; cutting its answer
/// off would hide whether it took effect.)
pub const STREAMING_METHODS: [&str; 1] = ["/scheduler.v1.JobEvents/Subscribe"];

/// Longest `authorization` value looked at, in bytes; longer ones are
/// refused without being decoded.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The metadata entry that carries the token.
pub const AUTHORIZATION: &str = "authorization";

/// What a token's `role` claim lets its holder call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// [`EXECUTOR_METHODS`] only.
    Executor,
    /// [`VIEWER_METHODS`] only.
    Viewer,
}

impl Role {
    /// The role a `role` claim names, if any.
    fn of_claim(claim: Option<&serde_json::Value>) -> Option<Role> {
        match claim {
            Some(serde_json::Value::String(role)) if role.eq_ignore_ascii_case(ADMIN_ROLE) => {
                Some(Role::Admin)
            }
            Some(serde_json::Value::String(role)) if role.eq_ignore_ascii_case(EXECUTOR_ROLE) => {
                Some(Role::Executor)
            }
            Some(serde_json::Value::String(role)) if role.eq_ignore_ascii_case(VIEWER_ROLE) => {
                Some(Role::Viewer)
            }
            _ => None,
        }
    }

    /// The claim that names this role.
    pub fn claim(self) -> &'static str {
        match self {
            Role::Admin => ADMIN_ROLE,
            Role::Executor => EXECUTOR_ROLE,
            Role::Viewer => VIEWER_ROLE,
        }
    }

    /// Why this role may not call the method at `path`
    /// (`/package.Service/Method`); `None` if it may.
    fn refusal(self, path: &str) -> Option<&'static str> {
        let (methods, refusal): (&[&str], _) = match self {
            Role::Admin => return None,
            Role::Executor => (
                &EXECUTOR_METHODS,
                "an executor token may call only JobEvents Subscribe, ReportResult and Ack",
            ),
            Role::Viewer => (
                &VIEWER_METHODS,
                "a viewer token may only read: GetJob, ListJobs, CountJobs, ListJobRuns, PreviewSchedule and Subscribe",
            ),
        };
        (!methods.contains(&path)).then_some(refusal)
    }
}

/// Who made an authenticated call; handlers find it in the request's
/// extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub` claim, when it is a string.
    pub subject: Option<String>,
    /// What the token's `role` claim lets the caller call.
    pub role: Role,
    /// When the token stops being accepted: its `exp` and the leeway (to
    /// the end of that second), on tokio's clock.
    pub expires: Instant,
}

/// The claims looked at beyond `nbf` (which `jsonwebtoken` checks, as it
/// checks `exp`). Any JSON value is accepted here so that an odd type is a
/// refusal by the role rule, not a parse error.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    role: Option<serde_json::Value>,
    #[serde(default)]
    sub: Option<serde_json::Value>,
    /// A number once `jsonwebtoken` accepted the token (it requires `exp`).
    #[serde(default)]
    exp: Option<serde_json::Value>,
}

struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

/// Checks the JWT of each call and its role against the method; see
/// [`Authenticated`], which applies it. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    verifier: Option<Arc<Verifier>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl Authenticator {
    /// Accepts RS256 tokens signed with the private half of `key`.
    pub fn new(key: &AuthPublicKey) -> Authenticator {
        let key = DecodingKey::from_rsa_raw_components(
            &key.rsa_key().n().to_bytes_be(),
            &key.rsa_key().e().to_bytes_be(),
        );
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::from(["exp".to_owned()]);
        Authenticator {
            verifier: Some(Arc::new(Verifier { key, validation })),
        }
    }

    /// Lets every call through: for development without an auth service.
    pub fn disabled() -> Authenticator {
        Authenticator { verifier: None }
    }

    /// Checks tokens against `key`, or lets everything through without one.
    pub fn from_key(key: Option<&AuthPublicKey>) -> Authenticator {
        key.map_or_else(Authenticator::disabled, Authenticator::new)
    }

    /// Whether calls are checked.
    pub fn is_enabled(&self) -> bool {
        self.verifier.is_some()
    }

    /// Checks the `authorization` metadata of a call of the method at
    /// `path`. `Ok(None)` when checks are disabled.
    pub fn check(&self, headers: &HeaderMap, path: &str) -> Result<Option<Caller>, Status> {
        let caller = self.authenticate(headers)?;
        let refused = caller
            .as_ref()
            .and_then(|c| Some((c, c.role.refusal(path)?)));
        if let Some((caller, message)) = refused {
            let subject = caller.subject.as_deref().unwrap_or("-");
            tracing::info!(subject, path, "call refused: {message}");
            return Err(Status::permission_denied(message));
        }
        Ok(caller)
    }

    /// Who the `authorization` metadata says the caller is, whatever it
    /// calls: a valid token with a known role. `Ok(None)` when checks are
    /// disabled.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Caller>, Status> {
        let Some(verifier) = &self.verifier else {
            return Ok(None);
        };
        let token = bearer_token(headers).map_err(unauthenticated)?;
        let data = jsonwebtoken::decode::<Claims>(token, &verifier.key, &verifier.validation)
            .map_err(|err| unauthenticated(token_error(err.kind())))?;
        let subject = match data.claims.sub {
            Some(serde_json::Value::String(sub)) => Some(sub),
            _ => None,
        };
        let Some(role) = Role::of_claim(data.claims.role.as_ref()) else {
            let message = "the token's role claim must be admin, executor or viewer";
            tracing::info!(
                subject = subject.as_deref().unwrap_or("-"),
                "call refused: {message}"
            );
            return Err(Status::permission_denied(message));
        };
        Ok(Some(Caller {
            subject,
            role,
            expires: expiry(
                data.claims
                    .exp
                    .as_ref()
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(0.0),
            ),
        }))
    }
}

/// The instant, on tokio's clock, at which a token with this `exp` (Unix
/// seconds) stops being accepted: the end of the second `exp` plus the
/// leeway (jsonwebtoken compares whole seconds, and refuses a token only
/// once `now - leeway > exp`), so that a stream ends when a new call with
/// its token would be refused.
fn expiry(exp: f64) -> Instant {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    // (Never negative: an expired token was refused, and an `exp` that is
    // not a number, which jsonwebtoken refuses too, is no time left. A far
    // `exp` is capped at a year, which no stream lasts.)
    let left = (exp + (LEEWAY_SECS + 1) as f64 - now).clamp(0.0, 365.0 * 24.0 * 3600.0);
    Instant::now() + Duration::from_secs_f64(left)
}

fn unauthenticated(reason: &'static str) -> Status {
    tracing::debug!(reason, "call refused: unauthenticated");
    Status::unauthenticated(reason)
}

/// The token of the one `authorization` entry: `Bearer <token>` (scheme in
/// any case) or a bare token.
fn bearer_token(headers: &HeaderMap) -> Result<&str, &'static str> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values
        .next()
        .ok_or("missing authorization metadata: send `authorization: Bearer <JWT>`")?;
    if values.next().is_some() {
        return Err("more than one authorization metadata entry");
    }
    if value.len() > MAX_TOKEN_BYTES {
        return Err("authorization metadata too long");
    }
    let value = value
        .to_str()
        .map_err(|_| "authorization metadata is not visible ASCII")?
        .trim();
    if value.eq_ignore_ascii_case("bearer") {
        return Err("empty token in authorization metadata");
    }
    let token = match value.split_once(char::is_whitespace) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        Some(_) => return Err("authorization must be `Bearer <JWT>` or a bare JWT"),
        None => value,
    };
    if token.is_empty() {
        return Err("empty token in authorization metadata");
    }
    Ok(token)
}

/// Fixed words for a refused token: never the token or its claims.
fn token_error(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)",
        ErrorKind::InvalidSignature => "token signature invalid",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "token algorithm not accepted: RS256 only"
        }
        ErrorKind::MissingRequiredClaim(_) => "token has no exp claim",
        ErrorKind::InvalidClaimFormat(_) => "token has a malformed exp or nbf claim",
        _ => "malformed token",
    }
}

#[cfg(test)]
mod tests;
