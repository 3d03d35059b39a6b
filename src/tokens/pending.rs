//! A grant Zoom issued that is not stored yet: kept in memory, written again until it is
//! stored, and no refresh sent for its connection meanwhile (api.md section 4).

use std::fmt;

use jiff::Timestamp;

use super::secret::{rfc3339, TokenGrant, TokenRecord};
use crate::api::ZoomAccount;

use super::GrantReason;

/// A grant Zoom issued that is not in the token Secret yet. Kept in memory and written again
/// until it is stored; no refresh is sent for the connection meanwhile.
#[derive(Clone)]
pub struct PendingGrant {
    pub grant: TokenGrant,
    /// The refresh token that was sent to get it (None for Server-to-Server).
    pub used_refresh_token: Option<String>,
    pub client_id: String,
    pub account: Option<ZoomAccount>,
    pub requested: Option<String>,
    pub issued_at: Timestamp,
    /// Why the last write failed (never contains a token).
    pub last_error: Option<String>,
}

impl fmt::Debug for PendingGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingGrant")
            .field("grant", &self.grant)
            .field("issued_at", &self.issued_at)
            .field("last_error", &self.last_error)
            .finish_non_exhaustive()
    }
}

impl PendingGrant {
    /// Removes the grant's own token values from a message (an API server error can quote
    /// what it was sent).
    pub fn scrub(&self, message: &str) -> String {
        let mut out = message.replace(&self.grant.access_token, "<redacted>");
        if let Some(rt) = &self.grant.refresh_token {
            out = out.replace(rt, "<redacted>");
        }
        out
    }

    /// The write of this grant failed: remember why (scrubbed), for the status.
    pub fn write_failed(&mut self, why: &str) {
        self.last_error = Some(self.scrub(why));
    }
}

/// Whether a pending grant may be written over what the Secret holds now. Pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingFit {
    /// The Secret still holds the grant we refreshed (or its refresh token was stripped by a
    /// refresher that lost a race): ours is the newest.
    Store,
    /// A person authorized again, or the app was removed: ours is not the grant to keep.
    Superseded,
}

pub fn pending_fit(current: &TokenRecord, pending: &PendingGrant, oauth: bool) -> PendingFit {
    if !oauth {
        return PendingFit::Store;
    }
    let deauthorized = current
        .grant_problem
        .as_ref()
        .is_some_and(|p| p.reason == GrantReason::Deauthorized);
    let stored = current
        .grant
        .as_ref()
        .and_then(|g| g.refresh_token.as_deref());
    match stored {
        _ if deauthorized => PendingFit::Superseded,
        None => PendingFit::Store,
        Some(rt) if Some(rt) == pending.used_refresh_token.as_deref() => PendingFit::Store,
        Some(_) => PendingFit::Superseded,
    }
}

/// The status message while a grant is pending.
pub fn not_stored_message(pending: &PendingGrant, secret: &str) -> String {
    let why = pending
        .last_error
        .as_deref()
        .unwrap_or("the write has not succeeded yet");
    format!(
        "Zoom issued a new token at {} but it could not be written to Secret {secret}: {why}. The operator keeps the new grant in memory, retries the write every few seconds and sends no refresh until it is stored; fix the cause (for example an immutable Secret, oversized annotations, or a tokenSecretTemplate the API server refuses) and it is stored. If this replica stops before that, the grant is lost and must be authorized again",
        rfc3339(pending.issued_at)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    fn grant(rt: &str) -> TokenGrant {
        TokenGrant {
            access_token: format!("at-{rt}"),
            refresh_token: Some(rt.into()),
            token_type: "bearer".into(),
            expires_at: ts("2026-11-29T10:00:00Z"),
            scope: String::new(),
            api_url: String::new(),
        }
    }

    fn pending(used: &str, new: &str) -> PendingGrant {
        PendingGrant {
            grant: grant(new),
            used_refresh_token: Some(used.into()),
            client_id: "c".into(),
            account: None,
            requested: None,
            issued_at: ts("2026-11-29T09:00:00Z"),
            last_error: Some("Secret is immutable".into()),
        }
    }

    #[test]
    fn pending_grant_is_stored_unless_a_newer_one_exists() {
        let p = pending("t0", "t1");
        let with = |rt: Option<&str>, problem: Option<GrantReason>| TokenRecord {
            grant: rt.map(grant),
            grant_problem: problem.map(|r| super::super::GrantProblem::new(r, "")),
            ..Default::default()
        };
        let table = [
            (
                "still the token we sent",
                with(Some("t0"), None),
                PendingFit::Store,
            ),
            (
                "stripped by a losing refresher",
                with(None, Some(GrantReason::RefreshTokenRejected)),
                PendingFit::Store,
            ),
            (
                "re-authorized meanwhile",
                with(Some("t9"), None),
                PendingFit::Superseded,
            ),
            (
                "app removed meanwhile",
                with(None, Some(GrantReason::Deauthorized)),
                PendingFit::Superseded,
            ),
        ];
        for (what, current, want) in table {
            assert_eq!(pending_fit(&current, &p, true), want, "{what}");
        }
        assert_eq!(
            pending_fit(&with(Some("t9"), None), &p, false),
            PendingFit::Store,
            "s2s"
        );
    }

    #[test]
    fn messages_name_the_cause_and_leak_no_token() {
        let p = pending("t0", "t1");
        let m = not_stored_message(&p, "team-a/bot-zoom-token");
        assert!(
            m.contains("Secret is immutable") && m.contains("team-a/bot-zoom-token"),
            "{m}"
        );
        assert_eq!(
            p.scrub("rejected at-t1 and t1"),
            "rejected <redacted> and <redacted>"
        );
        let mut failed = p.clone();
        failed.write_failed("the API server answered 422: annotation t1 too long");
        assert_eq!(
            failed.last_error.as_deref(),
            Some("the API server answered 422: annotation <redacted> too long")
        );
        assert!(!format!("{p:?}").contains("t1\""), "{p:?}");
    }
}
