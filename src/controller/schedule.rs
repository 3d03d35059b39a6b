//! When to renew a token, and how long to back off after a failure. Pure: time and a
//! per-connection jitter seed are passed in, so scheduling is tested without sleeping.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::AuthType;
use crate::tokens::secret::TokenRecord;
use crate::tokens::GrantReason;

const MIN_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A `Retry-After` longer than this is not believed: it would park the connection for good.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Forced refreshes (`zoom-operator.io/refresh-requested`) are rate-limited per connection: a
/// tenant may not hammer Zoom's token endpoint, least of all with the platform's default app.
pub const FORCED_REFRESH_INTERVAL: SignedDuration = SignedDuration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewReason {
    /// Server-to-Server connection without a token yet.
    NoToken,
    /// `expiresAt - refreshBefore` has passed.
    Due,
    /// The token has expired already (the operator was down, or Zoom was).
    Expired,
    /// `zoom-operator.io/refresh-requested` changed.
    Requested,
    /// The last attempt failed because Zoom rejected the client credentials, and they changed.
    CredentialsChanged,
    /// The last attempt failed and its backoff has passed: keep trying until Zoom answers, so
    /// `RefreshFailing` clears by itself.
    Retry,
}

impl RenewReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RenewReason::NoToken => "NoToken",
            RenewReason::Due => "Due",
            RenewReason::Expired => "Expired",
            RenewReason::Requested => "Requested",
            RenewReason::CredentialsChanged => "CredentialsChanged",
            RenewReason::Retry => "Retry",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenDecision {
    /// Nothing to do; look again at `next_check` (None: only when something changes).
    Idle { next_check: Option<Timestamp> },
    /// Renew now.
    Renew(RenewReason),
    /// A previous attempt failed; try again at `until`.
    BackOff { until: Timestamp },
}

pub struct TokenInputs<'a> {
    pub auth_type: AuthType,
    pub record: &'a TokenRecord,
    pub refresh_before: Duration,
    pub now: Timestamp,
    /// The connection's `refresh-requested` annotation value.
    pub requested: Option<&'a str>,
    /// In-memory backoff from a failed attempt in this process.
    pub retry_not_before: Option<Timestamp>,
    /// The credentials changed since the last attempt that Zoom rejected them.
    pub credentials_changed: bool,
    /// Stable per connection, so the jitter does not move on every pass.
    pub jitter_seed: u64,
    /// When this process last renewed the grant on request (kept in memory, because the
    /// token Secret's annotations are the tenant's to edit).
    pub last_forced_refresh: Option<Timestamp>,
}

/// When a pending forced refresh may happen, if not now: at most one per
/// [`FORCED_REFRESH_INTERVAL`] per connection, counted from the last forced refresh this
/// process made. The first request is honoured at once. The time is kept in memory, not in
/// the token Secret, whose annotations are the tenant's to edit.
pub fn forced_refresh_deferred_until(input: &TokenInputs<'_>) -> Option<Timestamp> {
    let requested = input.requested.filter(|v| !v.is_empty())?;
    if input.record.refresh_handled.as_deref() == Some(requested) {
        return None;
    }
    let allowed = input
        .last_forced_refresh?
        .checked_add(FORCED_REFRESH_INTERVAL)
        .unwrap_or(Timestamp::MAX);
    (allowed > input.now).then_some(allowed)
}

/// Zoom access tokens live one hour (`expires_in` 3599 or 3600). When the token Secret does
/// not say when the token was issued (its annotation is tenant-writable and may be gone), the
/// lead is capped at half of that, as if the token were a fresh Zoom token.
const ASSUMED_LIFETIME: SignedDuration = SignedDuration::from_secs(3600);

