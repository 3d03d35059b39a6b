//! Status conditions: what each one says, how `Ready` summarises them, and which changes are
//! worth an Event. Pure: the reconciler passes in what it observed and the time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const CREDENTIALS_READY: &str = "CredentialsReady";
pub const AUTHORIZED: &str = "Authorized";
pub const TOKEN_READY: &str = "TokenReady";
pub const EVENTS_READY: &str = "EventsReady";
pub const URLS_READY: &str = "URLsReady";

/// The conditions `Ready` depends on, in the order their problems are reported.
const READY_DEPENDS_ON: [&str; 3] = [CREDENTIALS_READY, AUTHORIZED, TOKEN_READY];

/// One condition as decided in this pass, before timestamps are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub type_: &'static str,
    pub status: Status,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl Verdict {
    pub fn ok(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Verdict {
            type_,
            status: Status::True,
            reason,
            message: message.into(),
        }
    }

    pub fn failed(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Verdict {
            type_,
            status: Status::False,
            reason,
            message: message.into(),
        }
    }

    pub fn unknown(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Verdict {
            type_,
            status: Status::Unknown,
            reason,
            message: message.into(),
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == Status::True
    }
}

/// `Ready` from the other verdicts: True only when CredentialsReady, Authorized and TokenReady
/// are all True; otherwise it carries the first problem's reason and message, so
/// `kubectl get zc` shows what to fix. A spec problem overrides everything.
pub fn ready_verdict(verdicts: &[Verdict], spec_problem: Option<&str>) -> Verdict {
    if let Some(problem) = spec_problem {
        return Verdict::failed(READY, "InvalidSpec", problem);
    }
    for type_ in READY_DEPENDS_ON {
        match verdicts.iter().find(|v| v.type_ == type_) {
            Some(v) if v.is_true() => {}
            Some(v) => return Verdict::failed(READY, v.reason, v.message.clone()),
            None => {
                return Verdict::unknown(
                    READY,
                    "Pending",
                    format!("{type_} has not been determined yet"),
                )
            }
        }
    }
    Verdict::ok(READY, "Ready", "The connection has a fresh token")
}

/// Turns verdicts into `metav1.Condition`s, keeping `lastTransitionTime` from the previous
/// status when the condition's status did not change. `Ready` comes first.
pub fn to_conditions(
    ready: &Verdict,
    verdicts: &[Verdict],
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    std::iter::once(ready)
        .chain(verdicts.iter())
        .map(|v| {
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == v.type_ && c.status == v.status.as_str())
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: v.type_.to_owned(),
                status: v.status.as_str().to_owned(),
                reason: v.reason.to_owned(),
                message: v.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// A condition whose status or reason changed since the previous status: worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    /// An Event of type Warning rather than Normal.
    pub warning: bool,
}

pub fn transitions(previous: &[Condition], current: &[Condition]) -> Vec<Transition> {
    current
        .iter()
        .filter(|c| {
            !previous
                .iter()
                .any(|p| p.type_ == c.type_ && p.status == c.status && p.reason == c.reason)
        })
        .map(|c| Transition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            warning: c.status != "True",
        })
        .collect()
}

/// The transitions worth an Event, one per meaningful change as cert-manager does. `Ready`
/// carries the reason of the condition that caused it, so it gets an Event only for the
/// Ready=True moment itself. A new connection's first status gets one Event in all: Ready=True,
/// or the condition that keeps it from being ready.
pub fn worth_an_event(previous: &[Condition], current: &[Condition]) -> Vec<Transition> {
    let all = transitions(previous, current);
    if previous.is_empty() {
        let ready = current.iter().find(|c| c.type_ == READY);
        let first = all.iter().find(|t| match ready {
            Some(r) if r.status == "True" => t.type_ == READY,
            Some(r) => t.type_ != READY && t.status != "True" && t.reason == r.reason,
            None => t.status != "True",
        });
        return first.cloned().into_iter().collect();
    }
    all.into_iter()
        .filter(|t| t.type_ != READY || t.status == "True")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: String::new(),
            last_transition_time: t(0),
            observed_generation: None,
        }
    }

    #[test]
    fn one_event_per_meaningful_change() {
        let names = |ts: Vec<Transition>| -> Vec<String> {
            ts.into_iter()
                .map(|t| format!("{}={}/{}", t.type_, t.status, t.reason))
                .collect()
        };
        let ready = [
            condition(CREDENTIALS_READY, "True", "Valid"),
            condition(AUTHORIZED, "True", "Authorized"),
            condition(TOKEN_READY, "True", "Fresh"),
            condition(URLS_READY, "True", "Ready"),
            condition(READY, "True", "Ready"),
        ];
        let waiting = [
            condition(CREDENTIALS_READY, "True", "Valid"),
            condition(AUTHORIZED, "False", "AwaitingAuthorization"),
            condition(TOKEN_READY, "False", "NoToken"),
            condition(URLS_READY, "True", "Ready"),
            condition(READY, "False", "AwaitingAuthorization"),
        ];
        // A new connection: one Event, whatever its first status.
        assert_eq!(names(worth_an_event(&[], &ready)), ["Ready=True/Ready"]);
        assert_eq!(
            names(worth_an_event(&[], &waiting)),
            ["Authorized=False/AwaitingAuthorization"]
        );
        // Later: every condition that changed, Ready only when it becomes True.
        assert_eq!(
            names(worth_an_event(&waiting, &ready)),
            [
                "Authorized=True/Authorized",
                "TokenReady=True/Fresh",
                "Ready=True/Ready"
            ]
        );
        assert_eq!(
            names(worth_an_event(&ready, &waiting)),
            [
                "Authorized=False/AwaitingAuthorization",
                "TokenReady=False/NoToken"
            ]
        );
        assert!(worth_an_event(&ready, &ready).is_empty());
    }

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("valid"))
    }

    fn all_good() -> Vec<Verdict> {
        vec![
            Verdict::ok(CREDENTIALS_READY, "Valid", ""),
            Verdict::ok(AUTHORIZED, "Authorized", ""),
            Verdict::ok(TOKEN_READY, "Fresh", ""),
            Verdict::failed(URLS_READY, "IngressNotFound", "no ingress"),
        ]
    }

    #[test]
    fn ready_only_when_the_three_are_true() {
        // URLsReady is not part of Ready: a token is usable without public URLs.
        assert!(ready_verdict(&all_good(), None).is_true());

        let mut missing_key = all_good();
        missing_key[0] = Verdict::failed(CREDENTIALS_READY, "MissingKey", "add clientSecret");
        missing_key[2] = Verdict::failed(TOKEN_READY, "Expired", "expired");
        let ready = ready_verdict(&missing_key, None);
        assert_eq!((ready.status, ready.reason), (Status::False, "MissingKey"));
        assert_eq!(ready.message, "add clientSecret");

        let mut expired = all_good();
        expired[2] = Verdict::failed(TOKEN_READY, "Expired", "expired");
        assert_eq!(ready_verdict(&expired, None).reason, "Expired");

        assert_eq!(
            ready_verdict(&all_good(), Some("bad refreshBefore")).reason,
            "InvalidSpec"
        );
        assert_eq!(
            ready_verdict(&all_good()[..1], None).status,
            Status::Unknown
        );
    }

    #[test]
    fn transition_time_kept_while_status_holds() {
        let verdicts = all_good();
        let ready = ready_verdict(&verdicts, None);
        let first = to_conditions(&ready, &verdicts, &[], Some(1), &t(100));
        assert!(first.iter().all(|c| c.last_transition_time == t(100)));
        assert!(first.iter().all(|c| c.observed_generation == Some(1)));
        assert_eq!(first[0].type_, READY);

        // Same statuses later: times kept. Reason change without status change: time kept too.
        let mut later = verdicts.clone();
        later[3] = Verdict::failed(URLS_READY, "IngressHasNoHost", "no host");
        let second = to_conditions(&ready, &later, &first, Some(2), &t(200));
        assert!(second.iter().all(|c| c.last_transition_time == t(100)));
        assert!(second.iter().all(|c| c.observed_generation == Some(2)));

        // Status flips: new time.
        let mut broken = verdicts.clone();
        broken[0] = Verdict::failed(CREDENTIALS_READY, "SecretNotFound", "gone");
        let ready = ready_verdict(&broken, None);
        let third = to_conditions(&ready, &broken, &second, Some(2), &t(300));
        let by_type = |ty: &str| third.iter().find(|c| c.type_ == ty).expect("present");
        assert_eq!(by_type(READY).last_transition_time, t(300));
        assert_eq!(by_type(CREDENTIALS_READY).last_transition_time, t(300));
        assert_eq!(by_type(TOKEN_READY).last_transition_time, t(100));
    }

    #[test]
    fn only_changes_are_transitions() {
        let verdicts = all_good();
        let ready = ready_verdict(&verdicts, None);
        let first = to_conditions(&ready, &verdicts, &[], None, &t(0));
        assert_eq!(transitions(&[], &first).len(), 5);
        assert!(transitions(&first, &first).is_empty());

        let mut broken = verdicts.clone();
        broken[0] = Verdict::failed(CREDENTIALS_READY, "SecretNotFound", "gone");
        let ready = ready_verdict(&broken, None);
        let second = to_conditions(&ready, &broken, &first, None, &t(1));
        let changed: Vec<_> = transitions(&first, &second)
            .into_iter()
            .map(|t| (t.type_, t.reason, t.warning))
            .collect();
        assert_eq!(
            changed,
            vec![
                (READY.to_owned(), "SecretNotFound".to_owned(), true),
                (
                    CREDENTIALS_READY.to_owned(),
                    "SecretNotFound".to_owned(),
                    true
                ),
            ]
        );
    }
}
