//! Every change to a token Secret, as a pure function of the record found in it.
//!
//! The one writer ([`super::TokenStore::update`]) reads the Secret, applies one of these to
//! its record and writes the result by compare-and-swap, again on every conflict; so each
//! function must decide from the record alone (and the values passed in, `now` included),
//! never from what it saw on an earlier attempt. [`Change::Keep`] or an `Err` leaves the Secret
//! as it is.

use jiff::Timestamp;

use super::secret::{remember_state, EventsDropped, SinkUnreachable, TokenGrant, TokenRecord};
use crate::api::ZoomAccount;

use super::fence::{check_fence, Fence, FenceCheck};
use super::pending::{pending_fit, PendingFit, PendingGrant};
use super::problem::{GrantProblem, GrantReason};

/// What a transition wants done with the record it was shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Write,
    /// Leave the Secret as it is (the transition found nothing to do, or something newer).
    Keep,
}

fn stored_refresh_token(record: &TokenRecord) -> Option<&str> {
    record.grant.as_ref()?.refresh_token.as_deref()
}

/// Why a refresher may not send the stored refresh token now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoClaim {
    /// Someone else's fence is live: look again at `until`.
    Held { until: Timestamp },
    /// A stale fence for the stored token: it was sent and its answer never stored.
    Spent { holder: String, since: Timestamp },
    /// The Secret no longer holds the token we meant to send.
    Rotated,
}

/// Puts `holder`'s fence on the grant before it sends `refresh_token`.
pub fn claim_fence(
    record: &mut TokenRecord,
    refresh_token: &str,
    holder: &str,
    now: Timestamp,
) -> Result<Change, NoClaim> {
    if stored_refresh_token(record) != Some(refresh_token) {
        return Err(NoClaim::Rotated);
    }
    match check_fence(record.fence.as_ref(), Some(refresh_token), now) {
        FenceCheck::Held { until, .. } => Err(NoClaim::Held { until }),
        FenceCheck::MaybeSpent { holder, since } => Err(NoClaim::Spent { holder, since }),
        FenceCheck::Free => {
            record.fence = Some(Fence::new(holder, now, refresh_token));
            Ok(Change::Write)
        }
    }
}

/// Lifts `holder`'s own fence (it sent nothing after all).
pub fn release_fence(record: &mut TokenRecord, holder: &str) -> Change {
    if record.fence.as_ref().is_some_and(|f| f.holder == holder) {
        record.fence = None;
        Change::Write
    } else {
        Change::Keep
    }
}

/// The stored refresh token was sent by a refresher that never stored the answer: it is
/// never sent again, and the record says why the grant is lost.
pub fn refresh_token_spent(
    record: &mut TokenRecord,
    refresh_token: &str,
    message: &str,
) -> Result<Change, Rotated> {
    if stored_refresh_token(record) != Some(refresh_token) {
        return Err(Rotated);
    }
    record.grant_problem = Some(GrantProblem::new(GrantReason::RefreshTokenSpent, message));
    record.failed_refresh_attempts = 0;
    record.last_failure = None;
    Ok(Change::Write)
}

/// A fresh grant replaces whatever was stored, and every trace of earlier trouble goes.
fn store_grant(record: &mut TokenRecord, grant: TokenGrant, client_id: &str, now: Timestamp) {
    record.grant = Some(grant);
    record.last_refresh_time = Some(now);
    record.client_id = Some(client_id.to_owned());
    record.grant_problem = None;
    record.failed_refresh_attempts = 0;
    record.last_failure = None;
    // The grant is stored: whoever was refreshing is done.
    record.fence = None;
}

/// Zoom issued `pending` for a refresh (or a Server-to-Server mint): store it, unless the
/// Secret meanwhile holds a grant that is not the one we refreshed.
pub fn refresh_issued(
    record: &mut TokenRecord,
    pending: &PendingGrant,
    oauth: bool,
) -> Result<Change, PendingFit> {
    match pending_fit(record, pending, oauth) {
        PendingFit::Superseded => Err(PendingFit::Superseded),
        PendingFit::Store => {
            store_grant(
                record,
                pending.grant.clone(),
                &pending.client_id,
                pending.issued_at,
            );
            if pending.account.is_some() {
                record.account = pending.account.clone();
            }
            if pending.requested.is_some() {
                record.refresh_handled = pending.requested.clone();
            }
            Ok(Change::Write)
        }
    }
}

