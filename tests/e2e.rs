//! End to end, the way a platform team runs it: the Helm chart installed on a one-node cluster
//! with a real kubelet (`hack/cluster.sh`), the operator and zoom-sim as Pods from the local
//! images (`hack/image.sh`), a PrivateOAuth connection authorized through the operator's
//! Service, tokens mounted into a workload Pod, CloudEvents to a sink Pod by Service DNS name,
//! leader failover, `helm upgrade` and `helm uninstall`, and a namespace-scoped install.
//!
//! The cluster comes up once per test binary and goes when the binary exits (watchdog). Tests
//! fail loudly when it or the images are missing; they never skip. Run with `hack/e2e.sh`.

#[path = "common/lease.rs"]
mod lease;
#[path = "common/web.rs"]
mod web;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use lease::lease_holder;
use serde_json::Value;
use web::{eventually, http};
use zoom_operator::api::ZoomConnection;

/// The node's address: the API server and NodePorts, reachable from the test through the veth
/// route hack/cluster.sh sets up (and from Pods, as the node).
const NODE: &str = "10.231.0.2";
const OPERATOR_NODE_PORT: u16 = 30080;
const SIM_NODE_PORT: u16 = 30090;
const TAG: &str = env!("CARGO_PKG_VERSION");
const UPGRADE_TAG: &str = "e2e-upgrade";
const CLIENT_ID: &str = "e2e-client";
const CLIENT_SECRET: &str = "e2e-client-secret";
const SECRET_TOKEN: &str = "e2e-secret-token";
const ACCOUNT: &str = "e2e-account";

struct Cluster {
    kubeconfig: PathBuf,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn image_tarball(name: &str) -> PathBuf {
    let dir = std::env::var_os("ZOOM_E2E_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/images"));
    let path = dir.join(format!("{name}.tar"));
    assert!(
        path.exists(),
        "{} is missing: build the images first (bash hack/image.sh zoom-operator zoom-sim busybox, or bash hack/e2e.sh)",
        path.display()
    );
    path
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The cluster for this test binary, with the local images loaded, started on first use.
fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let images = ["zoom-operator", "zoom-sim", "busybox"].map(|n| (n, image_tarball(n)));
        let dir = tempfile::Builder::new()
            .prefix("zoom-e2e-")
            .tempdir_in("/tmp")
            .expect("temp dir")
            .keep();
        let script = repo_root().join("hack/cluster.sh");
        let output = Command::new("bash")
            .arg(&script)
            .args(["up", "--watch-pid", &std::process::id().to_string()])
            .arg(&dir)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run hack/cluster.sh");
        assert!(
            output.status.success(),
            "the node cluster could not start (hack/cluster.sh up exited {}); see its messages above",
            output.status
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let kubeconfig = stdout
            .lines()
            .find_map(|l| l.strip_prefix("KUBECONFIG="))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("hack/cluster.sh printed no KUBECONFIG= line: {stdout:?}"));
        for (name, tarball) in &images {
            run(Command::new("bash")
                .arg(&script)
                .arg("load")
                .arg(&dir)
                .arg(tarball)
                .arg(name));
        }
        // The same image under a second tag, for `helm upgrade` to a new image.
        run(Command::new("ctr")
            .arg("--address")
            .arg(dir.join("run/containerd.sock"))
            .args(["-n", "k8s.io", "images", "tag", "--force"])
            .arg(format!("docker.io/local/zoom-operator:{TAG}"))
            .arg(format!("docker.io/local/zoom-operator:{UPGRADE_TAG}")));
        eprintln!("e2e: the cluster's state and logs are in {}", dir.display());
        Cluster { kubeconfig }
    })
}

/// Runs a command to success and returns its stdout; panics with its stderr otherwise.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kubectl(args: &[&str]) -> String {
    run(Command::new("kubectl")
        .env("KUBECONFIG", &cluster().kubeconfig)
        .args(args))
}

