//! How each component runs: its binary, its flags, and what "ready" means for it. Each gets
//! fresh random ports, and new ones when another process took one first.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ports::PortPicker;
use crate::waits::{await_ready, component_error, curl, retry_on_port_clash, Ready};
use crate::{io_error, launch, ControlPlane, Error};

const K8S_VERSION: &str = "1.20.2";
const ETCD: &str = "/usr/bin/etcd";

/// Controllers we run: enough for owner-reference garbage collection, namespace deletion and
/// default service accounts (and their token Secrets).
const KCM_CONTROLLERS: &str = "garbagecollector,namespace,serviceaccount,serviceaccount-token";

/// etcd, a single member electing itself at once; its client port.
pub(crate) fn start_etcd(cp: &mut ControlPlane, ports: &mut PortPicker) -> Result<u16, Error> {
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
pub(crate) fn start_apiserver(
    cp: &mut ControlPlane,
    ports: &mut PortPicker,
    etcd: u16,
    token: &str,
) -> Result<u16, Error> {
    let log_path = cp.dir.join("kube-apiserver.log");
    let (pki, tokens) = (cp.dir.join("pki"), cp.dir.join("tokens.csv"));
    let bearer = format!("Authorization: Bearer {token}");
    let audit = audit_flags(&cp.dir)?;
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
        if let Some(audit) = &audit {
            cmd.args(audit);
        }
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

/// With ZOOM_CONTROL_PLANE_AUDIT set (the benchmarks), every request is logged with its user
/// agent to DIR/audit.log (metadata only, one JSON line per completed request, in batches of at
/// most a second), so a client's requests can be counted.
fn audit_flags(dir: &Path) -> Result<Option<Vec<String>>, Error> {
    if std::env::var_os("ZOOM_CONTROL_PLANE_AUDIT").is_none_or(|v| v.is_empty()) {
        return Ok(None);
    }
    let policy = dir.join("audit-policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived, ResponseStarted]\nrules:\n- level: Metadata\n",
    )
    .map_err(crate::io_error("write audit-policy.yaml"))?;
    Ok(Some(vec![
        path_flag("--audit-policy-file", &policy),
        path_flag("--audit-log-path", &dir.join("audit.log")),
        "--audit-log-format=json".to_owned(),
        "--audit-log-mode=batch".to_owned(),
        "--audit-log-batch-max-wait=1s".to_owned(),
    ]))
}

/// kube-controller-manager: garbage collection, namespace deletion, service accounts and
/// their tokens; its port.
pub(crate) fn start_controller_manager(
    cp: &mut ControlPlane,
    ports: &mut PortPicker,
) -> Result<u16, Error> {
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

fn path_flag(flag: &str, path: &Path) -> String {
    format!("{flag}={}", path.display())
}
