//! Random identifiers: tokens, codes, request ids.
//!
//! Zoom's access and refresh tokens are JWTs, but clients must treat them as
//! opaque. We mint strings of the same shape (three base64url segments, the first
//! two decodable JSON) so that size limits, logging redaction and anything that
//! peeks at `exp` behave as with Zoom, while the signature segment is pure
//! randomness: nothing here is verifiable, and that is the point.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::json;

use crate::clock::Millis;

/// `n` bytes from the thread-local CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    buf
}

/// base64url (no padding) of `n` random bytes.
pub fn random_b64(n: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(n))
}

/// What a JWT-shaped token is for; ends up in its `tokenType` claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

/// A JWT-shaped opaque token carrying 32 random bytes in `jti` and 32 more as its
/// "signature", so tokens are unguessable even though the claims are readable.
pub fn jwt_like(kind: TokenKind, client_id: &str, now: Millis, lifetime_secs: u64) -> String {
    let header = json!({"alg": "HS512", "v": "2.0", "kid": random_b64(9)});
    let iat = now / 1000;
    let exp = iat.saturating_add(i64::try_from(lifetime_secs).unwrap_or(i64::MAX));
    let claims = json!({
        "ver": 10,
        "iss": "zoom-sim",
        "clientId": client_id,
        "tokenType": match kind { TokenKind::Access => "access_token", TokenKind::Refresh => "refresh_token" },
        "jti": random_b64(32),
        "iat": iat,
        "exp": exp,
    });
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        random_b64(32)
    )
}

/// An authorization code or pending-consent id: 24 random bytes, 32 characters.
pub fn opaque_id() -> String {
    random_b64(24)
}

/// A random UUID-v4-formatted string, like the ids Zoom puts in webhook headers.
pub fn uuid_like() -> String {
    let mut b = random_bytes(16);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_like_tokens_are_three_segments_with_readable_claims() {
        let t = jwt_like(TokenKind::Access, "cid", 1_700_000_000_000, 30);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64"))
                .expect("json");
        assert_eq!(claims["exp"], 1_700_000_030);
        assert_eq!(claims["tokenType"], "access_token");
        // 32 random bytes in the last segment alone.
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).expect("base64").len(), 32);
        assert_ne!(t, jwt_like(TokenKind::Access, "cid", 1_700_000_000_000, 30));
    }

    #[test]
    fn uuid_like_has_uuid_shape() {
        let id = uuid_like();
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12]);
        assert_eq!(&id[14..15], "4");
    }
}