/// When a grant is due for renewal: `refreshBefore` ahead of expiry, but never earlier than
/// half-way through the token's life (a 10m lead on a 30s token would renew in a hot loop),
/// minus up to 10% jitter so a fleet of connections does not renew in lock step.
///
/// Total over every input: arithmetic saturates, and a moment before the earliest time jiff
/// can represent means "due now" (`Timestamp::MIN`), never a panic.
pub fn renew_at(
    record: &TokenRecord,
    refresh_before: Duration,
    jitter_seed: u64,
) -> Option<Timestamp> {
    let grant = record.grant.as_ref()?;
    let lead = SignedDuration::try_from(refresh_before).unwrap_or(SignedDuration::MAX);
    let lifetime = record
        .last_refresh_time
        .map(|issued| grant.expires_at.duration_since(issued))
        .filter(|l| *l > SignedDuration::ZERO)
        .unwrap_or(ASSUMED_LIFETIME);
    let lead = lead.min(lifetime / 2);
    let jitter_permille = i32::try_from(jitter_seed % 100).unwrap_or(0);
    let jitter = (lead / 1000)
        .checked_mul(jitter_permille)
        .unwrap_or(SignedDuration::ZERO);
    let lead = lead.saturating_add(jitter);
    Some(grant.expires_at.checked_sub(lead).unwrap_or(Timestamp::MIN))
}

/// When a failed renewal may be tried again: after `delay` (backoff, or Zoom's `Retry-After`),
/// but never later than the token's expiry, so a long `Retry-After` cannot leave a connection
/// without a token any longer than it takes to find out.
pub fn retry_not_before(
    now: Timestamp,
    delay: Duration,
    expires_at: Option<Timestamp>,
) -> Timestamp {
    let delay = SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX);
    let at = now.checked_add(delay).unwrap_or(Timestamp::MAX);
    match expires_at {
        Some(expiry) if expiry > now && expiry < at => expiry,
        _ => at,
    }
}

pub fn decide(input: &TokenInputs<'_>) -> TokenDecision {
    let record = input.record;
    let problem = record.grant_problem.as_ref().map(|p| p.reason);
    let has_refresh_token = record
        .grant
        .as_ref()
        .is_some_and(|g| g.refresh_token.is_some());

    if input.auth_type.is_oauth() {
        // Without a refresh token only a person can make progress, through the browser flow.
        if !has_refresh_token
            || matches!(
                problem,
                Some(
                    GrantReason::RefreshTokenRejected
                        | GrantReason::RefreshTokenSpent
                        | GrantReason::Deauthorized
                )
            )
        {
            return TokenDecision::Idle { next_check: None };
        }
    }
    if problem == Some(GrantReason::InvalidClientCredentials) && input.credentials_changed {
        return TokenDecision::Renew(RenewReason::CredentialsChanged);
    }
    if let Some(until) = input.retry_not_before.filter(|t| *t > input.now) {
        return TokenDecision::BackOff { until };
    }
    let Some(grant) = record.grant.as_ref() else {
        // Only Server-to-Server gets here: mint the first token.
        return TokenDecision::Renew(RenewReason::NoToken);
    };
    let deferred = forced_refresh_deferred_until(input);
    if let Some(requested) = input.requested.filter(|v| !v.is_empty()) {
        if record.refresh_handled.as_deref() != Some(requested) && deferred.is_none() {
            return TokenDecision::Renew(RenewReason::Requested);
        }
    }
    if input.now >= grant.expires_at {
        return TokenDecision::Renew(RenewReason::Expired);
    }
    if record.failed_refresh_attempts > 0 {
        return TokenDecision::Renew(RenewReason::Retry);
    }
    match renew_at(record, input.refresh_before, input.jitter_seed) {
        Some(at) if input.now >= at => TokenDecision::Renew(RenewReason::Due),
        at => TokenDecision::Idle {
            next_check: [at, deferred].into_iter().flatten().min(),
        },
    }
}

/// Exponential backoff with jitter after `attempts` consecutive failures, never shorter than
/// what Zoom asked for with `Retry-After`.
pub fn backoff(attempts: u32, retry_after: Option<Duration>, jitter_seed: u64) -> Duration {
    let exp = MIN_BACKOFF
        .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(16)))
        .min(MAX_BACKOFF);
    let jitter = exp.mul_f64((jitter_seed % 200) as f64 / 1000.0);
    let delay = exp + jitter;
    match retry_after {
        Some(asked) if asked > delay => asked.min(MAX_RETRY_AFTER),
        _ => delay,
    }
}

