//! The token Secret: its layout (api.md section 4), who owns it, and the bookkeeping the
//! operator keeps beside the tokens so any replica can pick up where another left off.
//!
//! Pure: conversions between a `Secret` and a [`TokenRecord`]; the one writer is `super::store`.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use kube::Resource;

use super::{GrantProblem, GrantReason};
use crate::api::{ZoomAccount, ZoomConnection, CONNECTION_LABEL, MANAGED_BY_LABEL};

pub const ACCESS_TOKEN: &str = "access_token";
pub const REFRESH_TOKEN: &str = "refresh_token";
pub const TOKEN_TYPE: &str = "token_type";
pub const EXPIRES_AT: &str = "expires_at";
pub const SCOPE: &str = "scope";
pub const API_URL: &str = "api_url";

/// Operator bookkeeping kept as annotations on the token Secret (never token values).
pub mod annotations {
    pub const LAST_REFRESH_TIME: &str = "zoom-operator.io/last-refresh-time";
    pub const CLIENT_ID: &str = "zoom-operator.io/client-id";
    pub const ACCOUNT_ID: &str = "zoom-operator.io/account-id";
    pub const USER_ID: &str = "zoom-operator.io/user-id";
    pub const EMAIL: &str = "zoom-operator.io/email";
    /// Why the grant is gone: `RefreshTokenRejected`, `Deauthorized`, `AccessDenied`, ...
    pub const GRANT_PROBLEM: &str = "zoom-operator.io/grant-problem";
    pub const GRANT_PROBLEM_MESSAGE: &str = "zoom-operator.io/grant-problem-message";
    pub const FAILED_REFRESH_ATTEMPTS: &str = "zoom-operator.io/failed-refresh-attempts";
    pub const LAST_FAILURE: &str = "zoom-operator.io/last-failure";
    /// The value of `zoom-operator.io/refresh-requested` that was last acted on.
    pub const REFRESH_HANDLED: &str = "zoom-operator.io/refresh-handled";
    /// OAuth `state` nonces already used, so a state works once across all replicas.
    pub const CONSUMED_STATES: &str = "zoom-operator.io/consumed-states";
    /// Why forwarding events to the sink last failed (set on healthy -> failing, removed on
    /// failing -> healthy), and which sink that was: a sink changed in the spec since then is
    /// not reported as unreachable.
    pub const SINK_UNREACHABLE: &str = "zoom-operator.io/sink-unreachable";
    pub const SINK_UNREACHABLE_URI: &str = "zoom-operator.io/sink-unreachable-uri";
    /// Who is refreshing the grant, until when, and a hash of the refresh token being sent
    /// (see `super::Fence`).
    pub const REFRESH_FENCE: &str = "zoom-operator.io/refresh-fence";
    /// Events given up on after their retries: how many, when the last was, and why.
    pub const EVENTS_DROPPED: &str = "zoom-operator.io/events-dropped";
    pub const EVENTS_DROPPED_TIME: &str = "zoom-operator.io/events-dropped-time";
    pub const EVENTS_DROPPED_REASON: &str = "zoom-operator.io/events-dropped-reason";

    pub const ALL: [&str; 17] = [
        LAST_REFRESH_TIME,
        CLIENT_ID,
        ACCOUNT_ID,
        USER_ID,
        EMAIL,
        GRANT_PROBLEM,
        GRANT_PROBLEM_MESSAGE,
        FAILED_REFRESH_ATTEMPTS,
        LAST_FAILURE,
        REFRESH_HANDLED,
        CONSUMED_STATES,
        SINK_UNREACHABLE,
        SINK_UNREACHABLE_URI,
        REFRESH_FENCE,
        EVENTS_DROPPED,
        EVENTS_DROPPED_TIME,
        EVENTS_DROPPED_REASON,
    ];
}

/// Tokens as Zoom issued them.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub access_token: String,
    /// OAuth grants only; Server-to-Server tokens have none.
    pub refresh_token: Option<String>,
    pub token_type: String,
    pub expires_at: Timestamp,
    pub scope: String,
    pub api_url: String,
}

impl fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGrant")
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("api_url", &self.api_url)
            .finish()
    }
}

