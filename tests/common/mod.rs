//! Shared harness for integration tests: a real local control plane (one per test binary),
//! a namespace per test, the operator binary and zoom-sim as child processes.
//!
//! Tests that need the control plane fail loudly when it cannot start: they never skip.

#![allow(dead_code)]

pub mod builders;
pub mod env;
pub mod lease;
pub mod objects;
pub mod sink;
pub mod web;
pub mod webhook;

// Each test binary uses its own subset of these.
#[allow(unused_imports)]
pub use builders::{SecretData, Zc, ZoomApp};
#[allow(unused_imports)]
pub use env::{kubeconfig, strs, zoom_flags, Env, EnvBuilder};
#[allow(unused_imports)]
pub use objects::*;
#[allow(unused_imports)]
pub use web::{eventually, http, location, now_secs};
#[allow(unused_imports)]
pub use webhook::{event_body, post_signed, post_until, try_post_signed, Answer};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use zoom_operator::api::ZoomConnection;

pub use testenv::ControlPlane;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();

/// The control plane for this test binary, started on first use (testenv; a watchdog stops it
/// when this process ends, since a static is never dropped). Panics with testenv's own
/// explanation when it cannot start.
pub fn control_plane() -> &'static ControlPlane {
    CONTROL_PLANE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("zoom-operator-cp-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let cp = ControlPlane::start_watching(&dir, std::process::id()).unwrap_or_else(|e| {
            panic!(
                "the local control plane could not start: {e}\nIntegration tests need it: run `bash hack/build-kubernetes.sh` first."
            )
        });
        install_crd(&cp);
        cp
    })
}

fn install_crd(cp: &ControlPlane) {
    let status = Command::new("kubectl")
        .env("KUBECONFIG", &cp.kubeconfig)
        .args(["apply", "--server-side", "-f"])
        .arg(repo_root().join("crds/zoomconnections.zoom-operator.io.yaml"))
        .stdout(Stdio::null())
        .status()
        .expect("kubectl");
    assert!(status.success(), "kubectl apply of the CRD failed");
    let status = Command::new("kubectl")
        .env("KUBECONFIG", &cp.kubeconfig)
        .args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/zoomconnections.zoom-operator.io",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("kubectl");
    assert!(status.success(), "the CRD did not become established");
}

pub async fn client() -> Client {
    let cp = control_plane();
    let kubeconfig = Kubeconfig::read_from(&cp.kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

/// A fresh namespace for one test, so tests run in parallel without seeing each other.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{:08x}", rand::random::<u32>());
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .expect("create namespace");
    name
}

pub async fn put_secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    data.iter()
        .fold(SecretData::new(name), |secret, (k, v)| secret.key(k, v))
        .put(client, ns)
        .await;
}

pub async fn delete_secret(client: &Client, ns: &str, name: &str) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let _ = api.delete(name, &DeleteParams::default()).await;
}

pub async fn apply_zc(client: &Client, ns: &str, yaml: &str) -> ZoomConnection {
    let value: serde_json::Value = serde_yaml::from_str(yaml).expect("yaml");
    let name = value["metadata"]["name"].as_str().expect("name").to_owned();
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), ns);
    api.patch(
        &name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&value),
    )
    .await
    .expect("apply ZoomConnection")
}

/// Waits until `name` no longer exists (deleted, finalizers done, or garbage-collected).
pub async fn wait_deleted<K>(api: &Api<K>, name: &str, what: &str, timeout: Duration)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(what, timeout, || {
        let api = api.clone();
        async move {
            match api.get_opt(name).await {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err("still present".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
}

/// Waits for a condition on a connection to have `status` and `reason`.
pub async fn wait_condition(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> ZoomConnection {
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), ns);
    eventually(
        &format!("{ns}/{name} {type_}={status}/{reason}"),
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let zc = api.get(name).await.map_err(|e| e.to_string())?;
                match zc.condition(type_) {
                    Some(c) if c.status == status && c.reason == reason => Ok(zc),
                    Some(c) => Err(format!("{}/{}: {}", c.status, c.reason, c.message)),
                    None => Err(format!("no {type_} condition; status: {:?}", zc.status)),
                }
            }
        },
    )
    .await
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process killed (and its output kept) when the test ends.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
    pub name: String,
}

impl Process {
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait: how Kubernetes stops a pod.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}) ----\n{}",
                self.name,
                self.log.display(),
                self.logs()
            );
        }
    }
}