/// A refresh (or mint) that Zoom answered with a failure, or that got no answer.
#[derive(Clone, Debug)]
pub struct RefreshFailure {
    /// The refresh token that was sent (None for Server-to-Server).
    pub used_refresh_token: Option<String>,
    /// A refusal only a person can fix; None for a failure worth retrying.
    pub problem: Option<GrantProblem>,
    /// What went wrong, in words (no token).
    pub error: String,
    /// No answer arrived although the request may have reached Zoom.
    pub answer_lost: bool,
    /// Who sent it (whose fence to lift).
    pub holder: String,
    /// The forced-refresh annotation value this attempt answered, if any.
    pub requested: Option<String>,
    pub oauth: bool,
}

/// Another writer rotated the grant while we were asking Zoom: a failure about the token we
/// sent says nothing about the one stored now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotated;

/// Records a failed refresh. A rejected refresh token is stripped (the access token may work
/// until it expires); anything else counts as a failed attempt, retried with backoff.
pub fn refresh_failed(
    record: &mut TokenRecord,
    failure: &RefreshFailure,
) -> Result<Change, Rotated> {
    if failure.oauth && stored_refresh_token(record) != failure.used_refresh_token.as_deref() {
        // Zoom's refusal was about a token we no longer hold: the newer grant stays untouched.
        return Err(Rotated);
    }
    // Zoom answered: our fence has done its job. Without an answer Zoom may have rotated the
    // grant, so the fence stays until it expires and the next attempt knows the token may be
    // spent.
    if !failure.answer_lost {
        release_fence(record, &failure.holder);
    }
    match &failure.problem {
        Some(problem) if problem.reason.refresh_token_dead() => {
            if let Some(g) = record.grant.as_mut() {
                g.refresh_token = None;
            }
            record.grant_problem = Some(problem.clone());
            record.failed_refresh_attempts = 0;
            record.last_failure = None;
        }
        Some(problem) => {
            record.grant_problem = Some(problem.clone());
            record.failed_refresh_attempts = record.failed_refresh_attempts.saturating_add(1);
            record.last_failure = Some(problem.message.clone());
        }
        None => {
            if problem_is(record, GrantReason::AuthorizationFailed) {
                record.grant_problem = None;
            }
            record.failed_refresh_attempts = record.failed_refresh_attempts.saturating_add(1);
            record.last_failure = Some(failure.error.clone());
        }
    }
    if failure.requested.is_some() {
        // A requested refresh that failed is not retried in a loop; the backoff does that.
        record.refresh_handled = failure.requested.clone();
    }
    Ok(Change::Write)
}

fn problem_is(record: &TokenRecord, reason: GrantReason) -> bool {
    record
        .grant_problem
        .as_ref()
        .is_some_and(|p| p.reason == reason)
}

/// The OAuth callback's state nonce is used up, before its code is exchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replayed;

pub fn state_consumed(
    record: &mut TokenRecord,
    nonce: &str,
    expires_at: Timestamp,
    now: Timestamp,
) -> Result<Change, Replayed> {
    if record.consumed_states.iter().any(|(n, _)| n == nonce) {
        return Err(Replayed);
    }
    remember_state(record, nonce, expires_at, now);
    Ok(Change::Write)
}

/// The browser flow's callback exchanged its code: the new grant replaces any other.
pub fn callback_stored(
    record: &mut TokenRecord,
    grant: &TokenGrant,
    client_id: &str,
    account: Option<&ZoomAccount>,
    now: Timestamp,
) -> Change {
    store_grant(record, grant.clone(), client_id, now);
    record.account = account.cloned();
    Change::Write
}

/// A browser authorization failed (or Zoom refused the app's credentials on exchange).
/// A failed re-authorization does not clobber a working grant's state.
pub fn authorization_failed(record: &mut TokenRecord, problem: &GrantProblem) -> Change {
    let has_working_grant =
        stored_refresh_token(record).is_some() && record.grant_problem.is_none();
    if has_working_grant && problem.reason == GrantReason::AuthorizationFailed {
        return Change::Keep;
    }
    record.grant_problem = Some(problem.clone());
    Change::Write
}