/// `kubectl` that may fail: (success, stdout).
fn kubectl_try(args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", &cluster().kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn kubectl_apply(ns: &str, yaml: &str) {
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", &cluster().kubeconfig)
        .args(["apply", "-n", ns, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kubectl");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write");
    assert!(
        child.wait().expect("kubectl").success(),
        "kubectl apply failed:\n{yaml}"
    );
}

fn helm_binary() -> String {
    std::env::var("HELM").unwrap_or_else(|_| {
        run(Command::new("bash").arg(repo_root().join("hack/install-helm.sh")))
            .trim()
            .to_owned()
    })
}

fn helm(args: &[&str]) -> String {
    run(Command::new(helm_binary())
        .env("KUBECONFIG", &cluster().kubeconfig)
        .args(args))
}

async fn client() -> Client {
    let kubeconfig = Kubeconfig::read_from(&cluster().kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

fn fresh_namespace(prefix: &str) -> String {
    let name = format!("{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff);
    kubectl(&["create", "namespace", &name]);
    name
}

async fn wait_ready(client: &Client, ns: &str, name: &str, timeout: Duration) -> ZoomConnection {
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), ns);
    eventually(&format!("{ns}/{name} Ready"), timeout, || {
        let api = api.clone();
        async move {
            let zc = api.get(name).await.map_err(|e| e.to_string())?;
            match zc.condition("Ready") {
                Some(c) if c.status == "True" => Ok(zc),
                Some(c) => Err(format!("{}/{}: {}", c.status, c.reason, c.message)),
                None => Err("no Ready condition".to_owned()),
            }
        }
    })
    .await
}

async fn sim_stats() -> Value {
    http()
        .get(format!("http://{NODE}:{SIM_NODE_PORT}/sim/stats"))
        .send()
        .await
        .expect("zoom-sim stats through its NodePort")
        .json()
        .await
        .expect("stats json")
}

async fn token_field(client: &Client, ns: &str, secret: &str, key: &str) -> Option<String> {
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(secret)
        .await
        .ok()
        .flatten()?;
    let data = s.data?;
    data.get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// Waits until the token Secret holds a refresh token other than `before`, and returns it.
async fn next_refresh(client: &Client, ns: &str, before: &str, what: &str) -> String {
    eventually(what, Duration::from_secs(90), || async move {
        match token_field(client, ns, "sales-bot-zoom-token", "refresh_token").await {
            Some(now) if now != before => Ok(now),
            other => Err(format!("refresh_token still {other:?}")),
        }
    })
    .await
}

/// zoom-sim as a Pod with a Service: ClusterIP for the operator's API calls by DNS name,
/// NodePort for the browser (the test) and for the operator's OAuth calls.
fn deploy_zoom_sim(ns: &str, event_url: &str) {
    let app = format!(
        "kind=oauth,client_id={CLIENT_ID},client_secret={CLIENT_SECRET},secret_token={SECRET_TOKEN},account_id={ACCOUNT},user_id=e2e-user,email=e2e@example.com,event_url={event_url}"
    );
    kubectl_apply(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: zoom-sim, labels: {{app: zoom-sim}}}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {{runAsNonRoot: true, runAsUser: 65532}}
  containers:
  - name: zoom-sim
    image: local/zoom-sim:{TAG}
    imagePullPolicy: Never
    args: [serve, --listen=0.0.0.0:9000, --consent=approve, --token-lifetime=20, "--app={app}"]
    ports: [{{containerPort: 9000}}]
    readinessProbe: {{tcpSocket: {{port: 9000}}, periodSeconds: 1}}
    securityContext: {{readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: zoom-sim}}
spec:
  type: NodePort
  selector: {{app: zoom-sim}}
  ports: [{{port: 9000, targetPort: 9000, nodePort: {SIM_NODE_PORT}}}]
"#
        ),
    );
}

/// A CloudEvents sink (busybox httpd + a CGI script that records the ce-* headers) and a
/// workload that mounts the token Secret, both in the tenant's namespace.
fn deploy_sink_and_workload(ns: &str) {
    kubectl_apply(
        ns,
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: sink-cgi}
data:
  zoom: |
    #!/bin/sh
    echo "type=$HTTP_CE_TYPE source=$HTTP_CE_SOURCE id=$HTTP_CE_ID" >> /data/events
    printf 'Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok\n'
---
apiVersion: v1
kind: Pod
metadata: {name: sink, labels: {app: sink}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sink
    image: local/busybox:0.1.0
    imagePullPolicy: Never
    command: [/bin/busybox, httpd, -f, -p, "8080", -h, /www]
    volumeMounts:
    - {name: cgi, mountPath: /www/cgi-bin}
    - {name: data, mountPath: /data}
  volumes:
  - {name: cgi, configMap: {name: sink-cgi, defaultMode: 0755}}
  - {name: data, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata: {name: sink}
spec:
  selector: {app: sink}
  ports: [{port: 8080, targetPort: 8080}]
"#,
    );
}

fn deploy_workload(ns: &str) {
    kubectl_apply(
        ns,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: workload}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: local/busybox:0.1.0
    imagePullPolicy: Never
    command: [/bin/busybox, sleep, "3600"]
    volumeMounts: [{name: zoom, mountPath: /var/run/zoom, readOnly: true}]
  volumes:
  - {name: zoom, secret: {secretName: sales-bot-zoom-token}}
"#,
    );
    kubectl(&[
        "wait",
        "-n",
        ns,
        "--for=condition=Ready",
        "pod/workload",
        "--timeout=120s",
    ]);
}

/// A NodePort in front of the operator's public port: what an Ingress is in production.
fn expose_operator(ns: &str) {
    kubectl_apply(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: Service
metadata: {{name: zoom-operator-public}}
spec:
  type: NodePort
  selector: {{app.kubernetes.io/name: zoom-operator, app.kubernetes.io/instance: zoom-operator}}
  ports: [{{port: 8080, targetPort: http, nodePort: {OPERATOR_NODE_PORT}}}]
"#
        ),
    );
}

