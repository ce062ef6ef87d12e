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
mod tests {
    use std::sync::OnceLock;

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;
    use tonic::{Code, codegen::http::HeaderValue};

    use super::*;
    use crate::config::security::tests::{Pair, make_pair, pair};

    fn other_pair() -> &'static Pair {
        static PAIR: OnceLock<Pair> = OnceLock::new();
        PAIR.get_or_init(make_pair)
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn sign(pair: &Pair, claims: &serde_json::Value) -> String {
        let key = EncodingKey::from_rsa_pem(pair.private_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
    }

    fn admin_claims() -> serde_json::Value {
        json!({"sub": "ops@example.com", "role": "admin", "exp": now() + 600})
    }

    fn authenticator() -> Authenticator {
        Authenticator::new(&AuthPublicKey::from_pem(&pair().public_pem).unwrap())
    }

    /// Any JobsService method: admin only.
    const JOBS_METHOD: &str = "/proto.JobsService/ListJobs";

    fn metadata(authorization: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(AUTHORIZATION, HeaderValue::try_from(authorization).unwrap());
        map
    }

    fn check(authorization: &str) -> Result<Option<Caller>, Status> {
        authenticator().check(&metadata(authorization), JOBS_METHOD)
    }

    fn assert_refused(authorization: &str, code: Code, needle: &str) {
        let status = check(authorization).expect_err(needle);
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(needle), "{status:?}");
        // The token (or any long piece of it) is never echoed.
        let token = authorization.trim_start_matches("Bearer ");
        for part in token.split('.').filter(|p| p.len() >= 8) {
            assert!(!status.message().contains(part), "{status:?}");
        }
    }

    fn b64(value: &serde_json::Value) -> String {
        base64url(value.to_string().as_bytes())
    }

    fn base64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    #[test]
    fn a_valid_admin_token_passes_bare_or_as_bearer() {
        let token = sign(pair(), &admin_claims());
        let caller = check(&token).unwrap().unwrap();
        assert_eq!(caller.subject.as_deref(), Some("ops@example.com"));
        assert!(check(&format!("Bearer {token}")).unwrap().is_some());
        assert!(check(&format!("bearer  {token} ")).unwrap().is_some());
        let upper = sign(pair(), &json!({"role": "ADMIN", "exp": now() + 60}));
        let caller = check(&format!("Bearer {upper}")).unwrap().unwrap();
        assert_eq!((caller.subject, caller.role), (None, Role::Admin));
    }