/// A stable seed from a string (the connection's UID): FNV-1a.
pub fn seed(value: &str) -> u64 {
    value.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::secret::TokenGrant;
    use crate::tokens::GrantProblem;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    fn record(expires: &str, issued: &str, refresh_token: bool) -> TokenRecord {
        TokenRecord {
            grant: Some(TokenGrant {
                access_token: "a".into(),
                refresh_token: refresh_token.then(|| "r".into()),
                token_type: "bearer".into(),
                expires_at: ts(expires),
                scope: String::new(),
                api_url: String::new(),
            }),
            last_refresh_time: Some(ts(issued)),
            ..Default::default()
        }
    }

    fn inputs<'a>(auth_type: AuthType, record: &'a TokenRecord, now: &str) -> TokenInputs<'a> {
        TokenInputs {
            auth_type,
            record,
            refresh_before: Duration::from_secs(600),
            now: ts(now),
            requested: None,
            retry_not_before: None,
            credentials_changed: false,
            jitter_seed: 0,
            last_forced_refresh: None,
        }
    }

    #[test]
    fn renews_ahead_of_expiry() {
        let r = record("2026-11-29T10:00:00Z", "2026-11-29T09:00:00Z", true);
        let at = |now| decide(&inputs(AuthType::PrivateOAuth, &r, now));
        assert_eq!(
            at("2026-11-29T09:30:00Z"),
            TokenDecision::Idle {
                next_check: Some(ts("2026-11-29T09:50:00Z"))
            }
        );
        assert_eq!(
            at("2026-11-29T09:50:00Z"),
            TokenDecision::Renew(RenewReason::Due)
        );
        assert_eq!(
            at("2026-11-29T10:00:00Z"),
            TokenDecision::Renew(RenewReason::Expired)
        );
    }

    #[test]
    fn short_tokens_renew_at_half_life_not_in_a_loop() {
        let r = record("2026-11-29T09:00:30Z", "2026-11-29T09:00:00Z", true);
        assert_eq!(
            renew_at(&r, Duration::from_secs(600), 0),
            Some(ts("2026-11-29T09:00:15Z"))
        );
    }

    #[test]
    fn jitter_moves_renewal_earlier_by_at_most_ten_percent() {
        let r = record("2026-11-29T10:00:00Z", "2026-11-29T09:00:00Z", true);
        let plain = renew_at(&r, Duration::from_secs(600), 0).expect("at");
        for s in ["uid-a", "uid-b", "uid-c"] {
            let jittered = renew_at(&r, Duration::from_secs(600), seed(s)).expect("at");
            let earlier = plain.duration_since(jittered);
            assert!(
                earlier >= SignedDuration::ZERO && earlier < SignedDuration::from_secs(60),
                "{earlier:?}"
            );
            assert_eq!(
                jittered,
                renew_at(&r, Duration::from_secs(600), seed(s)).expect("at"),
                "stable"
            );
        }
    }

    #[test]
    fn huge_refresh_before_without_issue_time_never_panics() {
        let mut r = record("2026-11-29T10:00:00Z", "2026-11-29T09:00:00Z", true);
        r.last_refresh_time = None;
        for seed in [0, 99, u64::MAX] {
            // 3000000000000000h does not fit a Duration's hours, but Duration::MAX does.
            let at = renew_at(&r, Duration::MAX, seed).expect("at");
            assert!(
                at >= ts("2026-11-29T09:24:00Z") && at <= ts("2026-11-29T09:30:00Z"),
                "{at}"
            );
        }
        // Near the start of time, "before expiry" saturates to "now".
        let mut early = r.clone();
        if let Some(g) = early.grant.as_mut() {
            g.expires_at = Timestamp::MIN
                .checked_add(SignedDuration::from_mins(10))
                .expect("ts");
        }
        assert_eq!(renew_at(&early, Duration::MAX, 42), Some(Timestamp::MIN));
    }

    #[test]
    fn retry_after_is_capped_by_expiry() {
        let now = ts("2026-11-29T09:50:00Z");
        let expiry = Some(ts("2026-11-29T10:00:00Z"));
        assert_eq!(
            retry_not_before(now, Duration::from_secs(30), expiry),
            ts("2026-11-29T09:50:30Z")
        );
        assert_eq!(
            retry_not_before(now, Duration::from_secs(86_400), expiry),
            ts("2026-11-29T10:00:00Z")
        );
        // Already expired: the backoff applies as asked.
        assert_eq!(
            retry_not_before(ts("2026-11-29T10:05:00Z"), Duration::from_secs(60), expiry),
            ts("2026-11-29T10:06:00Z")
        );
        assert_eq!(retry_not_before(now, Duration::MAX, None), Timestamp::MAX);
    }

    #[test]
    fn oauth_without_refresh_token_waits_for_a_person() {
        let empty = TokenRecord::default();
        assert_eq!(
            decide(&inputs(
                AuthType::PrivateOAuth,
                &empty,
                "2026-11-29T09:00:00Z"
            )),
            TokenDecision::Idle { next_check: None }
        );
        let mut rejected = record("2026-11-29T10:00:00Z", "2026-11-29T09:00:00Z", true);
        rejected.grant_problem = Some(GrantProblem::new(GrantReason::RefreshTokenRejected, ""));
        assert_eq!(
            decide(&inputs(
                AuthType::DefaultOAuth,
                &rejected,
                "2026-11-29T11:00:00Z"
            )),
            TokenDecision::Idle { next_check: None }
        );
    }

    #[test]
    fn server_to_server_mints_when_empty() {
        let empty = TokenRecord::default();
        assert_eq!(
            decide(&inputs(
                AuthType::ServerToServer,
                &empty,
                "2026-11-29T09:00:00Z"
            )),
            TokenDecision::Renew(RenewReason::NoToken)
        );
    }

    #[test]
    fn requested_refresh_happens_once_per_value() {
        let mut r = record("2026-11-29T10:00:00Z", "2026-11-29T09:00:00Z", true);
        let mut i = inputs(AuthType::PrivateOAuth, &r, "2026-11-29T09:10:00Z");
        i.requested = Some("2026-11-29T09:09");
        assert_eq!(decide(&i), TokenDecision::Renew(RenewReason::Requested));
        r.refresh_handled = Some("2026-11-29T09:09".into());
        let mut i = inputs(AuthType::PrivateOAuth, &r, "2026-11-29T09:10:00Z");
        i.requested = Some("2026-11-29T09:09");
        assert!(matches!(decide(&i), TokenDecision::Idle { .. }));
    }

    #[test]
    fn forced_refreshes_are_limited_to_one_a_minute() {
        // Renewed at 09:10:00 by a scheduled refresh; asked at 09:10:20: honoured at once.
        let r = record("2026-11-29T10:10:00Z", "2026-11-29T09:10:00Z", true);
        let mut i = inputs(AuthType::DefaultOAuth, &r, "2026-11-29T09:10:20Z");
        i.requested = Some("first");
        assert_eq!(forced_refresh_deferred_until(&i), None);
        assert_eq!(decide(&i), TokenDecision::Renew(RenewReason::Requested));
        // Asked again at 09:10:40, 20 s after that forced refresh: deferred to 09:11:20.
        i.requested = Some("again");
        i.last_forced_refresh = Some(ts("2026-11-29T09:10:20Z"));
        i.now = ts("2026-11-29T09:10:40Z");
        assert_eq!(
            decide(&i),
            TokenDecision::Idle {
                next_check: Some(ts("2026-11-29T09:11:20Z"))
            }
        );
        assert_eq!(
            forced_refresh_deferred_until(&i),
            Some(ts("2026-11-29T09:11:20Z"))
        );
        i.now = ts("2026-11-29T09:11:20Z");
        assert_eq!(decide(&i), TokenDecision::Renew(RenewReason::Requested));
        // Deleting the Secret's annotation does not lift the limit: the process remembers.
        let mut forgotten = r.clone();
        forgotten.last_refresh_time = None;
        let mut i = inputs(AuthType::DefaultOAuth, &forgotten, "2026-11-29T09:10:20Z");
        i.requested = Some("again");
        i.last_forced_refresh = Some(ts("2026-11-29T09:10:00Z"));
        assert!(matches!(decide(&i), TokenDecision::Idle { .. }));
        // A deferred request does not hold back a renewal that is due anyway.
        let mut i = inputs(AuthType::DefaultOAuth, &r, "2026-11-29T10:00:30Z");
        i.requested = Some("again");
        i.last_forced_refresh = Some(ts("2026-11-29T10:00:00Z"));
        assert_eq!(decide(&i), TokenDecision::Renew(RenewReason::Due));
    }

    #[test]
    fn absurd_retry_after_is_not_believed() {
        assert_eq!(
            backoff(1, Some(Duration::MAX), 0),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn backoff_holds_then_releases() {
        let r = record("2026-11-29T10:00:00Z", "2026-11-29T09:00:00Z", true);
        let mut i = inputs(AuthType::PrivateOAuth, &r, "2026-11-29T09:55:00Z");
        i.retry_not_before = Some(ts("2026-11-29T09:55:10Z"));
        assert_eq!(
            decide(&i),
            TokenDecision::BackOff {
                until: ts("2026-11-29T09:55:10Z")
            }
        );
        i.now = ts("2026-11-29T09:55:10Z");
        assert_eq!(decide(&i), TokenDecision::Renew(RenewReason::Due));
    }

    #[test]
    fn a_failed_attempt_is_retried_after_backoff_even_when_not_due() {
        let mut r = record("2026-11-29T10:00:00Z", "2026-11-29T09:00:00Z", true);
        r.failed_refresh_attempts = 1;
        let mut i = inputs(AuthType::PrivateOAuth, &r, "2026-11-29T09:10:00Z");
        i.retry_not_before = Some(ts("2026-11-29T09:10:05Z"));
        assert_eq!(
            decide(&i),
            TokenDecision::BackOff {
                until: ts("2026-11-29T09:10:05Z")
            }
        );
        i.now = ts("2026-11-29T09:10:05Z");
        assert_eq!(decide(&i), TokenDecision::Renew(RenewReason::Retry));
    }

    #[test]
    fn changed_credentials_skip_the_backoff() {
        let mut r = record("2026-11-29T10:00:00Z", "2026-11-29T09:00:00Z", true);
        r.grant_problem = Some(GrantProblem::new(GrantReason::InvalidClientCredentials, ""));
        let mut i = inputs(AuthType::PrivateOAuth, &r, "2026-11-29T09:55:00Z");
        i.retry_not_before = Some(ts("2026-11-29T10:30:00Z"));
        i.credentials_changed = true;
        assert_eq!(
            decide(&i),
            TokenDecision::Renew(RenewReason::CredentialsChanged)
        );
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        assert_eq!(backoff(1, None, 0), Duration::from_secs(2));
        assert_eq!(backoff(2, None, 0), Duration::from_secs(4));
        assert_eq!(backoff(4, None, 0), Duration::from_secs(16));
        assert_eq!(backoff(30, None, 0), Duration::from_secs(300));
        assert_eq!(
            backoff(1, Some(Duration::from_secs(30)), 0),
            Duration::from_secs(30)
        );
        assert_eq!(
            backoff(5, Some(Duration::from_secs(1)), 0),
            Duration::from_secs(32)
        );
        let jittered = backoff(3, None, 150);
        assert!(jittered > Duration::from_secs(8) && jittered < Duration::from_secs(10));
    }
}