/// Zoom sent `app_deauthorized` (at `at`, when it said): the tokens go. A grant stored after
/// that moment (authorized again, and Zoom retried a late event) is a new grant and stays.
pub fn deauthorized(record: &mut TokenRecord, at: Option<Timestamp>, message: &str) -> Change {
    if let (Some(at), Some(stored), Some(_)) = (at, record.last_refresh_time, &record.grant) {
        if stored > at {
            return Change::Keep;
        }
    }
    if record.grant.is_none() && problem_is(record, GrantReason::Deauthorized) {
        return Change::Keep;
    }
    record.grant = None;
    record.grant_problem = Some(GrantProblem::new(GrantReason::Deauthorized, message));
    Change::Write
}

/// `users/me` answered for `access_token`: remember whose grant it is, if still stored.
pub fn account_read(record: &mut TokenRecord, access_token: &str, account: &ZoomAccount) -> Change {
    let same = record
        .grant
        .as_ref()
        .is_some_and(|g| g.access_token == access_token);
    if !same {
        return Change::Keep;
    }
    record.account = Some(account.clone());
    Change::Write
}

/// The sink's health, written only when it changes: healthy to failing, failing to healthy
/// or failing for another sink; not every new error text.
pub fn sink_health(record: &mut TokenRecord, problem: Option<&SinkUnreachable>) -> Change {
    let same_sink = record.sink_problem.as_ref().map(|p| &p.sink) == problem.map(|p| &p.sink);
    if same_sink {
        return Change::Keep;
    }
    record.sink_problem = problem.cloned();
    Change::Write
}

