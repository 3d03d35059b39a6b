//! The refresh fence (api.md section 4): before it sends a refresh token, a refresher records
//! in the token Secret, by compare-and-swap, who it is and a hash of the token; others leave a
//! live fence alone, and a successor that finds a stale one knows the token may be spent.
//!
//! Pure: `now` is passed in.

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use super::secret::rfc3339;

/// How long a fence holds. It must outlast every request that a holder can still have in
/// flight (Zoom's client timeout is 10 s) plus the clock skew between replicas that we
/// tolerate (the fence's expiry is the holder's clock, judged by another replica's clock).
pub const FENCE_TTL: SignedDuration = SignedDuration::from_secs(30);

/// Fences further in the future than this were not written by an operator (a tenant edited
/// its own Secret's annotation); they are ignored rather than trusted to block refreshes.
const FENCE_MAX_AHEAD: SignedDuration = SignedDuration::from_secs(120);

/// "This refresher is about to send (or has sent) the refresh token with this hash."
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    pub since: Timestamp,
    pub until: Timestamp,
    /// Truncated SHA-256 (hex) of the refresh token being sent; never the token itself.
    pub token_hash: String,
}

/// The first 16 bytes of SHA-256, hex: enough to tell tokens apart, useless to an attacker.
pub fn token_hash(refresh_token: &str) -> String {
    let digest = Sha256::digest(refresh_token.as_bytes());
    hex::encode(digest.get(..16).unwrap_or_default())
}

impl Fence {
    pub fn new(holder: &str, now: Timestamp, refresh_token: &str) -> Fence {
        Fence {
            holder: holder.to_owned(),
            since: now,
            until: now.checked_add(FENCE_TTL).unwrap_or(now),
            token_hash: token_hash(refresh_token),
        }
    }

    /// `holder=..;since=..;until=..;sha256=..` as stored in the annotation.
    pub fn encode(&self) -> String {
        format!(
            "holder={};since={};until={};sha256={}",
            self.holder,
            rfc3339(self.since),
            rfc3339(self.until),
            self.token_hash
        )
    }

    /// Reads the annotation; anything malformed is no fence at all (the annotation is
    /// tenant-writable, so it is input, not truth).
    pub fn parse(value: &str) -> Option<Fence> {
        let mut holder = None;
        let mut since = None;
        let mut until = None;
        let mut hash = None;
        for part in value.split(';') {
            let (key, v) = part.split_once('=')?;
            match key {
                "holder" => holder = Some(v.to_owned()),
                "since" => since = v.parse().ok(),
                "until" => until = v.parse().ok(),
                "sha256" => hash = Some(v.to_owned()),
                _ => return None,
            }
        }
        let token_hash =
            hash.filter(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))?;
        Some(Fence {
            holder: holder.filter(|h| !h.is_empty())?,
            since: since?,
            until: until?,
            token_hash,
        })
    }
}

/// What a refresher finds when it looks at the fence before sending `refresh_token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FenceCheck {
    /// Nobody is refreshing: go ahead.
    Free,
    /// Someone (maybe an earlier, interrupted attempt of this process) may be talking to
    /// Zoom with this grant right now: do nothing until `until`.
    Held { holder: String, until: Timestamp },
    /// An expired fence for exactly the stored refresh token: its holder sent it and never
    /// stored an answer. The token is taken as spent: it is never sent again (api.md section
    /// 4: at most one process sends a given refresh token), and status says why.
    MaybeSpent { holder: String, since: Timestamp },
}

pub fn check_fence(
    fence: Option<&Fence>,
    refresh_token: Option<&str>,
    now: Timestamp,
) -> FenceCheck {
    let Some(fence) = fence else {
        return FenceCheck::Free;
    };
    let forged = now
        .checked_add(FENCE_MAX_AHEAD)
        .is_ok_and(|limit| fence.until > limit);
    if forged {
        return FenceCheck::Free;
    }
    if now < fence.until {
        return FenceCheck::Held {
            holder: fence.holder.clone(),
            until: fence.until,
        };
    }
    match refresh_token {
        Some(token) if token_hash(token) == fence.token_hash => FenceCheck::MaybeSpent {
            holder: fence.holder.clone(),
            since: fence.since,
        },
        // A fence for a token we no longer hold is history.
        _ => FenceCheck::Free,
    }
}

/// Why the grant is lost when a refresh token found under a stale fence is rejected: the
/// truth, instead of "Zoom rejected the refresh token".
pub fn spent_message(holder: &str, since: Timestamp) -> String {
    format!(
        "the refresh token in the token Secret had already been sent to Zoom at {} by {holder}, which did not store Zoom's answer (the process stopped, or the answer was lost on the network). Zoom rotates the grant on every refresh, so the answer held the only valid refresh token, and the operator never sends a refresh token twice",
        rfc3339(since)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    fn fence(until: &str, token: &str) -> Fence {
        Fence {
            holder: "pod-a-1".into(),
            since: ts("2026-11-29T09:00:00Z"),
            until: ts(until),
            token_hash: token_hash(token),
        }
    }

    #[test]
    fn fence_round_trips_and_holds_no_token() {
        let f = Fence::new(
            "pod-a-1",
            ts("2026-11-29T09:00:00Z"),
            "secret-refresh-token",
        );
        let encoded = f.encode();
        assert!(!encoded.contains("secret-refresh-token"), "{encoded}");
        assert_eq!(Fence::parse(&encoded), Some(f.clone()));
        assert_eq!(f.until, ts("2026-11-29T09:00:30Z"));
        for garbled in [
            "",
            "holder=x",
            "holder=;since=a;until=b;sha256=c",
            &format!("{encoded};x=1"),
            "holder=a;since=2026-11-29T09:00:00Z;until=2026-11-29T09:00:30Z;sha256=zz",
        ] {
            assert_eq!(Fence::parse(garbled), None, "{garbled}");
        }
    }

    #[test]
    fn fence_rules() {
        let now = ts("2026-11-29T09:00:10Z");
        let table: Vec<(&str, Option<Fence>, Option<&str>, FenceCheck)> = vec![
            ("no fence", None, Some("rt"), FenceCheck::Free),
            (
                "live fence of anyone",
                Some(fence("2026-11-29T09:00:30Z", "rt")),
                Some("rt"),
                FenceCheck::Held {
                    holder: "pod-a-1".into(),
                    until: ts("2026-11-29T09:00:30Z"),
                },
            ),
            (
                "stale fence for the stored token",
                Some(fence("2026-11-29T09:00:05Z", "rt")),
                Some("rt"),
                FenceCheck::MaybeSpent {
                    holder: "pod-a-1".into(),
                    since: ts("2026-11-29T09:00:00Z"),
                },
            ),
            (
                "stale fence for an older token",
                Some(fence("2026-11-29T09:00:05Z", "older")),
                Some("rt"),
                FenceCheck::Free,
            ),
            (
                "forged fence far in the future",
                Some(fence("2027-01-01T00:00:00Z", "rt")),
                Some("rt"),
                FenceCheck::Free,
            ),
        ];
        for (what, f, token, want) in table {
            assert_eq!(check_fence(f.as_ref(), token, now), want, "{what}");
        }
    }

    #[test]
    fn the_spent_message_names_who_sent_the_token_and_when() {
        let s = spent_message("pod-a-1", ts("2026-11-29T09:00:00Z"));
        assert!(
            s.contains("pod-a-1") && s.contains("2026-11-29T09:00:00Z"),
            "{s}"
        );
    }
}
