//! A real, throwaway Kubernetes v1.20.2 control plane on loopback (etcd, kube-apiserver,
//! kube-controller-manager; no nodes, no scheduler) for zoom-operator's integration tests,
//! `hack/run-local.sh` and `hack/bench-memory.sh`. hack/build-kubernetes.sh builds and caches
//! the binaries; this crate runs them: ports, keys, health waits, the kubeconfig, the stop order.
//!
//! Everything lives under the directory given to `start`: etcd data, pki/, tokens.csv,
//! kubeconfig, ports, pids ("NAME PID STARTTIME" a line) and one log per component. Clients
//! authenticate with a static token in group system:masters (the kubeconfig skips TLS
//! verification). kube-controller-manager runs only the garbagecollector, namespace,
//! serviceaccount and serviceaccount-token controllers; the ServiceAccount admission plugin is
//! off, so pods can be created right after their namespace.
//!
//! Environment: ZOOM_OPERATOR_CACHE (the build cache root, default /var/cache/zoom-operator),
//! ZOOM_CONTROL_PLANE_TIMEOUT (seconds per readiness wait, default 120). Linux only (/proc).

mod processes;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use processes::{log, Record};

const K8S_VERSION: &str = "1.20.2";
const ETCD: &str = "/usr/bin/etcd";
const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../hack/build-kubernetes.sh");
const WATCHDOG: &str = env!("TESTENV_WATCHDOG");
/// Controllers we run: enough for owner-reference garbage collection, namespace deletion and
/// default service accounts (and their token Secrets).
const KCM_CONTROLLERS: &str = "garbagecollector,namespace,serviceaccount,serviceaccount-token";
/// Tries per component when another process takes a port between our check and its bind.
const PORT_ATTEMPTS: usize = 3;

