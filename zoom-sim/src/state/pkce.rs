//! PKCE (RFC 7636): the challenge bound to a code at authorize time and the
//! verifier check at token time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// PKCE (RFC 7636) as bound to a code at authorize time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkce {
    pub challenge: String,
    pub method: PkceMethod,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PkceMethod {
    S256,
    Plain,
}

impl Pkce {
    /// Validates the authorize-time parameters. RFC 7636 §4.3: a missing method means `plain`.
    pub fn from_request(challenge: &str, method: Option<&str>) -> Result<Pkce, String> {
        let method = match method {
            None | Some("plain") => PkceMethod::Plain,
            Some("S256") => PkceMethod::S256,
            Some(other) => {
                return Err(format!(
                    "code_challenge_method must be S256 or plain, not {other:?}"
                ));
            }
        };
        if !is_pkce_string(challenge) {
            return Err(
                "code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]".to_owned(),
            );
        }
        Ok(Pkce {
            challenge: challenge.to_owned(),
            method,
        })
    }

    /// S256: BASE64URL-NOPAD(SHA256(verifier)) == challenge; plain: verifier == challenge.
    pub fn verify(&self, verifier: &str) -> bool {
        if !is_pkce_string(verifier) {
            return false;
        }
        match self.method {
            PkceMethod::Plain => verifier == self.challenge,
            PkceMethod::S256 => s256_challenge(verifier) == self.challenge,
        }
    }
}

/// The S256 code challenge for a verifier.
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 §4.1: 43..=128 characters from the unreserved set.
fn is_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}
