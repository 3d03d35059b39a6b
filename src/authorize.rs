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
    if let Some(c) = zc.condition(CREDENTIALS_READY).filter(|c| c.status == "False") {
        return Progress::Failed(c.message.clone());
    }
    if let Some(c) = zc.condition(AUTHORIZED) {
        if c.status == "True" && c.last_transition_time.0 >= started_at.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap_or(started_at) {
            return Progress::Done(c.message.clone());
        }
        if c.status == "True" && status.and_then(|s| s.authorize_url.as_ref()).is_none() {
            return Progress::Done(c.message.clone());
        }
        if c.status == "False"
            && c.message.starts_with("The last authorization attempt failed")
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
                .unwrap_or_else(|| "waiting for the operator to publish the authorize URL".to_owned()),
        ),
    }
}

pub async fn authorize(namespace: &str, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let api: Api<ZoomConnection> = Api::namespaced(client, namespace);
    let started = jiff::Timestamp::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut printed = None::<String>;
    let mut already_authorized_noted = false;
    loop {
        let zc = api
            .get_opt(name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("ZoomConnection {namespace}/{name} not found"))?;
        if !already_authorized_noted {
            already_authorized_noted = true;
            if zc.condition(AUTHORIZED).is_some_and(|c| c.status == "True") {
                eprintln!("{namespace}/{name} is already authorized; open the URL below to authorize again.");
            }
        }
        match progress(&zc, started) {
            Progress::Done(message) => {
                eprintln!("{namespace}/{name}: {message}");
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
