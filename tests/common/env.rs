//! A test's world, started once: a fresh namespace, zoom-sim with the apps the test names (and
//! their credentials Secrets), and the operator pointed at that zoom-sim. The Zoom URL flags
//! are built here and nowhere else.

use std::path::PathBuf;
use std::time::Duration;

use kube::Client;
use reqwest::StatusCode;
use serde_json::Value;
use zoom_operator::api::ZoomConnection;

use super::builders::{Zc, ZoomApp};
use super::objects::{Connections, Zcs};
use super::web::{eventually, http};
use super::{
    browser_authorize, client, control_plane, namespace, start_operator,
    start_operator_with_kubeconfig, start_zoom_sim, Operator, ZoomSim,
};

/// `--zoom-oauth-url` and `--zoom-api-url`, both at `url` (zoom-sim serves both).
pub fn zoom_flags(url: &str) -> Vec<String> {
    vec![
        format!("--zoom-oauth-url={url}"),
        format!("--zoom-api-url={url}"),
    ]
}

/// `&[String]` as the `&[&str]` the process starters take.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

pub struct Env {
    pub client: Client,
    pub ns: String,
    pub sim: ZoomSim,
    pub op: Operator,
}

/// What `Env::new(prefix)...start()` sets up, in this order: the namespace, zoom-sim, the
/// credentials Secrets, the connections, the operator.
pub struct EnvBuilder {
    prefix: String,
    sim_args: Vec<String>,
    secrets: Vec<(String, ZoomApp)>,
    connections: Vec<Zc>,
    op_args: Vec<String>,
    kubeconfig: Option<PathBuf>,
}

impl Env {
    #[allow(clippy::new_ret_no_self)]
    pub fn new(prefix: &str) -> EnvBuilder {
        EnvBuilder {
            prefix: prefix.to_owned(),
            sim_args: Vec::new(),
            secrets: Vec::new(),
            connections: Vec::new(),
            op_args: Vec::new(),
            kubeconfig: None,
        }
    }

    /// Another replica on the same namespace and zoom-sim, advertising the first one's public
    /// URL, as replicas behind one Ingress do.
    pub fn replica(&self, extra: &[&str]) -> Operator {
        let public = format!("--public-url={}", self.op.public_url);
        let mut args = vec![public.as_str()];
        args.extend_from_slice(extra);
        self.sim.operator(&self.ns, &args)
    }

    pub async fn apply(&self, zc: &Zc) -> ZoomConnection {
        zc.apply(&self.client, &self.ns).await
    }

    /// The browser flow for `name` once it awaits authorization; waits for Ready.
    pub async fn authorize(&self, name: &str) {
        browser_authorize(&self.client, &self.ns, name).await;
    }
}

impl Connections for Env {
    fn zcs(&self) -> Zcs<'_> {
        Zcs::new(&self.client, &self.ns)
    }
}