/// Everything the token Secret records: the grant (if any) and the bookkeeping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRecord {
    pub grant: Option<TokenGrant>,
    pub last_refresh_time: Option<Timestamp>,
    pub client_id: Option<String>,
    pub account: Option<ZoomAccount>,
    pub grant_problem: Option<GrantProblem>,
    pub failed_refresh_attempts: u32,
    pub last_failure: Option<String>,
    pub refresh_handled: Option<String>,
    pub consumed_states: Vec<(String, Timestamp)>,
    /// Why forwarding to the sink failed; written by the webhook path only when the sink's
    /// health changes.
    pub sink_problem: Option<SinkUnreachable>,
    /// A refresher's claim on the grant while it talks to Zoom.
    pub fence: Option<super::Fence>,
    /// Events given up on after their retries (`crate::webhooks::delivery`).
    pub events_dropped: Option<EventsDropped>,
}

/// The sink events were last forwarded to failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkUnreachable {
    /// The sink as shown to people (without its query).
    pub sink: String,
    /// Why forwarding failed.
    pub message: String,
}

/// Events of a connection dropped after their last retry, with no dead-letter sink to take them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsDropped {
    pub count: u64,
    pub last: Timestamp,
    pub why: String,
}

/// Who holds a Secret of the token Secret's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    Absent,
    Ours,
    /// Exists, but its controller owner is not this ZoomConnection.
    Foreign,
}

