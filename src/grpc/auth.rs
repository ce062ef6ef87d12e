//! Admin authentication of `proto.JobsService` calls.
//!
//! Every call carries a JWT in the `authorization` metadata entry, bare or as
//! `Bearer <token>`. The token must be signed with RS256 by the auth service
//! whose RSA public key `AUTH_PUBLIC_KEY_FILE` names: any other algorithm
//! (`none`, HS256, even HS256 keyed with the public key's bytes, RS384, ...)
//! is refused before the signature is looked at. `exp` is required; `exp`
//! and `nbf` are checked with [`LEEWAY_SECS`] of tolerance for clock skew
//! between the auth service and this one. The claim `role` must be the
//! string `admin`, in any case. `iss` and `aud` are not checked: the key
//! alone says who issued the token.
//!
//! A missing, malformed, forged, expired or not-yet-valid token is
//! UNAUTHENTICATED; a valid token without the admin role is
//! PERMISSION_DENIED. Status messages say what is wrong in fixed words and
//! never repeat the token or its claims; the logs do not either.
//!
//! Reflection and health are not behind this check (see `startup`): the
//! [`Authenticator`] wraps only the `JobsService` server.

use std::{collections::HashSet, fmt, sync::Arc};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use rsa::traits::PublicKeyParts;
use serde::Deserialize;
use tonic::{Request, Status, metadata::MetadataMap, service::Interceptor};

use crate::config::AuthPublicKey;

/// Tolerance, in seconds, on `exp` and `nbf` for clock skew between the auth
/// service and this one: a token is accepted up to 30 s after its `exp` and
/// from 30 s before its `nbf`.
pub const LEEWAY_SECS: u64 = 30;

/// The value the `role` claim must have (compared without regard to case).
pub const ADMIN_ROLE: &str = "admin";

/// Longest `authorization` value looked at, in bytes; longer ones are
/// refused without being decoded.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The metadata entry that carries the token.
pub const AUTHORIZATION: &str = "authorization";

/// Who made an authenticated call; handlers find it in the request's
/// extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub` claim, when it is a string.
    pub subject: Option<String>,
}

/// The claims looked at beyond `exp` and `nbf` (which `jsonwebtoken` checks).
/// Any JSON value is accepted here so that an odd type is a refusal by the
/// role rule, not a parse error.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    role: Option<serde_json::Value>,
    #[serde(default)]
    sub: Option<serde_json::Value>,
}

struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

/// Checks the admin JWT of each `JobsService` call, as a tonic
/// [`Interceptor`]. Cheap to clone.
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
    /// Accepts RS256 admin tokens signed with the private half of `key`.
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

    /// Checks the call's `authorization` metadata. `Ok(None)` when checks are
    /// disabled.
    pub fn check(&self, metadata: &MetadataMap) -> Result<Option<Caller>, Status> {
        let Some(verifier) = &self.verifier else {
            return Ok(None);
        };
        let token = bearer_token(metadata).map_err(unauthenticated)?;
        let data = jsonwebtoken::decode::<Claims>(token, &verifier.key, &verifier.validation)
            .map_err(|err| unauthenticated(token_error(err.kind())))?;
        let subject = match data.claims.sub {
            Some(serde_json::Value::String(sub)) => Some(sub),
            _ => None,
        };
        let is_admin = matches!(
            &data.claims.role,
            Some(serde_json::Value::String(role)) if role.eq_ignore_ascii_case(ADMIN_ROLE)
        );
        if !is_admin {
            tracing::info!(
                subject = subject.as_deref().unwrap_or("-"),
                "call refused: not an admin"
            );
            return Err(Status::permission_denied(
                "the token's role claim must be admin",
            ));
        }
        Ok(Some(Caller { subject }))
    }
}

impl Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(caller) = self.check(request.metadata())? {
            request.extensions_mut().insert(caller);
        }
        Ok(request)
    }
}

fn unauthenticated(reason: &'static str) -> Status {
    tracing::debug!(reason, "call refused: unauthenticated");
    Status::unauthenticated(reason)
}

/// The token of the one `authorization` entry: `Bearer <token>` (scheme in
/// any case) or a bare token.
fn bearer_token(metadata: &MetadataMap) -> Result<&str, &'static str> {
    let mut values = metadata.get_all(AUTHORIZATION).iter();
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
    use tonic::{Code, metadata::MetadataValue};

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

    fn metadata(authorization: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert(
            AUTHORIZATION,
            MetadataValue::try_from(authorization).unwrap(),
        );
        map
    }

    fn check(authorization: &str) -> Result<Option<Caller>, Status> {
        authenticator().check(&metadata(authorization))
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
        assert_eq!(
            check(&format!("Bearer {upper}")).unwrap(),
            Some(Caller { subject: None })
        );
    }

    #[test]
    fn a_missing_or_empty_token_is_unauthenticated() {
        let status = authenticator().check(&MetadataMap::new()).unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.message().contains("missing"), "{status:?}");
        assert_refused("Bearer ", Code::Unauthenticated, "empty");
        assert_refused("Basic dXNlcjpwYXNz", Code::Unauthenticated, "Bearer");
        assert_refused("garbage", Code::Unauthenticated, "malformed");
        assert_refused("a.b.c", Code::Unauthenticated, "malformed");
        let long = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert_refused(&long, Code::Unauthenticated, "too long");
        let mut two = metadata(&sign(pair(), &admin_claims()));
        two.append(AUTHORIZATION, MetadataValue::from_static("x"));
        let status = authenticator().check(&two).unwrap_err();
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
    fn the_interceptor_records_the_caller_and_disabled_lets_all_through() {
        let token = sign(pair(), &admin_claims());
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert(AUTHORIZATION, MetadataValue::try_from(token).unwrap());
        let request = authenticator().call(request).unwrap();
        assert_eq!(
            request
                .extensions()
                .get::<Caller>()
                .unwrap()
                .subject
                .as_deref(),
            Some("ops@example.com")
        );
        assert_eq!(
            authenticator().call(Request::new(())).unwrap_err().code(),
            Code::Unauthenticated
        );
        let mut disabled = Authenticator::from_key(None);
        assert!(!disabled.is_enabled());
        assert!(disabled.call(Request::new(())).is_ok());
    }
}
