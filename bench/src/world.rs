//! A benchmark's world: its own control plane (with an audit log, so the operator's API
//! requests can be counted by user agent), zoom-sim, and zoom-operator processes, all release
//! builds, all stopped when the world is dropped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::{json, Value};

use zoom_operator::api::ZoomConnection;

/// The namespace the operator watches.
pub const NS: &str = "bench";
/// How many requests the bench itself sends at once when it creates objects.
const CREATE_CONCURRENCY: usize = 16;

pub struct World {
    pub dir: PathBuf,
    pub client: Client,
    pub http: reqwest::Client,
    /// Kept for its lifetime: zoom-sim stops when the world is dropped.
    _sim: Process,
    pub sim_url: String,
    bin: PathBuf,
    _control_plane: testenv::ControlPlane,
    kubeconfig: PathBuf,
    /// The operator's listen and metrics ports, the same for every operator this world starts:
    /// its public URL is part of each connection's status, and a restart must not change it.
    ports: (u16, u16),
}

/// A child process, killed when dropped.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the process to stop (SIGTERM) and waits for it.
    pub fn terminate(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .arg(self.pid().to_string())
            .status()
            .context("kill")?;
        let _ = self.child.wait();
        Ok(())
    }
}

/// A running operator and where it listens.
pub struct Operator {
    pub process: Process,
    pub public: String,
    pub metrics: String,
    pub started: jiff::Timestamp,
}

