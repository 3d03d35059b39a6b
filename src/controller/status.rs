//! The status a connection should have, from what one reconcile pass observed. Pure.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{AuthType, ZoomConnection, ZoomConnectionStatus};
use crate::conditions::{self as cond, Verdict};
use crate::credentials::{AppCredentials, CredentialsProblem};
use crate::tokens::secret::{rfc3339, Ownership, TokenRecord};
use crate::urls::{PublicUrls, UrlProblem};

use crate::tokens::GrantReason;

/// Whether the connection can receive events, decided by the events module.
pub type EventsVerdict = Option<Verdict>;

/// Everything one pass observed, ready to be turned into a status.
pub struct Observation<'a> {
    pub zc: &'a ZoomConnection,
    pub now: Timestamp,
    pub spec_problem: Option<String>,
    pub credentials: &'a Result<AppCredentials, CredentialsProblem>,
    pub credentials_secret: String,
    pub token_secret: Ownership,
    pub record: &'a TokenRecord,
    pub urls: &'a Result<PublicUrls, UrlProblem>,
    pub authorize_url: Option<String>,
    pub next_refresh: Option<Timestamp>,
    pub retry_at: Option<Timestamp>,
    pub events: EventsVerdict,
    /// Zoom issued a grant this process holds in memory because writing it failed: the
    /// `TokenNotStored` message.
    pub not_stored: Option<String>,
    /// Events stored for redelivery; None when the connection has no sink.
    pub pending_events: Option<u32>,
    /// Other connections (`namespace/name`) of the same app authorized by the same Zoom user:
    /// Zoom keeps one grant per user and app.
    pub shared_grant: Vec<String>,
}

fn time(ts: Timestamp) -> Time {
    // Whole seconds: metav1.Time is serialized without fractions anyway.
    Time(Timestamp::from_second(ts.as_second()).unwrap_or(ts))
}

pub fn credentials_verdict(o: &Observation<'_>) -> Verdict {
    match o.credentials {
        Err(problem) => {
            Verdict::failed(cond::CREDENTIALS_READY, problem.reason(), problem.message())
        }
        Ok(_) if problem_is(o.record, GrantReason::InvalidClientCredentials) => {
            let problem = o.record.grant_problem.as_ref();
            let detail = problem.map(|p| p.message.as_str()).unwrap_or_default();
            let message = if problem.is_some_and(|p| p.app_disabled()) {
                format!(
                    "Zoom says the app whose credentials are in Secret {} is disabled; enable it in the Zoom App Marketplace or ask Zoom support ({detail})",
                    o.credentials_secret
                )
            } else {
                format!(
                    "Zoom rejected the client ID or client secret in Secret {}; copy them again from the Zoom Marketplace app",
                    o.credentials_secret
                )
            };
            Verdict::failed(cond::CREDENTIALS_READY, "InvalidClientCredentials", message)
        }
        Ok(_) => Verdict::ok(
            cond::CREDENTIALS_READY,
            "Valid",
            format!(
                "Client credentials read from Secret {}",
                o.credentials_secret
            ),
        ),
    }
}

fn problem_is(record: &TokenRecord, reason: GrantReason) -> bool {
    record
        .grant_problem
        .as_ref()
        .is_some_and(|p| p.reason == reason)
}

/// The `Authorized` verdict when the record holds a grant problem only a person can fix.
fn grant_problem_verdict(o: &Observation<'_>) -> Option<Verdict> {
    let problem = o.record.grant_problem.as_ref()?;
    let detail = Some(problem.message.as_str()).filter(|m| !m.is_empty());
    let with_detail = |base: String| match detail {
        Some(d) => format!("{base} ({d})"),
        None => base,
    };
    let verdict = match problem.reason {
        GrantReason::RefreshTokenRejected => {
            let cause = match o.shared_grant.as_slice() {
                [] => String::new(),
                others => format!(
                    ". The likely cause: the same Zoom user also authorized this app for {}, and Zoom keeps only the newest grant per user and app",
                    others.join(", ")
                ),
            };
            Verdict::failed(
                cond::AUTHORIZED,
                "RefreshTokenRejected",
                format!(
                    "{}{cause}",
                    with_detail(format!("Zoom rejected the refresh token; {REAUTHORIZE}"))
                ),
            )
        }
        GrantReason::RefreshTokenSpent => {
            // Not Zoom's fault, and not a mystery: say what happened.
            let what = detail.unwrap_or("the refresh token was already spent");
            Verdict::failed(
                cond::AUTHORIZED,
                "RefreshTokenRejected",
                format!("The grant is lost: {what}; {REAUTHORIZE}"),
            )
        }
        GrantReason::Deauthorized => Verdict::failed(
            cond::AUTHORIZED,
            "Deauthorized",
            format!("The app was removed from the Zoom account and its tokens were deleted; {REAUTHORIZE}"),
        ),
        GrantReason::AccountCredentialsRejected => Verdict::failed(
            cond::AUTHORIZED,
            "AccountCredentialsRejected",
            with_detail(
                "Zoom rejected the account credentials grant; check the account ID and that the Server-to-Server app is activated".to_owned(),
            ),
        ),
        GrantReason::InvalidClientCredentials | GrantReason::AuthorizationFailed => return None,
    };
    Some(verdict)
}