    #[test]
    fn a_missing_or_empty_token_is_unauthenticated() {
        let status = authenticator()
            .check(&HeaderMap::new(), JOBS_METHOD)
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.message().contains("missing"), "{status:?}");
        assert_refused("Bearer ", Code::Unauthenticated, "empty");
        assert_refused("Basic dXNlcjpwYXNz", Code::Unauthenticated, "Bearer");
        assert_refused("garbage", Code::Unauthenticated, "malformed");
        assert_refused("a.b.c", Code::Unauthenticated, "malformed");
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert_refused(&long, Code::Unauthenticated, "too long");
        let mut two = metadata(&sign(pair(), &admin_claims()));
        two.append(AUTHORIZATION, HeaderValue::from_static("x"));
        let status = authenticator().check(&two, JOBS_METHOD).unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }

    #[test]
    fn expired_and_immature_tokens_are_unauthenticated_beyond_the_leeway() {
        let leeway = i64::try_from(LEEWAY_SECS).unwrap();
        let expired = sign(
            pair(),
            &json!({"role": "admin", "exp": now() - leeway - 10}),
        );
        assert_refused(&expired, Code::Unauthenticated, "expired");
        let within = sign(pair(), &json!({"role": "admin", "exp": now() - 5}));
        assert!(check(&within).is_ok(), "expired within the leeway passes");

        let immature = sign(
            pair(),
            &json!({"role": "admin", "exp": now() + 600, "nbf": now() + leeway + 60}),
        );
        assert_refused(&immature, Code::Unauthenticated, "not valid yet");
        let soon = sign(
            pair(),
            &json!({"role": "admin", "exp": now() + 600, "nbf": now() + 5}),
        );
        assert!(check(&soon).is_ok(), "nbf within the leeway passes");

        let no_exp = sign(pair(), &json!({"role": "admin"}));
        assert_refused(&no_exp, Code::Unauthenticated, "exp");
        let bad_exp = sign(pair(), &json!({"role": "admin", "exp": "tomorrow"}));
        assert_refused(&bad_exp, Code::Unauthenticated, "exp");
    }

    #[test]
    fn only_rs256_is_accepted() {
        let claims = admin_claims();
        // alg none, no signature.
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&claims)
        );
        assert_refused(&none, Code::Unauthenticated, "");
        // HS256 keyed with the public key's PEM bytes (the classic confusion).
        let hs256 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(pair().public_pem.as_bytes()),
        )
        .unwrap();
        assert_refused(&hs256, Code::Unauthenticated, "RS256 only");
        // Another RSA algorithm with the right key.
        let rs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::RS512),
            &claims,
            &EncodingKey::from_rsa_pem(pair().private_pem.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_refused(&rs512, Code::Unauthenticated, "RS256 only");
        // An RS256 header on an RS512 signature.
        let mut parts: Vec<&str> = rs512.split('.').collect();
        let header = b64(&json!({"alg": "RS256", "typ": "JWT"}));
        parts[0] = &header;
        assert_refused(&parts.join("."), Code::Unauthenticated, "signature");
    }

    #[test]
    fn a_token_signed_by_another_key_or_tampered_is_unauthenticated() {
        let forged = sign(other_pair(), &admin_claims());
        assert_refused(&forged, Code::Unauthenticated, "signature");
        let user = sign(pair(), &json!({"role": "user", "exp": now() + 600}));
        let admin_claims = b64(&json!({"role": "admin", "exp": now() + 600}));
        let mut parts: Vec<&str> = user.split('.').collect();
        parts[1] = &admin_claims;
        assert_refused(&parts.join("."), Code::Unauthenticated, "signature");
    }

    #[test]
    fn a_valid_token_without_the_admin_role_is_permission_denied() {
        for claims in [
            json!({"role": "user", "exp": now() + 600}),
            json!({"exp": now() + 600}),
            json!({"role": ["admin"], "exp": now() + 600}),
            json!({"role": "administrator", "exp": now() + 600}),
            json!({"roles": "admin", "exp": now() + 600}),
        ] {
            let token = sign(pair(), &claims);
            assert_refused(&token, Code::PermissionDenied, "admin");
        }
    }

    #[test]
    fn each_role_may_call_only_its_methods() {
        let methods = [
            JOBS_METHOD,
            "/proto.JobsService/GetJob",
            "/proto.JobsService/CreateJob",
            "/proto.JobsService/DeleteJob",
            "/scheduler.v1.JobEvents/Subscribe",
            "/scheduler.v1.JobEvents/ReportResult",
            "/scheduler.v1.JobEvents/Ack",
            "/scheduler.v1.JobEvents/SomethingNew",
        ];
        for (claim, role, methods_of_role) in [
            ("executor", Role::Executor, &EXECUTOR_METHODS[..]),
            ("Executor", Role::Executor, &EXECUTOR_METHODS[..]),
            ("viewer", Role::Viewer, &VIEWER_METHODS[..]),
            ("admin", Role::Admin, &methods[..]),
        ] {
            let token = sign(pair(), &json!({"role": claim, "exp": now() + 600}));
            for path in methods {
                let checked = authenticator().check(&metadata(&token), path);
                match checked {
                    Ok(caller) if methods_of_role.contains(&path) => {
                        assert_eq!(caller.map(|c| c.role), Some(role), "{claim} {path}");
                    }
                    Err(status) if !methods_of_role.contains(&path) => {
                        assert_eq!(status.code(), Code::PermissionDenied, "{claim} {path}");
                        assert!(status.message().contains(role.claim()), "{status:?}");
                    }
                    other => panic!("{claim} {path}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn authenticate_names_the_role_whatever_the_method() {
        let token = sign(pair(), &json!({"role": "Viewer", "exp": now() + 600}));
        let caller = authenticator().authenticate(&metadata(&token)).unwrap();
        assert_eq!(caller.map(|c| c.role), Some(Role::Viewer));
        let unknown = sign(pair(), &json!({"role": "auditor", "exp": now() + 600}));
        let refused = authenticator()
            .authenticate(&metadata(&unknown))
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert!(refused.message().contains("viewer"), "{refused:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_expires_with_the_token_and_the_leeway() {
        let token = sign(pair(), &json!({"role": "executor", "exp": now() + 10}));
        let started = Instant::now();
        let caller = authenticator()
            .check(&metadata(&token), EXECUTOR_METHODS[0])
            .unwrap()
            .unwrap();
        let left = caller.expires - started;
        // exp is whole seconds, 9 to 10 s away; then the leeway, and the
        // rest of that second.
        let leeway = Duration::from_secs(LEEWAY_SECS);
        assert!(
            left > leeway + Duration::from_secs(9) && left <= leeway + Duration::from_secs(11),
            "{left:?}"
        );
    }

    #[test]
    fn disabled_lets_all_through() {
        let disabled = Authenticator::from_key(None);
        assert!(!disabled.is_enabled());
        assert_eq!(
            disabled.check(&HeaderMap::new(), JOBS_METHOD).unwrap(),
            None
        );
        assert!(authenticator().is_enabled());
    }
}