pub struct Operator {
    pub process: Process,
    pub public_url: String,
    pub listen: String,
    pub metrics: String,
}

/// Starts `zoom-operator run` watching `ns` only, with its lease and signing key in `ns`.
/// Without `--public-url`/`--ingress` in `extra`, its public URL is its own listener, so the
/// URLs in status are reachable from the test.
pub fn start_operator(ns: &str, extra: &[&str]) -> Operator {
    let watch = format!("--watch-namespace={ns}");
    let lease = format!("--lease-namespace={ns}");
    let args: Vec<&str> = [watch.as_str(), lease.as_str()]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    start_operator_with_args(ns, &args)
}

/// Starts `zoom-operator run` with `args` as given: only the listeners (and, without
/// `--public-url`/`--ingress`, the public URL) are added, so the test chooses the watched
/// namespaces and the lease namespace itself. `label` names its log file.
pub fn start_operator_with_args(label: &str, args: &[&str]) -> Operator {
    start_operator_with_kubeconfig(label, args, &control_plane().kubeconfig)
}

/// Like `start_operator_with_args`, reaching the API server through `kubeconfig` (a test's
/// own proxy in front of it, say).
pub fn start_operator_with_kubeconfig(label: &str, args: &[&str], kubeconfig: &Path) -> Operator {
    let cp = control_plane();
    let port = free_port();
    let metrics_port = free_port();
    let log = cp.dir.join(format!("operator-{label}-{port}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zoom-operator"));
    cmd.arg("run")
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--metrics-listen=127.0.0.1:{metrics_port}"))
        .args(args)
        .args(
            (!args
                .iter()
                .any(|a| a.starts_with("--public-url") || a.starts_with("--ingress")))
            .then(|| format!("--public-url=http://127.0.0.1:{port}")),
        )
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info,zoom_operator=debug")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file);
    let child = cmd.spawn().expect("spawn zoom-operator");
    Operator {
        process: Process {
            child,
            log,
            name: format!("zoom-operator ({label})"),
        },
        public_url: format!("http://127.0.0.1:{port}"),
        listen: format!("127.0.0.1:{port}"),
        metrics: format!("http://127.0.0.1:{metrics_port}"),
    }
}

pub fn zoom_sim_binary() -> PathBuf {
    // Integration tests live in target/<profile>/deps; the workspace's binaries one level up.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("zoom-sim");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        bin.display()
    );
    bin
}

pub struct ZoomSim {
    pub process: Process,
    pub url: String,
}

/// Starts `zoom-sim serve` on a free port with the given extra arguments.
pub fn start_zoom_sim(args: &[&str]) -> ZoomSim {
    let cp = control_plane();
    let mut child = Command::new(zoom_sim_binary())
        .arg("serve")
        .arg("--listen=127.0.0.1:0")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zoom-sim");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read zoom-sim banner");
    let url = line
        .trim()
        .strip_prefix("zoom-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected zoom-sim banner {line:?}"))
        .to_owned();
    let log = cp.dir.join(format!("zoom-sim-{}.log", child.id()));
    if let Some(mut stderr) = child.stderr.take() {
        let log = log.clone();
        std::thread::spawn(move || {
            if let Ok(mut f) = std::fs::File::create(log) {
                let _ = std::io::copy(&mut stderr, &mut f);
            }
        });
    }
    ZoomSim {
        process: Process {
            child,
            log,
            name: "zoom-sim".to_owned(),
        },
        url,
    }
}

/// The browser flow for connection `name`: the start URL from its status, Zoom's consent
/// (zoom-sim with `--consent=approve`), the callback; then waits for Ready=True.
pub async fn browser_authorize(client: &Client, ns: &str, name: &str) {
    let zc = wait_condition(
        client,
        ns,
        name,
        "Authorized",
        "False",
        "AwaitingAuthorization",
    )
    .await;
    browser_flow(client, zc).await;
}

/// The Zoom user's browser: start the OAuth flow at `zc`'s "Start OAuth Flow" link, consent
/// at zoom-sim, follow the redirect back to the callback, and wait until `zc` is Ready.
pub async fn browser_flow(client: &Client, zc: ZoomConnection) {
    let ns = zc.metadata.namespace.clone().expect("namespace");
    let name = zc.metadata.name.clone().expect("name");
    let start = zc
        .status
        .and_then(|s| s.authorize_url)
        .expect("authorizeURL");
    web::authorize_in_browser(&start).await;
    wait_condition(client, &ns, &name, "Ready", "True", "Ready").await;
}