fn operator_values(sim_ns: &str) -> Vec<String> {
    vec![
        "--set".into(),
        "image.repository=local/zoom-operator".into(),
        "--set".into(),
        "image.pullPolicy=Never".into(),
        "--set".into(),
        format!("operator.publicURL=http://{NODE}:{OPERATOR_NODE_PORT}"),
        "--set".into(),
        format!("operator.zoomOAuthURL=http://{NODE}:{SIM_NODE_PORT}"),
        "--set".into(),
        format!("operator.zoomAPIURL=http://zoom-sim.{sim_ns}.svc:9000"),
    ]
}

/// `helm install|upgrade zoom-operator` of the chart with the local image and `set` values.
fn helm_release(verb: &str, ns: &str, sim_ns: &str, set: &[String]) {
    let chart = repo_root()
        .join("charts/zoom-operator")
        .display()
        .to_string();
    let mut args: Vec<String> = [
        verb,
        "zoom-operator",
        &chart,
        "-n",
        ns,
        "--wait",
        "--timeout",
        "4m",
    ]
    .map(str::to_owned)
    .into();
    args.extend(operator_values(sim_ns));
    for value in set {
        args.push("--set".to_owned());
        args.push(value.clone());
    }
    helm(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

fn ready_operator_pods(ns: &str) -> Vec<String> {
    let out = kubectl(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "app.kubernetes.io/name=zoom-operator",
        "-o",
        "go-template={{range .items}}{{if not .metadata.deletionTimestamp}}{{$ready := false}}{{range .status.conditions}}{{if and (eq .type \"Ready\") (eq .status \"True\")}}{{$ready = true}}{{end}}{{end}}{{if $ready}}{{.metadata.name}}{{\"\\n\"}}{{end}}{{end}}{{end}}",
    ]);
    out.lines().map(str::to_owned).collect()
}

/// Waits until kube-proxy routes the NodePort to a Pod (any HTTP answer will do).
async fn wait_node_port(port: u16, what: &str) {
    eventually(
        &format!("{what} at {NODE}:{port}"),
        Duration::from_secs(60),
        || async move {
            http()
                .get(format!("http://{NODE}:{port}/"))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await
}

/// Browser: start link -> zoom-sim's authorize (consent=approve) -> the operator's redirect URL.
async fn authorize_in_browser(authorize_url: &str) {
    let hops = web::authorize_in_browser(authorize_url).await;
    assert!(
        hops.to_zoom
            .starts_with(&format!("http://{NODE}:{SIM_NODE_PORT}/oauth/authorize?")),
        "{}",
        hops.to_zoom
    );
    assert!(
        hops.callback.starts_with(&format!(
            "http://{NODE}:{OPERATOR_NODE_PORT}/oauth/redirect/zoom?"
        )),
        "{}",
        hops.callback
    );
}

/// helm install: 2 replicas Ready through their probes, under the chart's RBAC and security
/// context, one of them the leader. Returns the Pods and the leader's identity.
async fn install_operator(client: &Client, op_ns: &str, sim_ns: &str) -> (Vec<String>, String) {
    helm_release("install", op_ns, sim_ns, &[]);
    expose_operator(op_ns);
    let pods = eventually(
        "2 Ready operator Pods",
        Duration::from_secs(120),
        || async move {
            let pods = ready_operator_pods(op_ns);
            if pods.len() == 2 {
                Ok(pods)
            } else {
                Err(format!("{pods:?}"))
            }
        },
    )
    .await;
    let spec: Value = serde_json::from_str(&kubectl(&[
        "get", "pod", "-n", op_ns, &pods[0], "-o", "json",
    ]))
    .expect("pod json");
    assert_eq!(spec["spec"]["serviceAccountName"], "zoom-operator");
    let container = &spec["spec"]["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    assert_eq!(spec["spec"]["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        container["image"],
        format!("local/zoom-operator:{TAG}"),
        "the chart's image, with the chart's default tag (appVersion)"
    );
    let leader = eventually("a leader", Duration::from_secs(60), || async {
        lease_holder(client, op_ns)
            .await
            .ok_or_else(|| "no holder".to_owned())
    })
    .await;
    assert!(
        pods.iter().any(|p| leader.contains(p.as_str())),
        "leader {leader} is one of {pods:?}"
    );
    (pods, leader)
}

/// A PrivateOAuth connection with a ref sink, authorized through the operator's Service.
async fn authorize_sales_bot(client: &Client, tenant: &str) {
    kubectl(&[
        "create",
        "secret",
        "generic",
        "zoom-app",
        "-n",
        tenant,
        &format!("--from-literal=clientId={CLIENT_ID}"),
        &format!("--from-literal=clientSecret={CLIENT_SECRET}"),
        &format!("--from-literal=secretToken={SECRET_TOKEN}"),
    ]);
    kubectl_apply(
        tenant,
        r#"
apiVersion: zoom-operator.io/v1alpha1
kind: ZoomConnection
metadata: {name: sales-bot}
spec:
  authType: PrivateOAuth
  credentialsRef: {name: zoom-app}
  refreshBefore: 5s
  events:
    sink:
      ref: {kind: Service, name: sink, port: 8080, path: /cgi-bin/zoom}
"#,
    );
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), tenant);
    let authorize_url = eventually("status.authorizeURL", Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            api.get("sales-bot")
                .await
                .map_err(|e| e.to_string())?
                .status
                .and_then(|s| s.authorize_url)
                .ok_or_else(|| "no authorizeURL yet".to_owned())
        }
    })
    .await;
    assert!(authorize_url.starts_with(&format!(
        "http://{NODE}:{OPERATOR_NODE_PORT}/oauth/start/zoom/{tenant}/sales-bot?"
    )));
    wait_node_port(OPERATOR_NODE_PORT, "the operator's NodePort").await;
    wait_node_port(SIM_NODE_PORT, "zoom-sim's NodePort").await;
    authorize_in_browser(&authorize_url).await;
    wait_ready(client, tenant, "sales-bot", Duration::from_secs(60)).await;
}