pub fn ownership(zc: &ZoomConnection, secret: Option<&Secret>) -> Ownership {
    let Some(secret) = secret else {
        return Ownership::Absent;
    };
    let uid = zc.meta().uid.as_deref();
    let ours = secret.metadata.owner_references.iter().flatten().any(|r| {
        r.controller == Some(true) && Some(r.uid.as_str()) == uid && r.kind == "ZoomConnection"
    });
    if ours {
        Ownership::Ours
    } else {
        Ownership::Foreign
    }
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .filter(|v| !v.is_empty())
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// How many used OAuth states are remembered at most. Each one stands for a code that was
/// actually exchanged within the last 10 minutes; more than this means a flood, and the
/// oldest are forgotten (a forgotten state is still only good with a fresh code from Zoom for
/// the same PKCE challenge, which Zoom issues once).
pub const MAX_CONSUMED_STATES: usize = 64;

/// An annotation parsed as the untrusted input it is (tenants can edit their token Secret's
/// annotations): a value that does not parse is treated as absent, and said so in the log
/// (without the value, which could be anything).
fn parsed<T: std::str::FromStr>(secret: &Secret, key: &str) -> Option<T> {
    let raw = annotation(secret, key)?;
    match raw.trim().parse() {
        Ok(value) => Some(value),
        Err(_) => {
            tracing::warn!(
                secret = %format!("{}/{}", secret.metadata.namespace.as_deref().unwrap_or_default(), secret.metadata.name.as_deref().unwrap_or_default()),
                annotation = key,
                "ignoring an unreadable annotation on the token Secret (treated as absent)"
            );
            None
        }
    }
}

/// The remembered states: `nonce@expiry,...`. Malformed entries are skipped, and no more than
/// a bounded number is read, however long the annotation is.
fn consumed_states(secret: &Secret) -> Vec<(String, Timestamp)> {
    let Some(value) = annotation(secret, annotations::CONSUMED_STATES) else {
        return Vec::new();
    };
    value
        .split(',')
        .take(MAX_CONSUMED_STATES.saturating_mul(4))
        .filter_map(|entry| {
            let (nonce, expiry) = entry.split_once('@')?;
            if nonce.is_empty() || nonce.len() > 64 {
                return None;
            }
            Some((nonce.to_owned(), expiry.parse().ok()?))
        })
        .collect()
}

/// Records a state as used, forgetting expired ones and, past [`MAX_CONSUMED_STATES`], the
/// ones that expire first. Pure; `now` is passed in.
pub fn remember_state(
    record: &mut TokenRecord,
    nonce: &str,
    expires_at: Timestamp,
    now: Timestamp,
) {
    record.consumed_states.retain(|(_, expiry)| *expiry > now);
    record.consumed_states.push((nonce.to_owned(), expires_at));
    if record.consumed_states.len() > MAX_CONSUMED_STATES {
        record
            .consumed_states
            .sort_by_key(|(_, expiry)| std::cmp::Reverse(*expiry));
        record.consumed_states.truncate(MAX_CONSUMED_STATES);
    }
}

/// Reads a token Secret. Garbled bookkeeping is treated as absent rather than failing the
/// reconcile: the worst outcome is an early refresh.
pub fn read_record(secret: &Secret) -> TokenRecord {
    let grant = text(secret, ACCESS_TOKEN).map(|access_token| TokenGrant {
        access_token,
        refresh_token: text(secret, REFRESH_TOKEN),
        token_type: text(secret, TOKEN_TYPE).unwrap_or_else(|| "bearer".to_owned()),
        // No parsable expiry means we cannot trust the token: treat it as expired now.
        expires_at: text(secret, EXPIRES_AT)
            .and_then(|v| v.parse().ok())
            .unwrap_or(Timestamp::UNIX_EPOCH),
        scope: text(secret, SCOPE).unwrap_or_default(),
        api_url: text(secret, API_URL).unwrap_or_default(),
    });
    let account = {
        let a = ZoomAccount {
            account_id: annotation(secret, annotations::ACCOUNT_ID).map(str::to_owned),
            user_id: annotation(secret, annotations::USER_ID).map(str::to_owned),
            email: annotation(secret, annotations::EMAIL).map(str::to_owned),
        };
        (a != ZoomAccount::default()).then_some(a)
    };
    let consumed_states = consumed_states(secret);
    TokenRecord {
        grant,
        last_refresh_time: parsed(secret, annotations::LAST_REFRESH_TIME),
        client_id: annotation(secret, annotations::CLIENT_ID).map(str::to_owned),
        account,
        grant_problem: annotation(secret, annotations::GRANT_PROBLEM)
            .and_then(GrantReason::parse)
            .map(|reason| {
                GrantProblem::new(
                    reason,
                    annotation(secret, annotations::GRANT_PROBLEM_MESSAGE).unwrap_or_default(),
                )
            }),
        failed_refresh_attempts: parsed(secret, annotations::FAILED_REFRESH_ATTEMPTS).unwrap_or(0),
        last_failure: annotation(secret, annotations::LAST_FAILURE).map(str::to_owned),
        refresh_handled: annotation(secret, annotations::REFRESH_HANDLED).map(str::to_owned),
        consumed_states,
        sink_problem: annotation(secret, annotations::SINK_UNREACHABLE_URI).map(|sink| {
            SinkUnreachable {
                sink: sink.to_owned(),
                message: annotation(secret, annotations::SINK_UNREACHABLE)
                    .unwrap_or_default()
                    .to_owned(),
            }
        }),
        fence: annotation(secret, annotations::REFRESH_FENCE).and_then(super::Fence::parse),
        events_dropped: parsed(secret, annotations::EVENTS_DROPPED_TIME).map(|last| {
            EventsDropped {
                count: parsed(secret, annotations::EVENTS_DROPPED).unwrap_or(1),
                last,
                why: annotation(secret, annotations::EVENTS_DROPPED_REASON)
                    .unwrap_or_default()
                    .to_owned(),
            }
        }),
    }
}

/// RFC 3339 with whole seconds, as written to `expires_at` and shown in status.
pub fn rfc3339(ts: Timestamp) -> String {
    match Timestamp::from_second(ts.as_second()) {
        Ok(whole) => whole.to_string(),
        Err(_) => ts.to_string(),
    }
}

pub fn owner_reference(zc: &ZoomConnection) -> Option<OwnerReference> {
    zc.controller_owner_ref(&())
}

/// The complete token Secret for `record`: data keys, labels (ours plus the template's),
/// bookkeeping annotations, and the controller owner reference. Keys of a grant that is absent
/// are left out, so a deauthorized connection's Secret holds no token at all.
pub fn build_secret(zc: &ZoomConnection, record: &TokenRecord, now: Timestamp) -> Secret {
    let template = zc.spec.token_secret_template.clone().unwrap_or_default();
    let mut labels = template.labels;
    labels.insert(MANAGED_BY_LABEL.to_owned(), "zoom-operator".to_owned());
    labels.insert(
        CONNECTION_LABEL.to_owned(),
        zc.metadata.name.clone().unwrap_or_default(),
    );
    // The template's annotations, minus the operator's own keys (a template cannot forge them).
    let mut ann: BTreeMap<String, String> = template
        .annotations
        .into_iter()
        .filter(|(k, _)| !annotations::ALL.contains(&k.as_str()))
        .collect();
    ann.extend(bookkeeping(record, now));
    Secret {
        metadata: ObjectMeta {
            name: Some(zc.token_secret_name()),
            namespace: zc.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(ann),
            owner_references: owner_reference(zc).map(|r| vec![r]),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(token_data(record.grant.as_ref())),
        ..Default::default()
    }
}

/// The record's bookkeeping as annotations; empty values are left out.
fn bookkeeping(record: &TokenRecord, now: Timestamp) -> BTreeMap<String, String> {
    let mut ann = BTreeMap::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            ann.insert(key.to_owned(), value);
        }
    };
    put(
        annotations::LAST_REFRESH_TIME,
        record.last_refresh_time.map(rfc3339),
    );
    put(annotations::CLIENT_ID, record.client_id.clone());
    if let Some(account) = &record.account {
        put(annotations::ACCOUNT_ID, account.account_id.clone());
        put(annotations::USER_ID, account.user_id.clone());
        put(annotations::EMAIL, account.email.clone());
    }
    if let Some(problem) = &record.grant_problem {
        put(annotations::GRANT_PROBLEM, Some(problem.reason.to_string()));
        put(
            annotations::GRANT_PROBLEM_MESSAGE,
            Some(problem.message.clone()),
        );
    }
    if record.failed_refresh_attempts > 0 {
        put(
            annotations::FAILED_REFRESH_ATTEMPTS,
            Some(record.failed_refresh_attempts.to_string()),
        );
        put(annotations::LAST_FAILURE, record.last_failure.clone());
    }
    put(annotations::REFRESH_HANDLED, record.refresh_handled.clone());
    // Expired state nonces can never be presented again; forget them.
    let live: Vec<String> = record
        .consumed_states
        .iter()
        .filter(|(_, expiry)| *expiry > now)
        .map(|(nonce, expiry)| format!("{nonce}@{}", rfc3339(*expiry)))
        .collect();
    put(annotations::CONSUMED_STATES, Some(live.join(",")));
    if let Some(SinkUnreachable { sink, message }) = &record.sink_problem {
        put(annotations::SINK_UNREACHABLE_URI, Some(sink.clone()));
        put(annotations::SINK_UNREACHABLE, Some(message.clone()));
    }
    put(
        annotations::REFRESH_FENCE,
        record.fence.as_ref().map(super::Fence::encode),
    );
    if let Some(dropped) = &record.events_dropped {
        put(annotations::EVENTS_DROPPED, Some(dropped.count.to_string()));
        put(
            annotations::EVENTS_DROPPED_TIME,
            Some(rfc3339(dropped.last)),
        );
        put(
            annotations::EVENTS_DROPPED_REASON,
            Some(dropped.why.clone()),
        );
    }
    ann
}

