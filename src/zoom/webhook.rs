//! Zoom webhook signatures: `x-zm-signature: v0=<hex HMAC-SHA256(secret token,
//! "v0:{timestamp}:{raw body}")>`, checked over the bytes exactly as received, in constant time,
//! against every secret token that has connections.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How far a request timestamp may be from now (api.md: 5 minutes).
pub const MAX_SKEW_SECS: i64 = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing x-zm-signature or x-zm-request-timestamp header")]
    MissingHeaders,
    #[error("x-zm-request-timestamp is not a unix timestamp")]
    MalformedTimestamp,
    #[error("x-zm-request-timestamp is more than 5 minutes from now")]
    StaleTimestamp,
    #[error("x-zm-signature is not of the form v0=<hex>")]
    MalformedSignature,
    #[error("signature does not match any configured secret token")]
    BadSignature,
}

impl VerifyError {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            VerifyError::StaleTimestamp => "stale",
            VerifyError::MissingHeaders => "missing_headers",
            _ => "bad_signature",
        }
    }
}

fn mac(secret_token: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; new_from_slice only fails for fixed-size MACs.
    HmacSha256::new_from_slice(secret_token)
        .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()))
}

/// `v0=<hex>` for a body, as Zoom computes it.
pub fn sign(secret_token: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut m = mac(secret_token);
    m.update(b"v0:");
    m.update(timestamp.as_bytes());
    m.update(b":");
    m.update(body);
    format!("v0={}", hex::encode(m.finalize().into_bytes()))
}

/// The answer to `endpoint.url_validation`: hex HMAC-SHA256 of the plain token.
pub fn encrypt_plain_token(secret_token: &[u8], plain_token: &str) -> String {
    let mut m = mac(secret_token);
    m.update(plain_token.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// The signature headers, checked for shape and freshness: all that can be known before the
/// body is read, so a request without them costs nothing more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureHeaders {
    timestamp: String,
    provided: [u8; 32],
}

/// Checks the headers alone: present, a timestamp within 5 minutes of now, `v0=<64 hex>`.
pub fn check_headers(
    signature: Option<&str>,
    timestamp: Option<&str>,
    now_unix: i64,
) -> Result<SignatureHeaders, VerifyError> {
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        return Err(VerifyError::MissingHeaders);
    };
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::MalformedTimestamp)?;
    if now_unix.abs_diff(ts) > MAX_SKEW_SECS.unsigned_abs() {
        return Err(VerifyError::StaleTimestamp);
    }
    let provided: [u8; 32] = signature
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h.trim()).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or(VerifyError::MalformedSignature)?;
    Ok(SignatureHeaders {
        timestamp: timestamp.to_owned(),
        provided,
    })
}

impl SignatureHeaders {
    /// Whether `token` signed `body` (one HMAC, compared in constant time).
    pub fn signed_by(&self, token: &[u8], body: &[u8]) -> bool {
        let mut m = mac(token);
        m.update(b"v0:");
        m.update(self.timestamp.as_bytes());
        m.update(b":");
        m.update(body);
        bool::from(m.finalize().into_bytes().as_slice().ct_eq(&self.provided))
    }

    /// The index of the secret token that signed `body`. The `hinted` apps (those whose client
    /// ID the request's `clientid` header names) are tried first; only if none of them signed
    /// it is every other token tried, each checked (no early exit), so timing does not reveal
    /// which other app matched.
    pub fn signer<'a>(
        &self,
        body: &[u8],
        tokens: impl IntoIterator<Item = &'a [u8]>,
        hinted: &[usize],
    ) -> Result<usize, VerifyError> {
        let tokens: Vec<&[u8]> = tokens.into_iter().collect();
        for &index in hinted {
            if tokens.get(index).is_some_and(|t| self.signed_by(t, body)) {
                return Ok(index);
            }
        }
        let mut matched = None;
        for (index, token) in tokens.iter().enumerate() {
            if hinted.contains(&index) {
                continue;
            }
            if self.signed_by(token, body) && matched.is_none() {
                matched = Some(index);
            }
        }
        matched.ok_or(VerifyError::BadSignature)
    }
}