/// The workload sees each new access token in its mounted Secret; returns that token.
async fn workload_sees_refresh(client: &Client, tenant: &str) -> String {
    deploy_workload(tenant);
    let first = token_field(client, tenant, "sales-bot-zoom-token", "refresh_token")
        .await
        .expect("refresh token");
    next_refresh(client, tenant, &first, "a refresh of the 20 s token").await;
    let access = token_field(client, tenant, "sales-bot-zoom-token", "access_token")
        .await
        .expect("access token");
    eventually(
        "the workload to see the refreshed access_token",
        Duration::from_secs(60),
        || {
            let access = access.clone();
            async move {
                let (_, seen) = kubectl_try(&[
                    "exec",
                    "-n",
                    tenant,
                    "workload",
                    "--",
                    "cat",
                    "/var/run/zoom/access_token",
                ]);
                if seen == access {
                    Ok(())
                } else {
                    Err("old token still mounted".to_owned())
                }
            }
        },
    )
    .await;
    access
}

/// An event signed by the app reaches the sink Pod by Service DNS name, as a CloudEvent.
async fn event_reaches_sink(tenant: &str) {
    kubectl(&[
        "wait",
        "-n",
        tenant,
        "--for=condition=Ready",
        "pod/sink",
        "--timeout=60s",
    ]);
    // The workspace's zoom-sim binary, next to the operator's.
    let zoom_sim = PathBuf::from(env!("CARGO_BIN_EXE_zoom-operator")).with_file_name("zoom-sim");
    let sent = Command::new(zoom_sim)
        .args([
            "send-event",
            "--url",
            &format!("http://{NODE}:{OPERATOR_NODE_PORT}/zoom/event"),
            "--secret-token",
            SECRET_TOKEN,
            "--event",
            "meeting.started",
            "--account-id",
            ACCOUNT,
        ])
        .output()
        .expect("zoom-sim send-event");
    assert!(
        sent.status.success(),
        "send-event: {}{}",
        String::from_utf8_lossy(&sent.stdout),
        String::from_utf8_lossy(&sent.stderr)
    );
    let source = format!("source=zoom-operator.io/{tenant}/sales-bot");
    eventually(
        "the CloudEvent at the sink Pod",
        Duration::from_secs(60),
        || {
            let source = source.clone();
            async move {
                let (_, events) =
                    kubectl_try(&["exec", "-n", tenant, "sink", "--", "cat", "/data/events"]);
                if events.contains("type=us.zoom.meeting.started") && events.contains(&source) {
                    Ok(())
                } else {
                    Err(events)
                }
            }
        },
    )
    .await;
}

