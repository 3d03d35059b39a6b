//! `zoom-operator authorize -n NS NAME`: print the connection's authorize URL and wait until
//! it is authorized, failing clearly on timeout or when Zoom refuses.

use std::time::Duration;

use kube::api::Api;
use kube::Client;

use crate::api::ZoomConnection;
use crate::conditions::{AUTHORIZED, CREDENTIALS_READY};

/// What a connection's status says about an authorization in progress. Pure.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// No authorize URL yet (the operator has not reconciled, or has no public URL).
    Waiting(String),
    Open(String),
    Done(String),
    Failed(String),
}

pub fn progress(zc: &ZoomConnection, started_at: jiff::Timestamp) -> Progress {
    let status = zc.status.as_ref();
    if !zc.spec.auth_type.is_oauth() {
        return Progress::Failed(format!(
            "{} connections need no browser authorization",
            zc.spec.auth_type
        ));
    }
    if let Some(c) = zc
        .condition(CREDENTIALS_READY)
        .filter(|c| c.status == "False")
    {
        return Progress::Failed(c.message.clone());
    }
    if let Some(c) = zc.condition(AUTHORIZED) {
        if c.status == "True" {
            return Progress::Done(c.message.clone());
        }
        // A denial or failed exchange that happened after we started waiting: the person
        // at the browser got an error page, so stop waiting and say why.
        if c.message
            .starts_with("The last authorization attempt failed")
            && c.last_transition_time.0 >= started_at
        {
            return Progress::Failed(c.message.clone());
        }
    }
    match status.and_then(|s| s.authorize_url.clone()) {
        Some(url) => Progress::Open(url),
        None => Progress::Waiting(
            zc.condition("URLsReady")
                .map(|c| c.message.clone())
                .unwrap_or_else(|| {
                    "waiting for the operator to publish the authorize URL".to_owned()
                }),
        ),
    }
}

pub async fn authorize(namespace: &str, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let api: Api<ZoomConnection> = Api::namespaced(client, namespace);
    let started = crate::clock::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut printed = None::<String>;
    loop {
        let zc = api
            .get_opt(name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("ZoomConnection {namespace}/{name} not found"))?;
        match progress(&zc, started) {
            Progress::Done(message) => {
                eprintln!("{namespace}/{name} is authorized: {message}");
                return Ok(());
            }
            Progress::Failed(message) => anyhow::bail!("{namespace}/{name}: {message}"),
            Progress::Open(url) => {
                if printed.as_deref() != Some(url.as_str()) {
                    eprintln!("Open this URL in a browser to authorize {namespace}/{name}:");
                    println!("{url}");
                    printed = Some(url);
                }
            }
            Progress::Waiting(why) => tracing::debug!(%why, "waiting"),
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "{namespace}/{name} was not authorized within {}",
                crate::duration::format_duration(timeout)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AuthType, CredentialsRef, ZoomConnectionSpec, ZoomConnectionStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn zc(
        auth_type: AuthType,
        conditions: Vec<(&str, &str, &str, i64)>,
        url: Option<&str>,
    ) -> ZoomConnection {
        let mut zc = ZoomConnection::new(
            "bot",
            ZoomConnectionSpec::new(auth_type, Some(CredentialsRef::with_name("x"))),
        );
        zc.status = Some(ZoomConnectionStatus {
            conditions: conditions
                .into_iter()
                .map(|(t, s, m, at)| Condition {
                    type_: t.into(),
                    status: s.into(),
                    reason: "R".into(),
                    message: m.into(),
                    observed_generation: None,
                    last_transition_time: Time(jiff::Timestamp::from_second(at).expect("ts")),
                })
                .collect(),
            authorize_url: url.map(str::to_owned),
            ..Default::default()
        });
        zc
    }

    #[test]
    fn progress_table() {
        let started = jiff::Timestamp::from_second(1_000).expect("ts");
        let open = zc(
            AuthType::PrivateOAuth,
            vec![("Authorized", "False", "Nobody has authorized", 900)],
            Some("u"),
        );
        assert_eq!(progress(&open, started), Progress::Open("u".into()));
        let done = zc(
            AuthType::PrivateOAuth,
            vec![("Authorized", "True", "Authorized by a@b", 1_010)],
            Some("u"),
        );
        assert_eq!(
            progress(&done, started),
            Progress::Done("Authorized by a@b".into())
        );
        let old_failure = zc(
            AuthType::PrivateOAuth,
            vec![(
                "Authorized",
                "False",
                "The last authorization attempt failed: x",
                900,
            )],
            Some("u"),
        );
        assert_eq!(
            progress(&old_failure, started),
            Progress::Open("u".into()),
            "failures from before we started do not count"
        );
        let new_failure = zc(
            AuthType::PrivateOAuth,
            vec![(
                "Authorized",
                "False",
                "The last authorization attempt failed: x",
                1_001,
            )],
            Some("u"),
        );
        assert!(matches!(
            progress(&new_failure, started),
            Progress::Failed(_)
        ));
        let bad_creds = zc(
            AuthType::PrivateOAuth,
            vec![(
                "CredentialsReady",
                "False",
                "Secret a/b has no key clientSecret",
                900,
            )],
            None,
        );
        assert!(
            matches!(progress(&bad_creds, started), Progress::Failed(m) if m.contains("clientSecret"))
        );
        let s2s = zc(AuthType::ServerToServer, vec![], None);
        assert!(matches!(progress(&s2s, started), Progress::Failed(_)));
        let waiting = zc(AuthType::PrivateOAuth, vec![], None);
        assert!(matches!(progress(&waiting, started), Progress::Waiting(_)));
    }
}