impl World {
    /// A fresh world with zoom-sim started with `sim_args`.
    pub async fn start(sim_args: &[String]) -> anyhow::Result<World> {
        let dir = std::env::temp_dir().join(format!("zoom-operator-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // The operator's API requests are counted from the API server's audit log.
        std::env::set_var("ZOOM_CONTROL_PLANE_AUDIT", "1");
        let cp = testenv::ControlPlane::start_watching(&dir.join("cluster"), std::process::id())?;
        let kubeconfig = cp.kubeconfig.clone();
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig)?,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        let client = Client::try_from(config)?;
        let bin = binaries()?;
        kubectl(
            &kubeconfig,
            &[
                "apply",
                "--server-side",
                "-f",
                &format!(
                    "{}/../crds/zoomconnections.zoom-operator.io.yaml",
                    env!("CARGO_MANIFEST_DIR")
                ),
            ],
        )?;
        kubectl(
            &kubeconfig,
            &[
                "wait",
                "--for=condition=Established",
                "crd/zoomconnections.zoom-operator.io",
            ],
        )?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in [NS, "baseline", "baseline-events"] {
            let object: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
            namespaces.create(&PostParams::default(), &object).await?;
        }
        let (sim, sim_url) = start_sim(&bin, &dir, sim_args)?;
        Ok(World {
            dir,
            client,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()?,
            _sim: sim,
            sim_url,
            bin,
            _control_plane: cp,
            kubeconfig,
            ports: (free_port()?, free_port()?),
        })
    }

    /// Starts `zoom-operator run` watching [`NS`], its Zoom at zoom-sim.
    pub async fn operator(&self, extra: &[&str]) -> anyhow::Result<Operator> {
        let (public, metrics) = self.ports;
        let log = self.dir.join(format!(
            "operator-{}.log",
            jiff::Timestamp::now().as_millisecond()
        ));
        let started = jiff::Timestamp::now();
        let child = Command::new(self.bin.join("zoom-operator"))
            .arg("run")
            .arg(format!("--listen=127.0.0.1:{public}"))
            .arg(format!("--metrics-listen=127.0.0.1:{metrics}"))
            .arg(format!("--public-url=http://127.0.0.1:{public}"))
            .arg(format!("--zoom-oauth-url={}", self.sim_url))
            .arg(format!("--zoom-api-url={}", self.sim_url))
            .arg(format!("--watch-namespace={NS}"))
            .arg(format!("--lease-namespace={NS}"))
            .arg("--leader-election=false")
            .args(extra)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(log.with_extension("err"))?)
            .spawn()
            .context("start zoom-operator")?;
        let operator = Operator {
            process: Process { child, log },
            public: format!("http://127.0.0.1:{public}"),
            metrics: format!("http://127.0.0.1:{metrics}"),
            started,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .http
            .get(format!("{}/healthz", operator.metrics))
            .send()
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!(
                    "the operator did not come up; see {}",
                    operator.process.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(operator)
    }

    /// zoom-sim's `/sim/stats` counter `name`.
    pub async fn sim_stat(&self, name: &str) -> anyhow::Result<u64> {
        let stats: Value = self
            .http
            .get(format!("{}/sim/stats", self.sim_url))
            .send()
            .await?
            .json()
            .await?;
        Ok(stats[name].as_u64().unwrap_or(0))
    }

    pub async fn sim_post(&self, path: &str, body: Value) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}{path}", self.sim_url))
            .json(&body)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("zoom-sim {path}: {}", response.text().await?);
        }
        Ok(())
    }

    /// Creates `objects` in `namespace`, [`CREATE_CONCURRENCY`] at a time.
    pub async fn create_all<K>(&self, namespace: &str, objects: Vec<K>) -> anyhow::Result<()>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        stream::iter(objects)
            .map(|o| {
                let api = api.clone();
                async move { api.create(&PostParams::default(), &o).await }
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// The operator's requests to the API server since `since`, by "VERB resource".
    pub fn operator_requests(&self, since: jiff::Timestamp) -> anyhow::Result<Requests> {
        // The audit log is written in batches of up to a second.
        std::thread::sleep(Duration::from_millis(1500));
        let path = self.dir.join("cluster").join("audit.log");
        let file = std::fs::File::open(&path).with_context(|| path.display().to_string())?;
        let mut counts = BTreeMap::new();
        for line in BufReader::new(file).lines() {
            let Ok(entry) = serde_json::from_str::<Value>(&line?) else {
                continue;
            };
            let agent = entry["userAgent"].as_str().unwrap_or_default();
            let at: Option<jiff::Timestamp> = entry["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| t.parse().ok());
            if !agent.starts_with("zoom-operator/") || at.is_none_or(|at| at < since) {
                continue;
            }
            let object = &entry["objectRef"];
            let mut resource = object["resource"].as_str().unwrap_or("?").to_owned();
            if let Some(sub) = object["subresource"].as_str() {
                resource = format!("{resource}/{sub}");
            }
            let verb = entry["verb"].as_str().unwrap_or("?");
            let code = entry["responseStatus"]["code"].as_u64().unwrap_or(0);
            let key = if code == 404 {
                format!("{verb} {resource} (404)")
            } else {
                format!("{verb} {resource}")
            };
            *counts.entry(key).or_insert(0u64) += 1;
        }
        Ok(Requests(counts))
    }

    /// CPU time (user and system) each process of this world has used so far: the control
    /// plane's, zoom-sim's and, when given, the operator's.
    pub fn cpu(&self, operator: Option<&Operator>) -> Cpu {
        let pids =
            std::fs::read_to_string(self.dir.join("cluster").join("pids")).unwrap_or_default();
        let mut seconds: BTreeMap<String, f64> = pids
            .lines()
            .filter_map(testenv::ProcessRecord::parse)
            .filter(|r| r.name != "watchdog")
            .filter_map(|r| Some((r.name.clone(), cpu_seconds(r.pid)?)))
            .collect();
        seconds.extend(cpu_seconds(self._sim.pid()).map(|s| ("zoom-sim".to_owned(), s)));
        if let Some(op) = operator {
            seconds.extend(cpu_seconds(op.process.pid()).map(|s| ("zoom-operator".to_owned(), s)));
        }
        Cpu(seconds)
    }

    /// Kubernetes Events in [`NS`].
    pub async fn events(&self) -> anyhow::Result<usize> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), NS);
        Ok(api.list(&Default::default()).await?.items.len())
    }
}

/// Requests by "VERB resource".
pub struct Requests(pub BTreeMap<String, u64>);