/// Deletes the leader's Pod while 20 s tokens refresh: the other replica takes over, and no
/// refresh token is ever sent twice. Returns the refresh token stored last.
async fn leader_failover(
    client: &Client,
    op_ns: &str,
    tenant: &str,
    pods: &[String],
    leader: &str,
) -> String {
    let before = token_field(client, tenant, "sales-bot-zoom-token", "refresh_token")
        .await
        .expect("refresh token");
    let leader_pod = pods
        .iter()
        .find(|p| leader.contains(p.as_str()))
        .expect("leader pod")
        .clone();
    kubectl(&["delete", "pod", "-n", op_ns, &leader_pod, "--wait=false"]);
    let new_leader = eventually(
        "another replica to lead",
        Duration::from_secs(60),
        || async {
            match lease_holder(client, op_ns).await {
                Some(h) if !h.contains(leader_pod.as_str()) => Ok(h),
                other => Err(format!("holder {other:?}")),
            }
        },
    )
    .await;
    let after_failover = next_refresh(client, tenant, &before, "a refresh by the new leader").await;
    let after_failover = next_refresh(
        client,
        tenant,
        &after_failover,
        "another refresh by the new leader",
    )
    .await;
    let stats = sim_stats().await;
    assert_eq!(
        stats["reused_refresh_tokens"], 0,
        "leader {leader} -> {new_leader}: a refresh token was reused: {stats}"
    );
    after_failover
}