/// The keys workloads read (api.md section 4); none without a grant.
fn token_data(grant: Option<&TokenGrant>) -> BTreeMap<String, ByteString> {
    let mut data = BTreeMap::new();
    let Some(grant) = grant else {
        return data;
    };
    let mut put = |key: &str, value: &str| {
        data.insert(key.to_owned(), ByteString(value.as_bytes().to_vec()));
    };
    put(ACCESS_TOKEN, &grant.access_token);
    if let Some(refresh) = &grant.refresh_token {
        put(REFRESH_TOKEN, refresh);
    }
    put(TOKEN_TYPE, &grant.token_type);
    put(EXPIRES_AT, &rfc3339(grant.expires_at));
    put(SCOPE, &grant.scope);
    put(API_URL, &grant.api_url);
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AuthType, SecretTemplate, ZoomConnectionSpec};

    fn zc() -> ZoomConnection {
        let mut zc = ZoomConnection::new(
            "sales-bot",
            ZoomConnectionSpec {
                token_secret_template: Some(SecretTemplate {
                    labels: BTreeMap::from([("team".to_owned(), "a".to_owned())]),
                    annotations: BTreeMap::from([(
                        annotations::CLIENT_ID.to_owned(),
                        "template cannot forge bookkeeping".to_owned(),
                    )]),
                }),
                ..ZoomConnectionSpec::new(AuthType::PrivateOAuth, None)
            },
        );
        zc.metadata.namespace = Some("team-a".into());
        zc.metadata.uid = Some("uid-1".into());
        zc
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn record() -> TokenRecord {
        TokenRecord {
            grant: Some(TokenGrant {
                access_token: "at".into(),
                refresh_token: Some("rt".into()),
                token_type: "bearer".into(),
                expires_at: ts("2026-11-29T10:00:00.5Z"),
                scope: "meeting:read:meeting".into(),
                api_url: "https://api.zoom.us".into(),
            }),
            last_refresh_time: Some(ts("2026-11-29T09:00:00Z")),
            client_id: Some("client".into()),
            account: Some(ZoomAccount {
                account_id: Some("acc".into()),
                user_id: Some("user".into()),
                email: Some("a@example.com".into()),
            }),
            grant_problem: None,
            failed_refresh_attempts: 2,
            last_failure: Some("Zoom answered 503".into()),
            refresh_handled: Some("1".into()),
            consumed_states: vec![
                ("old".into(), ts("2026-11-29T08:00:00Z")),
                ("live".into(), ts("2026-11-29T09:10:00Z")),
            ],
            sink_problem: Some(SinkUnreachable {
                sink: "http://handler.team-a.svc:8080/zoom".into(),
                message: "did not answer within 2.5s".into(),
            }),
            fence: Some(crate::tokens::Fence::new(
                "pod-a-1",
                ts("2026-11-29T09:00:00Z"),
                "rt",
            )),
            events_dropped: Some(EventsDropped {
                count: 3,
                last: ts("2026-11-29T08:30:00Z"),
                why: "the sink answered HTTP 500".into(),
            }),
        }
    }

    #[test]
    fn layout_matches_the_contract() {
        let secret = build_secret(&zc(), &record(), ts("2026-11-29T09:05:00Z"));
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("sales-bot-zoom-token")
        );
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        let keys: Vec<_> = secret
            .data
            .as_ref()
            .expect("data")
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys,
            [
                "access_token",
                "api_url",
                "expires_at",
                "refresh_token",
                "scope",
                "token_type"
            ]
        );
        assert_eq!(
            text(&secret, EXPIRES_AT).as_deref(),
            Some("2026-11-29T10:00:00Z")
        );
        let labels = secret.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[MANAGED_BY_LABEL], "zoom-operator");
        assert_eq!(labels[CONNECTION_LABEL], "sales-bot");
        assert_eq!(labels["team"], "a");
        let owner = &secret.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("uid-1", Some(true))
        );
        assert_eq!(ownership(&zc(), Some(&secret)), Ownership::Ours);
    }

    #[test]
    fn round_trips_and_forgets_expired_states() {
        let now = ts("2026-11-29T09:05:00Z");
        let secret = build_secret(&zc(), &record(), now);
        let back = read_record(&secret);
        let mut want = record();
        want.grant.as_mut().expect("grant").expires_at = ts("2026-11-29T10:00:00Z");
        want.consumed_states.remove(0);
        assert_eq!(back, want);
    }

    #[test]
    fn foreign_and_absent_secrets() {
        assert_eq!(ownership(&zc(), None), Ownership::Absent);
        let mut foreign = build_secret(&zc(), &record(), ts("2026-11-29T09:05:00Z"));
        foreign.metadata.owner_references = None;
        assert_eq!(ownership(&zc(), Some(&foreign)), Ownership::Foreign);
        let mut other_owner = build_secret(&zc(), &record(), ts("2026-11-29T09:05:00Z"));
        if let Some(refs) = other_owner.metadata.owner_references.as_mut() {
            refs[0].uid = "someone-else".into();
        }
        assert_eq!(ownership(&zc(), Some(&other_owner)), Ownership::Foreign);
    }

    #[test]
    fn no_grant_means_no_token_keys() {
        let mut r = record();
        r.grant = None;
        let secret = build_secret(&zc(), &r, ts("2026-11-29T09:05:00Z"));
        assert!(secret.data.as_ref().expect("data").is_empty());
        assert!(read_record(&secret).grant.is_none());
    }

    #[test]
    fn sink_problem_round_trips_and_clears() {
        let now = ts("2026-11-29T09:05:00Z");
        let secret = build_secret(&zc(), &record(), now);
        let ann = secret.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(
            ann[annotations::SINK_UNREACHABLE],
            "did not answer within 2.5s"
        );
        assert_eq!(
            ann[annotations::SINK_UNREACHABLE_URI],
            "http://handler.team-a.svc:8080/zoom"
        );
        let mut healthy = record();
        healthy.sink_problem = None;
        let secret = build_secret(&zc(), &healthy, now);
        let ann = secret.metadata.annotations.as_ref().expect("annotations");
        assert!(!ann.contains_key(annotations::SINK_UNREACHABLE));
        assert!(!ann.contains_key(annotations::SINK_UNREACHABLE_URI));
        assert_eq!(read_record(&secret).sink_problem, None);
    }

    #[test]
    fn template_cannot_forge_sink_health() {
        let mut zc = zc();
        if let Some(t) = zc.spec.token_secret_template.as_mut() {
            t.annotations.insert(
                annotations::SINK_UNREACHABLE_URI.to_owned(),
                "http://x.y.svc/".to_owned(),
            );
        }
        let mut r = record();
        r.sink_problem = None;
        let secret = build_secret(&zc, &r, ts("2026-11-29T09:05:00Z"));
        assert_eq!(read_record(&secret).sink_problem, None);
    }

    #[test]
    fn tenant_edited_annotations_are_untrusted_input() {
        let now = ts("2026-11-29T09:05:00Z");
        let mut secret = build_secret(&zc(), &record(), now);
        let ann = secret
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        ann.insert(annotations::LAST_REFRESH_TIME.into(), "yesterday".into());
        ann.insert(
            annotations::FAILED_REFRESH_ATTEMPTS.into(),
            "99999999999999999999".into(),
        );
        let flood: Vec<String> = (0..10_000)
            .map(|i| format!("n{i}@2026-11-29T09:10:00Z"))
            .collect();
        ann.insert(
            annotations::CONSUMED_STATES.into(),
            flood.join(",") + ",@,x@y,,",
        );
        ann.insert(annotations::GRANT_PROBLEM.into(), "Ready".into());
        let back = read_record(&secret);
        assert_eq!(back.grant_problem, None, "an unknown reason is no reason");
        assert_eq!(back.last_refresh_time, None);
        assert_eq!(back.failed_refresh_attempts, 0);
        assert_eq!(back.consumed_states.len(), MAX_CONSUMED_STATES * 4);
        assert!(back.grant.is_some(), "the tokens themselves are kept");
    }

    #[test]
    fn remembered_states_are_bounded() {
        let now = ts("2026-11-29T09:00:00Z");
        let mut r = TokenRecord::default();
        r.consumed_states
            .push(("expired".into(), ts("2026-11-29T08:59:59Z")));
        for i in 0..500i64 {
            let expiry = now
                .checked_add(jiff::SignedDuration::from_secs(600 + i))
                .expect("ts");
            remember_state(&mut r, &format!("n{i}"), expiry, now);
        }
        assert_eq!(r.consumed_states.len(), MAX_CONSUMED_STATES);
        assert!(
            r.consumed_states.iter().any(|(n, _)| n == "n499"),
            "the newest is kept"
        );
        assert!(!r.consumed_states.iter().any(|(n, _)| n == "expired"));
        let secret = build_secret(&zc(), &r, now);
        let size = secret
            .metadata
            .annotations
            .as_ref()
            .map(|a| a[annotations::CONSUMED_STATES].len());
        assert!(size.is_some_and(|s| s < 4096), "{size:?}");
    }

    #[test]
    fn debug_redacts_tokens() {
        let debug = format!("{:?}", record());
        assert!(
            !debug.contains("\"at\"") && !debug.contains("\"rt\""),
            "{debug}"
        );
    }
}