const REAUTHORIZE: &str =
    "open status.authorizeURL (or run `zoom-operator authorize`) to authorize again";

pub fn authorized_verdict(o: &Observation<'_>) -> Verdict {
    if let Some(verdict) = grant_problem_verdict(o) {
        return verdict;
    }
    let detail = o
        .record
        .grant_problem
        .as_ref()
        .map(|p| p.message.as_str())
        .filter(|m| !m.is_empty());
    let authorized = match o.zc.spec.auth_type {
        AuthType::ServerToServer => o.record.grant.is_some(),
        _ => o
            .record
            .grant
            .as_ref()
            .is_some_and(|g| g.refresh_token.is_some()),
    };
    if authorized {
        let who = o
            .record
            .account
            .as_ref()
            .and_then(|a| a.email.clone().or_else(|| a.account_id.clone()));
        let base = match who {
            Some(who) => format!("Authorized by {who}"),
            None => "Authorized".to_owned(),
        };
        let message = match o.shared_grant.as_slice() {
            [] => base,
            others => format!(
                "{base}. The same Zoom user also authorized this app for {}: Zoom keeps one grant per user and app, so only the connection authorized last keeps working; authorize each connection with its own Zoom user",
                others.join(", ")
            ),
        };
        return Verdict::ok(cond::AUTHORIZED, "Authorized", message);
    }
    let message = match o.zc.spec.auth_type {
        AuthType::ServerToServer => {
            "Waiting for valid credentials to mint the first token".to_owned()
        }
        _ => {
            let mut m = "Nobody has authorized this connection yet; open status.authorizeURL or run `zoom-operator authorize`".to_owned();
            if problem_is(o.record, GrantReason::AuthorizationFailed) {
                if let Some(d) = detail {
                    m = format!("The last authorization attempt failed: {d}; open status.authorizeURL to try again");
                }
            }
            m
        }
    };
    Verdict::failed(cond::AUTHORIZED, "AwaitingAuthorization", message)
}

pub fn token_verdict(o: &Observation<'_>) -> Verdict {
    let secret_name = o.zc.token_secret_name();
    let ns = o.zc.metadata.namespace.as_deref().unwrap_or_default();
    if o.token_secret == Ownership::Foreign {
        return Verdict::failed(
            cond::TOKEN_READY,
            "SecretNotOwned",
            format!(
                "Secret {ns}/{secret_name} already exists and is not owned by this ZoomConnection; the operator will not take it over. Delete it or set spec.tokenSecretName to another name"
            ),
        );
    }
    if let Some(message) = &o.not_stored {
        return Verdict::failed(cond::TOKEN_READY, "TokenNotStored", message.clone());
    }
    let Some(grant) = &o.record.grant else {
        return Verdict::failed(
            cond::TOKEN_READY,
            "NoToken",
            format!("No access token yet; it will be written to Secret {ns}/{secret_name} once the connection is authorized"),
        );
    };
    let expires = rfc3339(grant.expires_at);
    if o.now >= grant.expires_at {
        let why = match &o.record.last_failure {
            Some(f) if o.record.failed_refresh_attempts > 0 => {
                format!("; the last refresh failed: {f}")
            }
            _ => String::new(),
        };
        return Verdict::failed(
            cond::TOKEN_READY,
            "Expired",
            format!("The access token in Secret {ns}/{secret_name} expired at {expires}{why}"),
        );
    }
    if o.record.failed_refresh_attempts > 0 {
        let last = o.record.last_failure.as_deref().unwrap_or("unknown error");
        let retry = o
            .retry_at
            .map(|t| format!("; retrying at {}", rfc3339(t)))
            .unwrap_or_default();
        return Verdict::failed(
            cond::TOKEN_READY,
            "RefreshFailing",
            format!(
                "{} refresh attempt(s) failed (last: {last}){retry}; the current token is still valid until {expires}",
                o.record.failed_refresh_attempts
            ),
        );
    }
    Verdict::ok(
        cond::TOKEN_READY,
        "Fresh",
        format!("Access token in Secret {ns}/{secret_name} is valid until {expires}"),
    )
}