/// A running control plane. Dropping it stops it, unless `keep_running` let it go.
#[derive(Debug)]
pub struct ControlPlane {
    /// Where its state and logs are (absolute).
    pub dir: PathBuf,
    /// DIR/kubeconfig: cluster-admin, by static token.
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`, the API server.
    pub api_url: String,
    pub ports: Ports,
    /// Reaped after a stop, so no zombies stay behind in a long-running caller.
    children: Vec<Child>,
    stop_on_drop: bool,
}

/// The loopback ports the components listen on (also in DIR/ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub etcd: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the Kubernetes binaries are not built, and `bash hack/build-kubernetes.sh` could not \
         build them ({0}); see its messages above"
    )]
    Build(String),
    #[error("--watch-pid {0}: no such process")]
    NoSuchProcess(u32),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{problem}\n---- last lines of {log} ----\n{tail}---- end of {log} ----", log = .log.display())]
    Component {
        problem: String,
        log: PathBuf,
        tail: String,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

impl ControlPlane {
    /// Starts a fresh control plane under `dir`, replacing any already there, building the
    /// binaries first if they are not cached. Stopped when the value is dropped.
    pub fn start(dir: &Path) -> Result<ControlPlane, Error> {
        start(dir, None)
    }

    /// Like `start`, and a detached watchdog stops the control plane once process `pid` is
    /// gone, however it ended (killed included). For control planes kept in a static, which
    /// is never dropped, and for shells (`--watch-pid $$`).
    pub fn start_watching(dir: &Path, pid: u32) -> Result<ControlPlane, Error> {
        let starttime = processes::starttime(pid).ok_or(Error::NoSuchProcess(pid))?;
        start(dir, Some((pid, starttime)))
    }

    /// Leaves the control plane running after this value is gone, for `stop(dir)` or the
    /// watchdog to end.
    pub fn keep_running(mut self) {
        self.stop_on_drop = false;
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if !self.stop_on_drop {
            return;
        }
        let _ = processes::stop_dir(&self.dir, false);
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}

/// Stops the control plane in `dir` (what its pids file lists), in order. Idempotent; a
/// directory that does not exist has nothing to stop.
pub fn stop(dir: &Path) -> io::Result<()> {
    match dir.canonicalize() {
        Ok(dir) => processes::stop_dir(&dir, false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn start(dir: &Path, watch: Option<(u32, u64)>) -> Result<ControlPlane, Error> {
    let t0 = Instant::now();
    ensure_binaries()?;
    fs::create_dir_all(dir).map_err(io_error(format!("create {}", dir.display())))?;
    let dir = dir
        .canonicalize()
        .map_err(io_error(format!("resolve {}", dir.display())))?;
    // A previous control plane in DIR is replaced, never reused.
    processes::stop_dir(&dir, false).map_err(io_error("stop the previous control plane"))?;
    for stale in [
        "pki",
        "etcd",
        "kubeconfig",
        "tokens.csv",
        "ports",
        "etcd.log",
        "kube-apiserver.log",
        "kube-controller-manager.log",
        "watchdog.log",
    ] {
        let path = dir.join(stale);
        let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
    }
    fs::create_dir(dir.join("pki")).map_err(io_error("create pki/"))?;
    File::create(dir.join("pids")).map_err(io_error("create pids"))?;

    let mut cp = ControlPlane {
        kubeconfig: dir.join("kubeconfig"),
        dir,
        api_url: String::new(),
        ports: Ports {
            etcd: 0,
            apiserver: 0,
            controller_manager: 0,
        },
        children: Vec::new(),
        stop_on_drop: true,
    };
    // The watchdog comes first, so a caller killed while we wait leaves nothing behind either.
    let started = match watch {
        Some((pid, starttime)) => start_watchdog(&mut cp, pid, starttime),
        None => Ok(()),
    };
    if let Err(e) = started.and_then(|()| bring_up(&mut cp, t0)) {
        // No half control plane stays (dropping `cp` would say so on stderr).
        let _ = processes::stop_dir(&cp.dir, true);
        return Err(e);
    }
    log(&format!(
        "control plane ready in {:.3}s; logs and state in {}",
        t0.elapsed().as_secs_f64(),
        cp.dir.display()
    ));
    Ok(cp)
}

/// The components in order, each on fresh random ports (a port lost to another process
/// between our check and the component's bind means new ports, a few times).
fn bring_up(cp: &mut ControlPlane, t0: Instant) -> Result<(), Error> {
    let since = || format!("{:.3}s", t0.elapsed().as_secs_f64());
    let token = token()?;
    write_private(
        &cp.dir.join("tokens.csv"),
        &format!("{token},zoom-admin,zoom-admin,system:masters\n"),
    )?;
    // Keys and the serving certificate (shared by the apiserver and the controller manager;
    // clients skip verification) are made while etcd starts.
    let keygen = {
        let pki = cp.dir.join("pki");
        std::thread::spawn(move || generate_keys(&pki))
    };
    let mut ports = PortPicker::default();

    let etcd = start_etcd(cp, &mut ports)?;
    log(&format!("etcd up on 127.0.0.1:{etcd} after {}", since()));

    let openssl_log = cp.dir.join("pki/openssl.log");
    match keygen.join() {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) | Err(_) => {
            return Err(component_error("generating keys failed", &openssl_log));
        }
        Ok(Err(e)) => return Err(e),
    }

    let apiserver = start_apiserver(cp, &mut ports, etcd, &token)?;
    cp.api_url = format!("https://127.0.0.1:{apiserver}");
    log(&format!(
        "kube-apiserver ready on {} after {}",
        cp.api_url,
        since()
    ));
    let staged = cp.dir.join("kubeconfig.tmp");
    write_private(&staged, &kubeconfig(&cp.api_url, &token))?;
    fs::rename(&staged, &cp.kubeconfig).map_err(io_error("write kubeconfig"))?;

    let controller_manager = start_controller_manager(cp, &mut ports)?;
    log(&format!(
        "kube-controller-manager healthy on 127.0.0.1:{controller_manager} after {}",
        since()
    ));

    cp.ports = Ports {
        etcd,
        apiserver,
        controller_manager,
    };
    fs::write(
        cp.dir.join("ports"),
        format!(
            "etcd={etcd}\nkube-apiserver={apiserver}\nkube-controller-manager={controller_manager}\n"
        ),
    )
    .map_err(io_error("write ports"))
}

/// etcd, a single member electing itself at once; its client port.
fn start_etcd(cp: &mut ControlPlane, ports: &mut PortPicker) -> Result<u16, Error> {
    let log_path = cp.dir.join("etcd.log");
    let data = cp.dir.join("etcd");
    let (port, _) = retry_on_port_clash("etcd", &log_path, || {
        let (client, peer) = (ports.pick()?, ports.pick()?);
        let _ = fs::remove_dir_all(&data);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&data)
            .map_err(io_error("create etcd/"))?;
        let mut cmd = Command::new(ETCD);
        cmd.arg("--name=zoom")
            .arg(path_flag("--data-dir", &data))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=zoom=http://127.0.0.1:{peer}"))
            .args([
                "--initial-cluster-state=new",
                "--logger=zap",
                "--log-level=warn",
            ])
            .args(["--heartbeat-interval=10", "--election-timeout=100"]);
        if cfg!(target_arch = "aarch64") {
            cmd.env("ETCD_UNSUPPORTED_ARCH", "arm64"); // etcd 3.4 wants an opt-in
        }
        let pid = launch(cp, "etcd", &mut cmd, &log_path)?;
        let health = format!("http://127.0.0.1:{client}/health");
        let ready = await_ready(pid, "etcd", &log_path, "etcd /health", || {
            curl(&["-fsS", &health]).is_some_and(|body| body.contains(r#""health":"true""#))
        })?;
        Ok((client, ready))
    })?;
    Ok(port)
}

/// kube-apiserver (1.20 has no insecure port: the static token and RBAC), ready and serving
/// the default namespace; its port.
fn start_apiserver(
    cp: &mut ControlPlane,
    ports: &mut PortPicker,
    etcd: u16,
    token: &str,
) -> Result<u16, Error> {
    let log_path = cp.dir.join("kube-apiserver.log");
    let (pki, tokens) = (cp.dir.join("pki"), cp.dir.join("tokens.csv"));
    let bearer = format!("Authorization: Bearer {token}");
    let (port, pid) = retry_on_port_clash("kube-apiserver", &log_path, || {
        let port = ports.pick()?;
        let mut cmd = Command::new(bin("kube-apiserver"));
        cmd.arg(format!("--etcd-servers=http://127.0.0.1:{etcd}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={port}"))
            .arg("--insecure-port=0")
            .arg(path_flag("--tls-cert-file", &pki.join("serving.crt")))
            .arg(path_flag(
                "--tls-private-key-file",
                &pki.join("serving.key"),
            ))
            .arg(path_flag("--token-auth-file", &tokens))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(path_flag("--service-account-key-file", &pki.join("sa.key")))
            .arg(path_flag(
                "--service-account-signing-key-file",
                &pki.join("sa.key"),
            ))
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--allow-privileged=true")
            .arg("--enable-priority-and-fairness=false")
            .arg("--endpoint-reconciler-type=none")
            .arg("--profiling=false");
        let pid = launch(cp, "kube-apiserver", &mut cmd, &log_path)?;
        let readyz = format!("https://127.0.0.1:{port}/readyz");
        let what = "kube-apiserver /readyz";
        let ready = await_ready(pid, "kube-apiserver", &log_path, what, || {
            curl(&["-fsSk", "-H", &bearer, &readyz]).is_some_and(|body| body == "ok")
        })?;
        Ok((port, ready))
    })?;
    let default_ns = format!("https://127.0.0.1:{port}/api/v1/namespaces/default");
    let what = "namespace 'default'";
    match await_ready(pid, "kube-apiserver", &log_path, what, || {
        curl(&["-fsSk", "-o", "/dev/null", "-H", &bearer, &default_ns]).is_some()
    })? {
        Ready::Yes(_) => Ok(port),
        Ready::PortClash => Err(component_error("kube-apiserver exited", &log_path)),
    }
}

/// kube-controller-manager: garbage collection, namespace deletion, service accounts and
/// their tokens; its port.
fn start_controller_manager(cp: &mut ControlPlane, ports: &mut PortPicker) -> Result<u16, Error> {
    let log_path = cp.dir.join("kube-controller-manager.log");
    let (pki, kubeconfig) = (cp.dir.join("pki"), cp.kubeconfig.clone());
    let (port, _) = retry_on_port_clash("kube-controller-manager", &log_path, || {
        let port = ports.pick()?;
        let mut cmd = Command::new(bin("kube-controller-manager"));
        cmd.arg(path_flag("--kubeconfig", &kubeconfig))
            .arg(format!("--controllers={KCM_CONTROLLERS}"))
            .arg("--use-service-account-credentials=false")
            .arg("--leader-elect=false")
            .args(["--port=0", "--bind-address=127.0.0.1"])
            .arg(format!("--secure-port={port}"))
            .arg(path_flag("--tls-cert-file", &pki.join("serving.crt")))
            .arg(path_flag(
                "--tls-private-key-file",
                &pki.join("serving.key"),
            ))
            .arg(path_flag(
                "--service-account-private-key-file",
                &pki.join("sa.key"),
            ))
            .arg(path_flag("--root-ca-file", &pki.join("serving.crt")))
            .arg("--profiling=false");
        let pid = launch(cp, "kube-controller-manager", &mut cmd, &log_path)?;
        let healthz = format!("https://127.0.0.1:{port}/healthz");
        let what = "kube-controller-manager /healthz";
        let ready = await_ready(pid, "kube-controller-manager", &log_path, what, || {
            curl(&["-fsSk", &healthz]).is_some_and(|body| body == "ok")
        })?;
        Ok((port, ready))
    })?;
    Ok(port)
}

/// Where hack/build-kubernetes.sh caches the binary `name`.
fn bin(name: &str) -> PathBuf {
    let root = std::env::var_os("ZOOM_OPERATOR_CACHE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/var/cache/zoom-operator"), PathBuf::from);
    root.join(format!("kubernetes-{K8S_VERSION}/bin/{name}"))
}

/// Builds the binaries unless the cache says they are there: `--quick` checks a stamp, so a
/// start does not exec two 100 MB binaries. The script keeps its stdout off ours, which
/// carries `KUBECONFIG=` for the command line.
fn ensure_binaries() -> Result<(), Error> {
    let stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(io_error("dup stderr"))?;
    let status = Command::new("bash")
        .arg(BUILD_SCRIPT)
        .arg("--quick")
        .stdin(Stdio::null())
        .stdout(stderr)
        .status()
        .map_err(|e| Error::Build(format!("cannot run bash {BUILD_SCRIPT}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Build(status.to_string()))
    }
}

fn start_watchdog(cp: &mut ControlPlane, pid: u32, starttime: u64) -> Result<(), Error> {
    let log_path = cp.dir.join("watchdog.log");
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_error(format!("open {}", log_path.display())))?;
    let mut cmd = Command::new(WATCHDOG);
    cmd.arg(pid.to_string())
        .arg(starttime.to_string())
        .arg(&cp.dir)
        .stdout(log_file.try_clone().map_err(io_error("watchdog log"))?)
        .stderr(log_file);
    let child = processes::launch(&cp.dir, "watchdog", &mut cmd)
        .map_err(io_error(format!("start the watchdog {WATCHDOG}")))?;
    log(&format!(
        "watchdog (pid {}) stops the control plane when pid {pid} exits",
        child.id()
    ));
    cp.children.push(child);
    Ok(())
}

/// `processes::launch` with stdout and stderr in `log_path`; the child is kept for reaping.
fn launch(
    cp: &mut ControlPlane,
    name: &str,
    cmd: &mut Command,
    log_path: &Path,
) -> Result<u32, Error> {
    let log_file =
        File::create(log_path).map_err(io_error(format!("create {}", log_path.display())))?;
    cmd.stdout(log_file.try_clone().map_err(io_error("log file"))?)
        .stderr(log_file);
    let child = processes::launch(&cp.dir, name, cmd)
        .map_err(io_error(format!("start {name} ({:?})", cmd.get_program())))?;
    let pid = child.id();
    cp.children.push(child);
    Ok(pid)
}

/// How a wait for a component ended, when it did not fail.
enum Ready {
    Yes(u32),
    /// The process died of a port someone else took first; retry with other ports.
    PortClash,
}

/// Polls `check` every 100 ms until it holds. The process exiting for any other reason than a
/// port clash, or ZOOM_CONTROL_PLANE_TIMEOUT passing, is an error carrying its log's tail.
fn await_ready(
    pid: u32,
    name: &str,
    log_path: &Path,
    what: &str,
    mut check: impl FnMut() -> bool,
) -> Result<Ready, Error> {
    let timeout = readiness_timeout();
    let deadline = Instant::now() + timeout;
    let record = Record::of(name, pid);
    while !check() {
        if !record.alive() {
            let log = fs::read_to_string(log_path).unwrap_or_default();
            if log.contains("address already in use") {
                return Ok(Ready::PortClash);
            }
            return Err(component_error(
                format!("{name} exited while waiting for {what}"),
                log_path,
            ));
        }
        if Instant::now() > deadline {
            return Err(component_error(
                format!("timed out after {}s waiting for {what}", timeout.as_secs()),
                log_path,
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Ready::Yes(pid))
}

/// Runs `attempt` up to PORT_ATTEMPTS times while it reports a port clash.
fn retry_on_port_clash<T>(
    name: &str,
    log_path: &Path,
    mut attempt: impl FnMut() -> Result<(T, Ready), Error>,
) -> Result<(T, u32), Error> {
    for n in 1..=PORT_ATTEMPTS {
        if let (value, Ready::Yes(pid)) = attempt()? {
            return Ok((value, pid));
        }
        if n < PORT_ATTEMPTS {
            log(&format!(
                "{name} lost a port race; retrying with other ports"
            ));
        }
    }
    Err(component_error(
        format!("{name}: ports kept clashing"),
        log_path,
    ))
}

fn readiness_timeout() -> Duration {
    let secs = std::env::var("ZOOM_CONTROL_PLANE_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

fn component_error(problem: impl Into<String>, log_path: &Path) -> Error {
    let log = fs::read_to_string(log_path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail: String = lines[lines.len().saturating_sub(40)..]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    Error::Component {
        problem: problem.into(),
        log: log_path.to_owned(),
        tail,
    }
}

/// `curl --max-time 2 ARGS...`: its stdout when it succeeds.
fn curl(args: &[&str]) -> Option<String> {
    let out = Command::new("curl")
        .arg("--max-time")
        .arg("2")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The service-account signing key and a self-signed serving certificate, made with openssl
/// (output in pki/openssl.log). False when openssl failed.
fn generate_keys(pki: &Path) -> Result<bool, Error> {
    let log_path = pki.join("openssl.log");
    let log_file = File::create(&log_path).map_err(io_error("create pki/openssl.log"))?;
    let openssl = |args: &[&str]| -> Result<bool, Error> {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(pki)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(io_error("openssl log"))?)
            .stderr(log_file.try_clone().map_err(io_error("openssl log"))?)
            .status()
            .map_err(io_error("run openssl"))?;
        Ok(status.success())
    };
    Ok(openssl(&["genrsa", "-out", "sa.key", "2048"])?
        && openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=zoom-local-apiserver",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,\
             DNS:kubernetes.default.svc,IP:10.0.0.1",
            "-keyout",
            "serving.key",
            "-out",
            "serving.crt",
        ])?)
}

/// The kubeconfig for `server`, authenticating with `token`.
fn kubeconfig(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: zoom-local
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
users:
- name: zoom-admin
  user:
    token: {token}
contexts:
- name: zoom-local
  context:
    cluster: zoom-local
    user: zoom-admin
    namespace: default
current-context: zoom-local
"
    )
}

fn path_flag(flag: &str, path: &Path) -> String {
    format!("{flag}={}", path.display())
}

/// Writes a file only its owner can read (tokens, the kubeconfig).
fn write_private(path: &Path, contents: &str) -> Result<(), Error> {
    let _ = fs::remove_file(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(io_error(format!("write {}", path.display())))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0; N];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_error("read /dev/urandom"))?;
    Ok(bytes)
}

/// 16 random bytes in hex: the admin's static token.
fn token() -> Result<String, Error> {
    let bytes: [u8; 16] = random_bytes()?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Random free loopback ports, each picked once, below Linux's ephemeral range (32768+) so
/// outgoing connections rarely take one first.
#[derive(Default)]
struct PortPicker {
    picked: Vec<u16>,
}

impl PortPicker {
    fn pick(&mut self) -> Result<u16, Error> {
        for _ in 0..200 {
            let port = 10_000 + (u16::from_le_bytes(random_bytes()?) % 22_000);
            if self.picked.contains(&port) || port_in_use(port) {
                continue;
            }
            self.picked.push(port);
            return Ok(port);
        }
        Err(Error::Io {
            what: "pick a port".to_owned(),
            source: io::Error::other("could not find a free port"),
        })
    }
}

fn port_in_use(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_names_the_server_and_the_token() {
        let config = kubeconfig("https://127.0.0.1:12345", "abc123");
        assert!(config.contains("    server: https://127.0.0.1:12345\n"));
        assert!(config.contains("    token: abc123\n"));
        assert!(config.contains("insecure-skip-tls-verify: true"));
    }

    #[test]
    fn picked_ports_are_distinct_and_below_the_ephemeral_range() {
        let mut picker = PortPicker::default();
        let ports: Vec<u16> = (0..20).map(|_| picker.pick().expect("port")).collect();
        assert!(ports.iter().all(|p| (10_000..32_000).contains(p)));
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
    }

    #[test]
    fn a_token_is_32_hex_digits() {
        let token = token().expect("token");
        assert_eq!(token.len(), 32);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn stopping_a_directory_without_a_control_plane_is_a_no_op() {
        let dir = std::env::temp_dir().join(format!("testenv-none-{}", std::process::id()));
        assert!(stop(&dir).is_ok());
        fs::create_dir_all(&dir).expect("dir");
        assert!(stop(&dir).is_ok());
        let _ = fs::remove_dir_all(&dir);
    }
}
