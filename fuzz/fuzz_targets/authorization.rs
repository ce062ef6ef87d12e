//! Any bytes as the `authorization` header of a CreateJob call, through the
//! authenticator's check: the bearer parsing, then the JWT's header, payload
//! and signature decoding. Nothing panics, and nothing is accepted (no token
//! here is signed with the key): every refusal is UNAUTHENTICATED.
//!
//! The key is a fixed public key with no private half, so that a crash
//! reproduces from its input alone.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rsa::{BigUint, RsaPublicKey, pkcs8::EncodePublicKey, pkcs8::LineEnding};
use scheduler_service::{
    config::AuthPublicKey,
    grpc::auth::{AUTHORIZATION, Authenticator},
};
use tonic::{
    Code,
    codegen::http::{HeaderMap, HeaderValue},
};

fn authenticator() -> &'static Authenticator {
    static AUTHENTICATOR: OnceLock<Authenticator> = OnceLock::new();
    AUTHENTICATOR.get_or_init(|| {
        // Any odd 2048-bit modulus will do: no signature is ever valid.
        let modulus = BigUint::from_bytes_be(&[0xd5; 256]);
        let key = RsaPublicKey::new(modulus, BigUint::from(65_537u32)).expect("RSA public key");
        let pem = key.to_public_key_pem(LineEnding::LF).expect("PEM");
        Authenticator::new(&AuthPublicKey::from_pem(&pem).expect("accepted key"))
    })
}

fuzz_target!(|value: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return; // not a valid header value: HTTP/2 refuses it first
    };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    let status = authenticator()
        .check(&headers, "/proto.JobsService/CreateJob")
        .expect_err("a token nobody signed was accepted");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
});
