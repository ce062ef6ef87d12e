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
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
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