/// One test at a time: a cluster-wide install would see the scoped test's namespaces.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_install_authorize_refresh_failover_upgrade_uninstall() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let op_ns = fresh_namespace("zoom-operator");
    let sim_ns = fresh_namespace("zoom-sim");
    let tenant = fresh_namespace("team-a");
    let event_url = format!("http://zoom-operator.{op_ns}.svc:8080/zoom/event");
    deploy_zoom_sim(&sim_ns, &event_url);
    deploy_sink_and_workload(&tenant);

    let (pods, leader) = install_operator(&client, &op_ns, &sim_ns).await;
    authorize_sales_bot(&client, &tenant).await;
    let access = workload_sees_refresh(&client, &tenant).await;
    event_reaches_sink(&tenant).await;

    // Nothing secret in the operator's logs: not the tokens, not the app's credentials.
    let refresh = token_field(&client, &tenant, "sales-bot-zoom-token", "refresh_token")
        .await
        .expect("refresh token");
    for pod in &pods {
        let logs = kubectl(&["logs", "-n", &op_ns, pod]);
        for secret in [
            access.as_str(),
            refresh.as_str(),
            CLIENT_SECRET,
            SECRET_TOKEN,
        ] {
            assert!(
                !logs.contains(secret),
                "{pod}'s log contains a secret ({} characters)",
                secret.len()
            );
        }
    }

    let after_failover = leader_failover(&client, &op_ns, &tenant, &pods, &leader).await;

    // helm upgrade with new values and a new image tag loses no grant.
    helm_release(
        "upgrade",
        &op_ns,
        &sim_ns,
        &[
            format!("image.tag={UPGRADE_TAG}"),
            "operator.logFormat=text".to_owned(),
        ],
    );
    let images = kubectl(&[
        "get",
        "deploy",
        "zoom-operator",
        "-n",
        &op_ns,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(images, format!("local/zoom-operator:{UPGRADE_TAG}"));
    let after_upgrade = next_refresh(
        &client,
        &tenant,
        &after_failover,
        "a refresh after the upgrade",
    )
    .await;
    next_refresh(
        &client,
        &tenant,
        &after_upgrade,
        "another refresh after the upgrade",
    )
    .await;
    wait_ready(&client, &tenant, "sales-bot", Duration::from_secs(60)).await;
    let stats = sim_stats().await;
    assert_eq!(
        stats["reused_refresh_tokens"], 0,
        "after the upgrade: {stats}"
    );

    // helm uninstall keeps the CRD, the connection and its token Secret.
    helm(&["uninstall", "zoom-operator", "-n", &op_ns, "--wait"]);
    kubectl(&["get", "crd", "zoomconnections.zoom-operator.io"]);
    kubectl(&["get", "zc", "-n", &tenant, "sales-bot"]);
    assert!(
        token_field(&client, &tenant, "sales-bot-zoom-token", "access_token")
            .await
            .is_some(),
        "the token Secret outlives the release"
    );

    // A new install picks the grant up where it was: the stored refresh token still works.
    let kept = token_field(&client, &tenant, "sales-bot-zoom-token", "refresh_token")
        .await
        .expect("refresh token");
    helm_release("install", &op_ns, &sim_ns, &[]);
    next_refresh(&client, &tenant, &kept, "a refresh by the new install").await;
    wait_ready(&client, &tenant, "sales-bot", Duration::from_secs(60)).await;
    let stats = sim_stats().await;
    assert_eq!(
        stats["reused_refresh_tokens"], 0,
        "after reinstalling: {stats}"
    );
    helm(&["uninstall", "zoom-operator", "-n", &op_ns, "--wait"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_scoped_install_reads_nothing_outside_its_namespaces() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let op_ns = fresh_namespace("zoom-scoped");
    let watched = fresh_namespace("team-w");
    let other = fresh_namespace("team-x");
    helm_release(
        "install",
        &op_ns,
        "unused",
        &[
            "replicaCount=1".to_owned(),
            format!("operator.watchNamespaces={{{watched}}}"),
        ],
    );

    let sa = format!("system:serviceaccount:{op_ns}:zoom-operator");
    for (ns, verb, resource, want) in [
        (&watched, "list", "zoomconnections.zoom-operator.io", "yes"),
        (&other, "list", "zoomconnections.zoom-operator.io", "no"),
        (&other, "get", "secrets", "no"),
        (&other, "list", "secrets", "no"),
        (&op_ns, "list", "secrets", "no"),
    ] {
        let (_, answer) = kubectl_try(&["auth", "can-i", verb, resource, "-n", ns, "--as", &sa]);
        assert_eq!(answer.trim(), want, "can {sa} {verb} {resource} in {ns}?");
    }

    let connection = "apiVersion: zoom-operator.io/v1alpha1\nkind: ZoomConnection\nmetadata: {name: bot}\nspec: {authType: PrivateOAuth, credentialsRef: {name: zoom-app}}\n";
    kubectl_apply(&other, connection);
    kubectl_apply(&watched, connection);
    let api: Api<ZoomConnection> = Api::namespaced(client.clone(), &watched);
    eventually(
        "status on the watched connection",
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                match api.get("bot").await.map_err(|e| e.to_string())?.status {
                    Some(s) if !s.conditions.is_empty() => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
    // The watched one was reconciled after both were applied; the other is never touched.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ignored = Api::<ZoomConnection>::namespaced(client.clone(), &other)
        .get("bot")
        .await
        .expect("get");
    assert!(
        ignored.status.is_none() && ignored.metadata.finalizers.is_none(),
        "a connection outside watchNamespaces was touched: {:?}",
        ignored
    );
    helm(&["uninstall", "zoom-operator", "-n", &op_ns, "--wait"]);
}