impl EnvBuilder {
    /// Arguments of `zoom-sim serve`.
    pub fn sim(mut self, args: &[&str]) -> EnvBuilder {
        self.sim_args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// An app at zoom-sim, and its credentials Secret `zoom-app`.
    pub fn app(self, app: ZoomApp) -> EnvBuilder {
        self.app_in("zoom-app", app)
    }

    /// An app at zoom-sim, and its credentials Secret `secret`.
    pub fn app_in(mut self, secret: &str, app: ZoomApp) -> EnvBuilder {
        self.sim_args.push(app.sim_flag());
        self.secrets.push((secret.to_owned(), app));
        self
    }

    /// Only the credentials Secret `secret` of `app`, for an app zoom-sim learns of later.
    pub fn credentials(mut self, secret: &str, app: ZoomApp) -> EnvBuilder {
        self.secrets.push((secret.to_owned(), app));
        self
    }

    /// A connection applied before the operator starts.
    pub fn connection(mut self, zc: Zc) -> EnvBuilder {
        self.connections.push(zc);
        self
    }

    /// Arguments of `zoom-operator run`, besides the namespace and Zoom URL flags.
    pub fn operator(mut self, args: &[&str]) -> EnvBuilder {
        self.op_args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// The operator reaches the API server through `kubeconfig` (a test's proxy, say).
    pub fn kubeconfig(mut self, kubeconfig: PathBuf) -> EnvBuilder {
        self.kubeconfig = Some(kubeconfig);
        self
    }

    pub async fn start(self) -> Env {
        let client = client().await;
        let ns = namespace(&client, &self.prefix).await;
        let sim = start_zoom_sim(&strs(&self.sim_args));
        for (name, app) in &self.secrets {
            app.secret(name).put(&client, &ns).await;
        }
        for zc in &self.connections {
            zc.apply(&client, &ns).await;
        }
        let op_args = strs(&self.op_args);
        let op = match &self.kubeconfig {
            None => sim.operator(&ns, &op_args),
            Some(kubeconfig) => {
                let watch = format!("--watch-namespace={ns}");
                let lease = format!("--lease-namespace={ns}");
                let zoom = sim.zoom_flags();
                let mut args = vec![watch.as_str(), lease.as_str()];
                args.extend(strs(&zoom));
                args.extend(op_args);
                start_operator_with_kubeconfig(&ns, &args, kubeconfig)
            }
        };
        Env {
            client,
            ns,
            sim,
            op,
        }
    }
}

impl ZoomSim {
    pub fn zoom_flags(&self) -> Vec<String> {
        zoom_flags(&self.url)
    }

    /// `zoom-operator run` watching `ns`, its Zoom at this zoom-sim.
    pub fn operator(&self, ns: &str, extra: &[&str]) -> Operator {
        let zoom = self.zoom_flags();
        let mut args = strs(&zoom);
        args.extend_from_slice(extra);
        start_operator(ns, &args)
    }

    /// `/sim/stats`.
    pub async fn stats(&self) -> Value {
        http()
            .get(format!("{}/sim/stats", self.url))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("json")
    }

    /// One counter of `/sim/stats`, 0 when absent.
    pub async fn stat(&self, name: &str) -> u64 {
        self.stats().await[name].as_u64().unwrap_or(0)
    }

    /// Asserts that zoom-sim counted no refresh token sent twice; returns the stats.
    pub async fn assert_no_reuse(&self) -> Value {
        let s = self.stats().await;
        assert_eq!(
            s["reused_refresh_tokens"], 0,
            "a refresh token was sent twice: {s}"
        );
        s
    }

    /// Waits until zoom-sim has counted `n` refreshes, asserting on the way that none reused a
    /// refresh token.
    pub async fn wait_refreshes(&self, what: &str, n: u64, within: Duration) {
        eventually(what, within, || async move {
            let s = self.assert_no_reuse().await;
            match s["refreshes"].as_u64() {
                Some(got) if got >= n => Ok(()),
                other => Err(format!("refreshes {other:?}")),
            }
        })
        .await
    }

    /// POSTs `body` to a zoom-sim admin `path`, which must succeed; its JSON answer (or null).
    pub async fn admin(&self, path: &str, body: Value) -> Value {
        let r = http()
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("zoom-sim admin");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or_default()
    }

    /// Queues a fault (`POST /sim/faults`).
    pub async fn fault(&self, spec: Value) {
        let r = http()
            .post(format!("{}/sim/faults", self.url))
            .json(&spec)
            .send()
            .await
            .expect("fault");
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap_or_default()
        );
    }
}

impl Operator {
    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        eventually("operator /readyz", Duration::from_secs(60), || async {
            match reqwest::get(format!("{}/readyz", self.metrics)).await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
    }

    /// The text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        http()
            .get(format!("{}/metrics", self.metrics))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default()
    }

    /// The sum of the samples whose line starts with `prefix` (a name, or a name and `{`).
    pub async fn metric(&self, prefix: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        self.process.child.kill().expect("SIGKILL the replica");
        let _ = self.process.child.wait();
    }
}

/// The control plane's kubeconfig, for `kubectl` and `zoom-operator authorize`.
pub fn kubeconfig() -> PathBuf {
    control_plane().kubeconfig.clone()
}