/// Verifies a request and returns the index of the secret token that signed it.
///
/// Every candidate is checked (no early exit), so timing does not reveal which app matched.
pub fn verify<'a>(
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now_unix: i64,
    secret_tokens: impl IntoIterator<Item = &'a [u8]>,
) -> Result<usize, VerifyError> {
    check_headers(signature, timestamp, now_unix)?.signer(body, secret_tokens, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zoom_published_validation_vector() {
        assert_eq!(
            encrypt_plain_token(b"secretValueTest", "qgg8vlvZRS6UYooatFL8Aw"),
            "70c1f2e2e6ca2d39297490d1f9142c7d701415ea8e6151f6562a08fa657a40ff"
        );
    }

    const BODY: &[u8] = br#"{"event":"meeting.started","event_ts":1700000000000,"payload":{"account_id":"acc1","object":{"id":1}}}"#;

    #[test]
    fn accepts_the_signing_app_and_says_which() {
        let sig = sign(b"token-b", "1700000000", BODY);
        let tokens: [&[u8]; 2] = [b"token-a", b"token-b"];
        assert_eq!(
            verify(Some(&sig), Some("1700000000"), BODY, 1_700_000_010, tokens),
            Ok(1)
        );
    }

    #[test]
    fn signature_covers_the_raw_bytes() {
        let sig = sign(b"t", "1700000000", BODY);
        // The same JSON re-serialised (different whitespace/key order) must not verify.
        let value: serde_json::Value = serde_json::from_slice(BODY).expect("json");
        let reserialised = serde_json::to_vec_pretty(&value).expect("json");
        assert_eq!(
            verify(
                Some(&sig),
                Some("1700000000"),
                &reserialised,
                1_700_000_000,
                [b"t".as_slice()]
            ),
            Err(VerifyError::BadSignature)
        );
        // Signed timestamp cannot be swapped for another in the window.
        assert_eq!(
            verify(
                Some(&sig),
                Some("1700000001"),
                BODY,
                1_700_000_000,
                [b"t".as_slice()]
            ),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn timestamp_window_edges() {
        let ts = 1_700_000_000i64;
        let at = |now: i64| {
            let sig = sign(b"t", &ts.to_string(), BODY);
            verify(
                Some(&sig),
                Some(&ts.to_string()),
                BODY,
                now,
                [b"t".as_slice()],
            )
        };
        assert_eq!(at(ts + 300), Ok(0));
        assert_eq!(at(ts - 300), Ok(0));
        assert_eq!(at(ts + 301), Err(VerifyError::StaleTimestamp));
        assert_eq!(at(ts - 301), Err(VerifyError::StaleTimestamp));
    }

    #[test]
    fn malformed_inputs() {
        let t = [b"t".as_slice()];
        assert_eq!(
            verify(None, Some("1"), BODY, 1, t),
            Err(VerifyError::MissingHeaders)
        );
        assert_eq!(
            verify(Some("v0=00"), None, BODY, 1, t),
            Err(VerifyError::MissingHeaders)
        );
        assert_eq!(
            verify(Some("v0=00"), Some("soon"), BODY, 1, t),
            Err(VerifyError::MalformedTimestamp)
        );
        assert_eq!(
            verify(Some("v1=00"), Some("1"), BODY, 1, t),
            Err(VerifyError::MalformedSignature)
        );
        assert_eq!(
            verify(Some("v0=zz"), Some("1"), BODY, 1, t),
            Err(VerifyError::MalformedSignature)
        );
        let sig = sign(b"t", "1", BODY);
        assert_eq!(
            verify(Some(&sig), Some("1"), BODY, 1, []),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn the_hinted_app_is_tried_first_and_a_wrong_hint_falls_back() {
        let tokens: [&[u8]; 3] = [b"token-a", b"token-b", b"token-c"];
        let sig = sign(b"token-c", "1700000000", BODY);
        let headers = check_headers(Some(&sig), Some("1700000000"), 1_700_000_000).expect("ok");
        assert_eq!(headers.signer(BODY, tokens, &[2]), Ok(2));
        assert_eq!(headers.signer(BODY, tokens, &[0, 7]), Ok(2));
        assert_eq!(headers.signer(BODY, tokens, &[]), Ok(2));
        let forged = sign(b"nobody", "1700000000", BODY);
        let headers = check_headers(Some(&forged), Some("1700000000"), 1_700_000_000).expect("ok");
        assert_eq!(
            headers.signer(BODY, tokens, &[1]),
            Err(VerifyError::BadSignature)
        );
    }

    proptest! {
        #[test]
        fn random_headers_never_panic(
            sig in proptest::option::of("(v0=)?[0-9a-fA-F ]{0,70}"),
            ts in proptest::option::of("[ +-]?[0-9]{0,20}"),
            now in any::<i64>(),
        ) {
            let _ = check_headers(sig.as_deref(), ts.as_deref(), now);
        }

        #[test]
        fn random_inputs_never_panic(
            sig in proptest::option::of(".{0,80}"),
            ts in proptest::option::of(".{0,24}"),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            now in any::<i64>(),
        ) {
            let _ = verify(sig.as_deref(), ts.as_deref(), &body, now, [b"t".as_slice(), b"".as_slice()]);
        }

        #[test]
        fn a_valid_signature_verifies_for_any_body(body in proptest::collection::vec(any::<u8>(), 0..512), token in "[a-zA-Z0-9]{1,40}") {
            let sig = sign(token.as_bytes(), "1700000000", &body);
            prop_assert_eq!(verify(Some(&sig), Some("1700000000"), &body, 1_700_000_000, [token.as_bytes()]), Ok(0));
        }
    }
}
