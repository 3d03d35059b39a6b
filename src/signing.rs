//! Signed tickets (who may start an OAuth flow) and OAuth `state` values, verifiable by any
//! replica that holds the shared key. The PKCE verifier is derived from the key and the state's
//! nonce, so completing a flow needs no per-process memory and the verifier never travels.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// How long a "Start OAuth Flow" link works; the reconciler renews it at half-life.
pub const TICKET_LIFETIME_SECS: i64 = 24 * 3600;
/// How long a `state` is accepted after the flow started (api.md: 10 minutes).
pub const STATE_LIFETIME_SECS: i64 = 600;

#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("malformed")]
    Malformed,
    #[error("signature does not match")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("issued for a different purpose")]
    WrongPurpose,
}

/// What a ticket or state says: which connection (by UID, so a re-created resource of the same
/// name does not inherit old links) and until when.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// "ticket" or "state".
    pub p: String,
    pub ns: String,
    pub name: String,
    pub uid: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Single-use nonce (state only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
}

impl Claims {
    /// Reads the claims of a token WITHOUT verifying it: for scheduling only, never for
    /// deciding who may do what.
    pub fn peek(token: &str) -> Option<Claims> {
        let payload = token.split('.').next()?;
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        serde_json::from_slice(&json).ok()
    }

    pub fn expires_at(&self) -> Timestamp {
        Timestamp::from_second(self.exp).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

const TICKET: &str = "ticket";
const STATE: &str = "state";

impl SigningKey {
    pub fn new(bytes: Vec<u8>) -> Self {
        SigningKey(bytes)
    }

    pub fn generate() -> Self {
        SigningKey(rand::random::<[u8; 32]>().to_vec())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn mac(&self, domain: &str, message: &[u8]) -> Vec<u8> {
        // Keys of any length are accepted by HMAC, so new_from_slice cannot fail here.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => return Vec::new(),
        };
        mac.update(domain.as_bytes());
        mac.update(b"\0");
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    fn sign(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let sig = URL_SAFE_NO_PAD.encode(self.mac("claims", payload.as_bytes()));
        format!("{payload}.{sig}")
    }

    fn verify(&self, token: &str, purpose: &str, now: Timestamp) -> Result<Claims, SignatureError> {
        let (payload, sig) = token.split_once('.').ok_or(SignatureError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| SignatureError::Malformed)?;
        let mut mac = HmacSha256::new_from_slice(&self.0).map_err(|_| SignatureError::Malformed)?;
        mac.update(b"claims\0");
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| SignatureError::BadSignature)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(SignatureError::Malformed)?;
        if claims.p != purpose {
            return Err(SignatureError::WrongPurpose);
        }
        if claims.exp <= now.as_second() {
            return Err(SignatureError::Expired);
        }
        Ok(claims)
    }

    pub fn issue_ticket(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        now: Timestamp,
    ) -> (String, Claims) {
        let claims = Claims {
            p: TICKET.to_owned(),
            ns: ns.to_owned(),
            name: name.to_owned(),
            uid: uid.to_owned(),
            exp: now.as_second() + TICKET_LIFETIME_SECS,
            n: None,
        };
        (self.sign(&claims), claims)
    }

    pub fn verify_ticket(&self, ticket: &str, now: Timestamp) -> Result<Claims, SignatureError> {
        self.verify(ticket, TICKET, now)
    }

    pub fn issue_state(&self, ns: &str, name: &str, uid: &str, now: Timestamp) -> (String, Claims) {
        let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        let claims = Claims {
            p: STATE.to_owned(),
            ns: ns.to_owned(),
            name: name.to_owned(),
            uid: uid.to_owned(),
            exp: now.as_second() + STATE_LIFETIME_SECS,
            n: Some(nonce),
        };
        (self.sign(&claims), claims)
    }

    pub fn verify_state(&self, state: &str, now: Timestamp) -> Result<Claims, SignatureError> {
        let claims = self.verify(state, STATE, now)?;
        if claims.n.is_none() {
            return Err(SignatureError::Malformed);
        }
        Ok(claims)
    }

    /// The PKCE code verifier for a state's nonce: 43 URL-safe characters, as RFC 7636 asks.
    pub fn pkce_verifier(&self, nonce: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac("pkce", nonce.as_bytes()))
    }
}

/// S256 code challenge for a verifier (RFC 7636 section 4.2): BASE64URL(SHA256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-29T09:00:00Z".parse().expect("ts")
    }

    #[test]
    fn tickets_verify_and_expire() {
        let key = SigningKey::generate();
        let (ticket, claims) = key.issue_ticket("team-a", "bot", "uid-1", now());
        assert_eq!(key.verify_ticket(&ticket, now()), Ok(claims.clone()));
        let later = now()
            .checked_add(jiff::SignedDuration::from_secs(TICKET_LIFETIME_SECS))
            .expect("ts");
        assert_eq!(
            key.verify_ticket(&ticket, later),
            Err(SignatureError::Expired)
        );
        // Another key (another cluster, a rotated key) does not accept it.
        assert_eq!(
            SigningKey::generate().verify_ticket(&ticket, now()),
            Err(SignatureError::BadSignature)
        );
        // A state is not a ticket.
        let (state, _) = key.issue_state("team-a", "bot", "uid-1", now());
        assert_eq!(
            key.verify_ticket(&state, now()),
            Err(SignatureError::WrongPurpose)
        );
    }

    #[test]
    fn tampering_is_detected() {
        let key = SigningKey::generate();
        let (ticket, _) = key.issue_ticket("team-a", "bot", "uid-1", now());
        let (payload, sig) = ticket.split_once('.').expect("dot");
        let forged_claims = Claims {
            p: "ticket".into(),
            ns: "team-b".into(),
            name: "bot".into(),
            uid: "uid-1".into(),
            exp: i64::MAX,
            n: None,
        };
        let forged = format!(
            "{}.{sig}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).expect("json"))
        );
        assert_eq!(
            key.verify_ticket(&forged, now()),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            key.verify_ticket(payload, now()),
            Err(SignatureError::Malformed)
        );
        assert_eq!(key.verify_ticket("", now()), Err(SignatureError::Malformed));
        assert_eq!(
            key.verify_ticket("a.b.c", now()),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn states_carry_unique_nonces_and_derive_pkce() {
        let key = SigningKey::generate();
        let (a, ca) = key.issue_state("ns", "n", "u", now());
        let (b, cb) = key.issue_state("ns", "n", "u", now());
        assert_ne!(a, b);
        assert_ne!(ca.n, cb.n);
        assert_eq!(key.verify_state(&a, now()).expect("valid").n, ca.n);
        let nonce = ca.n.expect("nonce");
        let verifier = key.pkce_verifier(&nonce);
        assert_eq!(verifier.len(), 43);
        assert_eq!(
            verifier,
            key.pkce_verifier(&nonce),
            "any replica derives the same verifier"
        );
        // RFC 7636 appendix B test vector.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let after = now()
            .checked_add(jiff::SignedDuration::from_secs(STATE_LIFETIME_SECS))
            .expect("ts");
        assert_eq!(key.verify_state(&a, after), Err(SignatureError::Expired));
    }
}
