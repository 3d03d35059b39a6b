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

mod components;
mod credentials;
mod ports;
mod processes;
mod waits;

/// One process of a control plane, as recorded in its `pids` file.
pub use processes::Record as ProcessRecord;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use credentials::{generate_keys, kubeconfig, token, write_private};
use ports::PortPicker;
use processes::log;

const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../hack/build-kubernetes.sh");
const WATCHDOG: &str = env!("TESTENV_WATCHDOG");

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

pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
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

    let etcd = components::start_etcd(cp, &mut ports)?;
    log(&format!("etcd up on 127.0.0.1:{etcd} after {}", since()));

    let openssl_log = cp.dir.join("pki/openssl.log");
    match keygen.join() {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) | Err(_) => {
            return Err(waits::component_error(
                "generating keys failed",
                &openssl_log,
            ));
        }
        Ok(Err(e)) => return Err(e),
    }

    let apiserver = components::start_apiserver(cp, &mut ports, etcd, &token)?;
    cp.api_url = format!("https://127.0.0.1:{apiserver}");
    log(&format!(
        "kube-apiserver ready on {} after {}",
        cp.api_url,
        since()
    ));
    let staged = cp.dir.join("kubeconfig.tmp");
    write_private(&staged, &kubeconfig(&cp.api_url, &token))?;
    fs::rename(&staged, &cp.kubeconfig).map_err(io_error("write kubeconfig"))?;

    let controller_manager = components::start_controller_manager(cp, &mut ports)?;
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
pub(crate) fn launch(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_a_directory_without_a_control_plane_is_a_no_op() {
        let dir = std::env::temp_dir().join(format!("testenv-none-{}", std::process::id()));
        assert!(stop(&dir).is_ok());
        fs::create_dir_all(&dir).expect("dir");
        assert!(stop(&dir).is_ok());
        let _ = fs::remove_dir_all(&dir);
    }
}