impl Requests {
    /// Requests that are not the long-running list and watch of a cache.
    pub fn work(&self) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| !k.starts_with("watch ") && !k.starts_with("list "))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn count(&self, prefix: &str) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn breakdown(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Operator {
    /// `/metrics` text.
    pub async fn metrics(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        Ok(http
            .get(format!("{}/metrics", self.metrics))
            .send()
            .await?
            .text()
            .await?)
    }

    /// Connections whose `zoom_operator_connection_ready` is 1.
    pub async fn ready(&self, http: &reqwest::Client) -> anyhow::Result<usize> {
        Ok(self
            .metrics(http)
            .await?
            .lines()
            .filter(|l| l.starts_with("zoom_operator_connection_ready{") && l.ends_with(" 1"))
            .count())
    }

    /// Reconciles counted so far (any result).
    pub async fn reconciles(&self, http: &reqwest::Client) -> anyhow::Result<u64> {
        Ok(self
            .metrics(http)
            .await?
            .lines()
            .filter(|l| l.starts_with("zoom_operator_reconciliations_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }

    /// Waits until `n` connections are Ready; the time it took since the operator started.
    pub async fn wait_ready(
        &self,
        http: &reqwest::Client,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = self.ready(http).await.unwrap_or(0);
            if ready >= n {
                let elapsed = jiff::Timestamp::now().duration_since(self.started);
                return Ok(Duration::try_from(elapsed).unwrap_or_default());
            }
            if Instant::now() > deadline {
                bail!(
                    "only {ready} of {n} connections Ready after {timeout:?}; see {}",
                    self.process.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Resident and peak memory (MiB).
    pub fn memory(&self) -> (f64, f64) {
        let status = self.status();
        (mib(&status, "VmRSS:"), mib(&status, "VmHWM:"))
    }

    /// The resident size split into the heap and stacks (`RssAnon`) and the mapped binary and
    /// libraries (`RssFile`), MiB.
    pub fn memory_split(&self) -> (f64, f64) {
        let status = self.status();
        (mib(&status, "RssAnon:"), mib(&status, "RssFile:"))
    }

    fn status(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/status", self.process.pid())).unwrap_or_default()
    }

    /// The socket inodes the process has open now.
    pub fn sockets(&self) -> Vec<u64> {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", self.process.pid())) else {
            return Vec::new();
        };
        fds.filter_map(|fd| {
            let target = std::fs::read_link(fd.ok()?.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
    }
}

/// CPU seconds by process name, at one moment.
#[derive(Clone, Debug, Default)]
pub struct Cpu(BTreeMap<String, f64>);

impl Cpu {
    /// What each process used between `before` and this moment, in milliseconds per `per`
    /// (a connection, say): `kube-apiserver 1.20, etcd 0.31, ...`.
    pub fn since(&self, before: &Cpu, per: usize) -> String {
        self.0
            .iter()
            .map(|(name, now)| {
                let used = now - before.0.get(name).copied().unwrap_or(0.0);
                format!("{name} {:.2}", used * 1000.0 / per.max(1) as f64)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// User plus system time of process `pid` (fields 14 and 15 of /proc/PID/stat, in the
/// kernel's USER_HZ of 100 ticks a second).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Where the release binaries are: next to this one (hack/bench.sh builds them all).
fn binaries() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .context("bench binary directory")?
        .to_path_buf();
    for name in ["zoom-operator", "zoom-sim"] {
        if !dir.join(name).exists() {
            bail!(
                "{name} is not built next to {}: run hack/bench.sh",
                exe.display()
            );
        }
    }
    Ok(dir)
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .context("kubectl")?;
    if !out.status.success() {
        bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn start_sim(bin: &Path, dir: &Path, args: &[String]) -> anyhow::Result<(Process, String)> {
    let log = dir.join("zoom-sim.log");
    let mut child = Command::new(bin.join("zoom-sim"))
        .arg("serve")
        .arg("--listen=127.0.0.1:0")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("start zoom-sim")?;
    let stdout = child.stdout.take().context("zoom-sim stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("zoom-sim listening on ")
        .with_context(|| format!("zoom-sim said {line:?}; see {}", log.display()))?
        .to_owned();
    Ok((Process { child, log }, url))
}

/// A credentials Secret.
pub fn credentials(name: &str, data: &[(&str, &str)]) -> Secret {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).expect("secret")
}

/// A ZoomConnection of `auth_type` using Secret `secret`.
pub fn connection(name: &str, auth_type: &str, secret: &str) -> ZoomConnection {
    serde_json::from_value(json!({
        "apiVersion": "zoom-operator.io/v1alpha1",
        "kind": "ZoomConnection",
        "metadata": {"name": name},
        "spec": {"authType": auth_type, "credentialsRef": {"name": secret}},
    }))
    .expect("connection")
}

/// A `/proc/PID/status` field given in kB, as MiB (0 when missing).
fn mib(status: &str, name: &str) -> f64 {
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}