/// An event was given up on after its last retry.
pub fn event_dropped(record: &mut TokenRecord, why: &str, now: Timestamp) -> Change {
    let count = record.events_dropped.as_ref().map_or(0, |d| d.count);
    record.events_dropped = Some(EventsDropped {
        count: count.saturating_add(1),
        last: now,
        why: why.to_owned(),
    });
    Change::Write
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    const NOW: &str = "2026-11-29T09:00:10Z";

    fn grant(rt: Option<&str>) -> TokenGrant {
        TokenGrant {
            access_token: format!("at-{}", rt.unwrap_or("s2s")),
            refresh_token: rt.map(str::to_owned),
            token_type: "bearer".into(),
            expires_at: ts("2026-11-29T10:00:00Z"),
            scope: String::new(),
            api_url: String::new(),
        }
    }

    fn holding(rt: &str) -> TokenRecord {
        TokenRecord {
            grant: Some(grant(Some(rt))),
            last_refresh_time: Some(ts("2026-11-29T08:00:00Z")),
            client_id: Some("c".into()),
            ..Default::default()
        }
    }

    fn fenced(rt: &str, holder: &str, since: &str) -> TokenRecord {
        TokenRecord {
            fence: Some(Fence::new(holder, ts(since), rt)),
            ..holding(rt)
        }
    }

    fn problem(reason: GrantReason) -> GrantProblem {
        GrantProblem::new(reason, "why")
    }

    #[test]
    fn claiming_the_fence() {
        let now = ts(NOW);
        let table: Vec<(&str, TokenRecord, Result<Change, NoClaim>)> = vec![
            ("free", holding("t0"), Ok(Change::Write)),
            (
                "someone else's live fence",
                fenced("t0", "b", "2026-11-29T09:00:00Z"),
                Err(NoClaim::Held {
                    until: ts("2026-11-29T09:00:30Z"),
                }),
            ),
            (
                "a stale fence for the stored token",
                fenced("t0", "b", "2026-11-29T08:00:00Z"),
                Err(NoClaim::Spent {
                    holder: "b".into(),
                    since: ts("2026-11-29T08:00:00Z"),
                }),
            ),
            ("rotated meanwhile", holding("t1"), Err(NoClaim::Rotated)),
        ];
        for (what, mut record, want) in table {
            let before = record.clone();
            let got = claim_fence(&mut record, "t0", "a", now);
            assert_eq!(got, want, "{what}");
            match got {
                Ok(_) => {
                    let fence = record.fence.as_ref().expect("fence");
                    assert_eq!((fence.holder.as_str(), fence.since), ("a", now), "{what}");
                }
                Err(_) => assert_eq!(record, before, "{what}: unchanged"),
            }
        }
    }

    #[test]
    fn releasing_only_our_own_fence() {
        let mut ours = fenced("t0", "a", NOW);
        assert_eq!(release_fence(&mut ours, "a"), Change::Write);
        assert_eq!(ours.fence, None);
        let mut theirs = fenced("t0", "b", NOW);
        assert_eq!(release_fence(&mut theirs, "a"), Change::Keep);
        assert!(theirs.fence.is_some());
    }

    #[test]
    fn a_spent_token_is_recorded_only_while_it_is_stored() {
        let mut record = fenced("t0", "b", "2026-11-29T08:00:00Z");
        record.failed_refresh_attempts = 3;
        assert_eq!(
            refresh_token_spent(&mut record, "t0", "sent by b"),
            Ok(Change::Write)
        );
        assert_eq!(
            record.grant_problem,
            Some(GrantProblem::new(
                GrantReason::RefreshTokenSpent,
                "sent by b"
            ))
        );
        assert_eq!(record.failed_refresh_attempts, 0);
        let mut rotated = holding("t1");
        assert_eq!(refresh_token_spent(&mut rotated, "t0", "x"), Err(Rotated));
        assert_eq!(rotated.grant_problem, None);
    }

    fn pending(used: Option<&str>, new: Option<&str>) -> PendingGrant {
        PendingGrant {
            grant: grant(new),
            used_refresh_token: used.map(str::to_owned),
            client_id: "c".into(),
            account: None,
            requested: Some("r1".into()),
            issued_at: ts(NOW),
            last_error: None,
        }
    }

    #[test]
    fn an_issued_grant_is_stored_over_the_one_it_replaces() {
        let table: Vec<(&str, TokenRecord, bool, Result<Change, PendingFit>)> = vec![
            (
                "the token we sent, under our fence",
                fenced("t0", "a", NOW),
                true,
                Ok(Change::Write),
            ),
            (
                "stripped by a refresher that lost a race",
                TokenRecord {
                    grant: Some(grant(None)),
                    grant_problem: Some(problem(GrantReason::RefreshTokenRejected)),
                    ..Default::default()
                },
                true,
                Ok(Change::Write),
            ),
            (
                "authorized again meanwhile",
                holding("t9"),
                true,
                Err(PendingFit::Superseded),
            ),
            (
                "deauthorized meanwhile",
                TokenRecord {
                    grant_problem: Some(problem(GrantReason::Deauthorized)),
                    ..Default::default()
                },
                true,
                Err(PendingFit::Superseded),
            ),
            (
                "server-to-server: the newest mint wins",
                holding("t9"),
                false,
                Ok(Change::Write),
            ),
        ];
        for (what, mut record, oauth, want) in table {
            let p = pending(Some("t0"), Some("t1"));
            assert_eq!(refresh_issued(&mut record, &p, oauth), want, "{what}");
            if want.is_ok() {
                assert_eq!(record.grant, Some(p.grant.clone()), "{what}");
                assert_eq!(record.last_refresh_time, Some(ts(NOW)), "{what}");
                assert_eq!(
                    (&record.grant_problem, &record.fence),
                    (&None, &None),
                    "{what}"
                );
                assert_eq!(record.refresh_handled.as_deref(), Some("r1"), "{what}");
            }
        }
    }

    fn failure(used: Option<&str>, problem: Option<GrantProblem>, lost: bool) -> RefreshFailure {
        RefreshFailure {
            used_refresh_token: used.map(str::to_owned),
            problem,
            error: "Zoom is unavailable: HTTP 503".into(),
            answer_lost: lost,
            holder: "a".into(),
            requested: None,
            oauth: used.is_some(),
        }
    }

    struct Row {
        what: &'static str,
        record: TokenRecord,
        failure: RefreshFailure,
        change: Result<Change, Rotated>,
        refresh_token_kept: bool,
        problem: Option<GrantReason>,
        attempts: u32,
        fence_kept: bool,
    }

    fn check(rows: Vec<Row>) {
        for mut row in rows {
            let change = refresh_failed(&mut row.record, &row.failure);
            let r = &row.record;
            assert_eq!(change, row.change, "{}", row.what);
            assert_eq!(
                stored_refresh_token(r).is_some(),
                row.refresh_token_kept,
                "{}",
                row.what
            );
            assert_eq!(
                r.grant_problem.as_ref().map(|p| p.reason),
                row.problem,
                "{}",
                row.what
            );
            assert_eq!(r.failed_refresh_attempts, row.attempts, "{}", row.what);
            assert_eq!(r.fence.is_some(), row.fence_kept, "{}", row.what);
        }
    }

    #[test]
    fn a_refused_refresh() {
        let rejected = Some(problem(GrantReason::RefreshTokenRejected));
        check(vec![
            Row {
                what: "Zoom refused the refresh token",
                record: fenced("t0", "a", NOW),
                failure: failure(Some("t0"), rejected.clone(), false),
                change: Ok(Change::Write),
                refresh_token_kept: false,
                problem: Some(GrantReason::RefreshTokenRejected),
                attempts: 0,
                fence_kept: false,
            },
            Row {
                what: "a refusal about a token we no longer hold (the winner's grant stays)",
                record: holding("t1"),
                failure: failure(Some("t0"), rejected, false),
                change: Err(Rotated),
                refresh_token_kept: true,
                problem: None,
                attempts: 0,
                fence_kept: false,
            },
            Row {
                what: "wrong client credentials: kept, counted",
                record: fenced("t0", "a", NOW),
                failure: failure(
                    Some("t0"),
                    Some(problem(GrantReason::InvalidClientCredentials)),
                    false,
                ),
                change: Ok(Change::Write),
                refresh_token_kept: true,
                problem: Some(GrantReason::InvalidClientCredentials),
                attempts: 1,
                fence_kept: false,
            },
        ]);
    }

    #[test]
    fn a_refresh_worth_retrying() {
        check(vec![
            Row {
                what: "Zoom unavailable: retried, fence lifted",
                record: fenced("t0", "a", NOW),
                failure: failure(Some("t0"), None, false),
                change: Ok(Change::Write),
                refresh_token_kept: true,
                problem: None,
                attempts: 1,
                fence_kept: false,
            },
            Row {
                what: "no answer: the fence stays, the token may be spent",
                record: fenced("t0", "a", NOW),
                failure: failure(Some("t0"), None, true),
                change: Ok(Change::Write),
                refresh_token_kept: true,
                problem: None,
                attempts: 1,
                fence_kept: true,
            },
            Row {
                what: "a retryable failure clears a failed browser authorization",
                record: TokenRecord {
                    grant_problem: Some(problem(GrantReason::AuthorizationFailed)),
                    ..holding("t0")
                },
                failure: failure(Some("t0"), None, false),
                change: Ok(Change::Write),
                refresh_token_kept: true,
                problem: None,
                attempts: 1,
                fence_kept: false,
            },
        ]);
    }

    #[test]
    fn a_requested_refresh_that_failed_is_marked_handled() {
        let mut record = holding("t0");
        let mut f = failure(Some("t0"), None, false);
        f.requested = Some("2".into());
        assert_eq!(refresh_failed(&mut record, &f), Ok(Change::Write));
        assert_eq!(record.refresh_handled.as_deref(), Some("2"));
    }

    #[test]
    fn callback_states_are_single_use() {
        let now = ts(NOW);
        let expiry = ts("2026-11-29T09:10:00Z");
        let mut record = TokenRecord::default();
        assert_eq!(
            state_consumed(&mut record, "n1", expiry, now),
            Ok(Change::Write)
        );
        assert_eq!(
            state_consumed(&mut record, "n1", expiry, now),
            Err(Replayed)
        );
        assert_eq!(
            state_consumed(&mut record, "n2", expiry, now),
            Ok(Change::Write)
        );
    }

    #[test]
    fn the_callback_replaces_any_grant_and_problem() {
        let account = ZoomAccount {
            account_id: Some("acc".into()),
            user_id: Some("u".into()),
            email: None,
        };
        let mut record = TokenRecord {
            grant_problem: Some(problem(GrantReason::RefreshTokenSpent)),
            failed_refresh_attempts: 4,
            ..fenced("t0", "b", NOW)
        };
        let now = ts(NOW);
        let g = grant(Some("t5"));
        assert_eq!(
            callback_stored(&mut record, &g, "c2", Some(&account), now),
            Change::Write
        );
        assert_eq!(record.grant, Some(g));
        assert_eq!(record.account, Some(account));
        assert_eq!(record.client_id.as_deref(), Some("c2"));
        assert_eq!(record.last_refresh_time, Some(now));
        assert_eq!(
            (
                &record.grant_problem,
                &record.fence,
                record.failed_refresh_attempts
            ),
            (&None, &None, 0)
        );
    }

    #[test]
    fn a_failed_authorization_leaves_a_working_grant_alone() {
        let failed = problem(GrantReason::AuthorizationFailed);
        let mut working = holding("t0");
        assert_eq!(authorization_failed(&mut working, &failed), Change::Keep);
        let mut awaiting = TokenRecord::default();
        assert_eq!(authorization_failed(&mut awaiting, &failed), Change::Write);
        assert_eq!(awaiting.grant_problem, Some(failed));
        // Zoom refusing the app's credentials is news even with a working grant.
        let creds = problem(GrantReason::InvalidClientCredentials);
        assert_eq!(authorization_failed(&mut working, &creds), Change::Write);
    }

    #[test]
    fn deauthorization_deletes_only_grants_older_than_it() {
        let at = ts("2026-11-29T09:00:00Z");
        let table: Vec<(&str, TokenRecord, Option<Timestamp>, Change)> = vec![
            (
                "a grant from before",
                holding("t0"),
                Some(at),
                Change::Write,
            ),
            ("no time given", holding("t0"), None, Change::Write),
            (
                "a grant stored after the event",
                TokenRecord {
                    last_refresh_time: Some(ts("2026-11-29T09:00:05Z")),
                    ..holding("t0")
                },
                Some(at),
                Change::Keep,
            ),
            (
                "already deauthorized",
                TokenRecord {
                    grant_problem: Some(problem(GrantReason::Deauthorized)),
                    ..Default::default()
                },
                Some(at),
                Change::Keep,
            ),
        ];
        for (what, mut record, when, want) in table {
            assert_eq!(deauthorized(&mut record, when, "gone"), want, "{what}");
            if want == Change::Write {
                assert_eq!(record.grant, None, "{what}");
                assert_eq!(
                    record.grant_problem,
                    Some(GrantProblem::new(GrantReason::Deauthorized, "gone")),
                    "{what}"
                );
            }
        }
    }

    #[test]
    fn the_account_is_recorded_for_the_grant_it_was_read_with() {
        let account = ZoomAccount {
            account_id: Some("acc".into()),
            ..Default::default()
        };
        let mut record = holding("t0");
        assert_eq!(account_read(&mut record, "at-t9", &account), Change::Keep);
        assert_eq!(record.account, None);
        assert_eq!(account_read(&mut record, "at-t0", &account), Change::Write);
        assert_eq!(record.account, Some(account));
    }

    #[test]
    fn sink_health_is_written_on_changes_only() {
        let problem = |message: &str| SinkUnreachable {
            sink: "http://sink".to_owned(),
            message: message.to_owned(),
        };
        let (failing, other_words) = (problem("refused"), problem("timed out"));
        let mut record = TokenRecord::default();
        assert_eq!(sink_health(&mut record, None), Change::Keep);
        assert_eq!(sink_health(&mut record, Some(&failing)), Change::Write);
        assert_eq!(sink_health(&mut record, Some(&other_words)), Change::Keep);
        assert_eq!(sink_health(&mut record, None), Change::Write);
        assert_eq!(record.sink_problem, None);
    }

    #[test]
    fn dropped_events_are_counted() {
        let mut record = TokenRecord::default();
        let now = ts(NOW);
        event_dropped(&mut record, "sink down", now);
        event_dropped(&mut record, "sink down", now);
        let dropped = record.events_dropped.expect("dropped");
        assert_eq!((dropped.count, dropped.last), (2, now));
    }
}