pub fn urls_verdict(o: &Observation<'_>) -> Verdict {
    match o.urls {
        Ok(urls) => match urls.zoom_refuses() {
            None => Verdict::ok(
                cond::URLS_READY,
                "Ready",
                format!("Public URLs derived from {}", urls.base()),
            ),
            // The URLs are still written to status: they work for a local try-out, and the
            // redirect URL may be fine for the browser.
            Some(why) => Verdict::failed(
                cond::URLS_READY,
                "NotHTTPS",
                format!(
                    "The event URL {} {why}; Zoom accepts only https:// endpoints for a domain name with a CA-signed certificate. Configure TLS for a host on the Ingress (spec.tls) or start the operator with --public-url https://<domain>",
                    urls.event_url()
                ),
            ),
        },
        Err(problem) => Verdict::failed(cond::URLS_READY, problem.reason(), problem.message()),
    }
}

/// The whole status for this pass.
pub fn build(o: &Observation<'_>) -> ZoomConnectionStatus {
    let mut verdicts = vec![
        credentials_verdict(o),
        authorized_verdict(o),
        token_verdict(o),
    ];
    if let Some(events) = o.events.clone() {
        verdicts.push(events);
    }
    verdicts.push(urls_verdict(o));
    let ready = cond::ready_verdict(&verdicts, o.spec_problem.as_deref());
    let previous =
        o.zc.status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
    let generation = o.zc.metadata.generation;
    let conditions = cond::to_conditions(&ready, &verdicts, previous, generation, &time(o.now));
    let grant = o.record.grant.as_ref();
    ZoomConnectionStatus {
        observed_generation: generation,
        conditions,
        redirect_url: o.urls.as_ref().ok().map(PublicUrls::redirect_url),
        event_url: o.urls.as_ref().ok().map(PublicUrls::event_url),
        authorize_url: o.authorize_url.clone(),
        token_secret_name: Some(o.zc.token_secret_name()),
        expires_at: grant.map(|g| time(g.expires_at)),
        last_refresh_time: o.record.last_refresh_time.map(time),
        next_refresh_time: o.next_refresh.map(time),
        failed_refresh_attempts: Some(o.record.failed_refresh_attempts),
        account: o.record.account.clone(),
        scopes: grant.map(|g| g.scope.clone()).filter(|s| !s.is_empty()),
        // Owned by the webhook path's field manager; never written here.
        last_event_time: None,
        pending_events: o.pending_events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CredentialsRef, ZoomConnectionSpec};
    use crate::tokens::secret::TokenGrant;
    use url::Url;

    fn zc(auth_type: AuthType) -> ZoomConnection {
        let mut zc = ZoomConnection::new(
            "bot",
            ZoomConnectionSpec::new(auth_type, Some(CredentialsRef::with_name("zoom-app"))),
        );
        zc.metadata.namespace = Some("team-a".into());
        zc.metadata.generation = Some(4);
        zc
    }

    fn creds() -> Result<AppCredentials, CredentialsProblem> {
        Ok(AppCredentials {
            client_id: "id".into(),
            client_secret: "secret".into(),
            secret_token: None,
            account_id: None,
        })
    }

    fn fresh_record() -> TokenRecord {
        TokenRecord {
            grant: Some(TokenGrant {
                access_token: "access-value".into(),
                refresh_token: Some("refresh-value".into()),
                token_type: "bearer".into(),
                expires_at: "2026-11-29T10:00:00Z".parse().expect("ts"),
                scope: "user:read:user".into(),
                api_url: "https://api.zoom.us".into(),
            }),
            ..Default::default()
        }
    }

    fn observe<'a>(
        zc: &'a ZoomConnection,
        credentials: &'a Result<AppCredentials, CredentialsProblem>,
        record: &'a TokenRecord,
        urls: &'a Result<PublicUrls, UrlProblem>,
    ) -> Observation<'a> {
        Observation {
            zc,
            now: "2026-11-29T09:00:00Z".parse().expect("ts"),
            spec_problem: None,
            credentials,
            credentials_secret: "team-a/zoom-app".into(),
            token_secret: Ownership::Ours,
            record,
            urls,
            authorize_url: None,
            next_refresh: None,
            retry_at: None,
            events: None,
            not_stored: None,
            pending_events: None,
            shared_grant: Vec::new(),
        }
    }

    fn reason(status: &ZoomConnectionStatus, type_: &str) -> (String, String) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition present");
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn healthy_connection_is_ready_and_leaks_nothing() {
        let zc = zc(AuthType::PrivateOAuth);
        let (creds, record) = (creds(), fresh_record());
        let urls = Ok(PublicUrls::new(
            Url::parse("https://zoom.example.com").expect("url"),
        ));
        let status = build(&observe(&zc, &creds, &record, &urls));
        assert_eq!(reason(&status, "Ready"), ("True".into(), "Ready".into()));
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(
            status.redirect_url.as_deref(),
            Some("https://zoom.example.com/oauth/redirect/zoom")
        );
        assert_eq!(status.token_secret_name.as_deref(), Some("bot-zoom-token"));
        let json = serde_json::to_string(&status).expect("json");
        assert!(
            !json.contains("access-value")
                && !json.contains("refresh-value")
                && !json.contains("secret\"")
        );
    }

    #[test]
    fn reasons_without_credentials_or_urls() {
        let zc_oauth = zc(AuthType::PrivateOAuth);
        let urls = Err(UrlProblem::Unconfigured);
        let missing: Result<AppCredentials, _> = Err(CredentialsProblem::SecretNotFound {
            namespace: "team-a".into(),
            name: "zoom-app".into(),
        });
        let empty = TokenRecord::default();
        let status = build(&observe(&zc_oauth, &missing, &empty, &urls));
        assert_eq!(
            reason(&status, "Ready"),
            ("False".into(), "SecretNotFound".into())
        );
        assert_eq!(
            reason(&status, "Authorized"),
            ("False".into(), "AwaitingAuthorization".into())
        );
        assert_eq!(
            reason(&status, "TokenReady"),
            ("False".into(), "NoToken".into())
        );
        assert_eq!(
            reason(&status, "URLsReady"),
            ("False".into(), "IngressNotFound".into())
        );
    }

    #[test]
    fn grant_problems_show_in_authorized() {
        let zc_oauth = zc(AuthType::PrivateOAuth);
        let urls = Err(UrlProblem::Unconfigured);
        let creds = creds();
        let mut rejected = fresh_record();
        rejected.grant_problem = Some(crate::tokens::GrantProblem::new(
            GrantReason::RefreshTokenRejected,
            "Invalid Token!",
        ));
        let status = build(&observe(&zc_oauth, &creds, &rejected, &urls));
        assert_eq!(
            reason(&status, "Ready"),
            ("False".into(), "RefreshTokenRejected".into())
        );

        let mut spent = fresh_record();
        spent.grant_problem = Some(crate::tokens::GrantProblem::new(
            GrantReason::RefreshTokenSpent,
            crate::tokens::spent_message("pod-a-1", "2026-11-29T08:59:00Z".parse().expect("ts")),
        ));
        let status = build(&observe(&zc_oauth, &creds, &spent, &urls));
        let authorized = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Authorized")
            .expect("Authorized");
        assert_eq!(authorized.reason, "RefreshTokenRejected");
        assert!(
            authorized.message.contains("already been sent to Zoom")
                && authorized.message.contains("pod-a-1")
                && !authorized
                    .message
                    .contains("Zoom rejected the refresh token"),
            "{}",
            authorized.message
        );
    }

    #[test]
    fn token_states_show_in_token_ready() {
        let zc_oauth = zc(AuthType::PrivateOAuth);
        let urls = Err(UrlProblem::Unconfigured);
        let creds = creds();
        let empty = TokenRecord::default();
        let fresh = fresh_record();
        let mut o = observe(&zc_oauth, &creds, &fresh, &urls);
        o.not_stored = Some("Zoom issued a new token at X but it could not be written".into());
        assert_eq!(
            reason(&build(&o), "TokenReady"),
            ("False".into(), "TokenNotStored".into())
        );

        let mut failing = fresh_record();
        failing.failed_refresh_attempts = 3;
        failing.last_failure = Some("Zoom is unavailable: HTTP 503".into());
        let status = build(&observe(&zc_oauth, &creds, &failing, &urls));
        assert_eq!(
            reason(&status, "TokenReady"),
            ("False".into(), "RefreshFailing".into())
        );
        assert_eq!(status.failed_refresh_attempts, Some(3));

        let mut o = observe(&zc_oauth, &creds, &failing, &urls);
        o.now = "2026-11-29T11:00:00Z".parse().expect("ts");
        assert_eq!(
            reason(&build(&o), "TokenReady"),
            ("False".into(), "Expired".into())
        );

        let mut o = observe(&zc_oauth, &creds, &empty, &urls);
        o.token_secret = Ownership::Foreign;
        let status = build(&o);
        assert_eq!(
            reason(&status, "TokenReady"),
            ("False".into(), "SecretNotOwned".into())
        );
        let msg = &status
            .conditions
            .iter()
            .find(|c| c.type_ == "TokenReady")
            .expect("c")
            .message;
        assert!(
            msg.contains("team-a/bot-zoom-token") && msg.contains("not owned"),
            "{msg}"
        );

        let s2s = zc(AuthType::ServerToServer);
        let mut s2s_record = fresh_record();
        if let Some(g) = s2s_record.grant.as_mut() {
            g.refresh_token = None;
        }
        let status = build(&observe(&s2s, &creds, &s2s_record, &urls));
        assert_eq!(reason(&status, "Ready"), ("True".into(), "Ready".into()));
    }
}
