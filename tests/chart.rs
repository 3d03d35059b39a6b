//! The Helm chart (`charts/zoom-operator`) and the examples (`examples/`).
//!
//! Without a cluster: the chart ships the generated CRD, passes `helm lint --strict`, and renders
//! what a platform team expects (replicas, flags, probes, exact least-privilege RBAC, PDB,
//! Ingress) for the main combinations of values. Against the local control plane: the chart
//! installs, and the real operator binary, started with the Deployment's own arguments and the
//! chart ServiceAccount's token, reconciles connections (so the RBAC is enough), while
//! `kubectl auth can-i` as that ServiceAccount says no to everything it does not need (so the
//! RBAC is no more than that). Every example is accepted by the API server.
//!
//! helm comes from `hack/install-helm.sh`; a missing helm or control plane fails the tests.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, ListParams};
use kube::Client;
use serde::Deserialize;
use serde_yaml::Value;
use zoom_operator::api::ZoomConnection;

const CHART_CRD: &str = "charts/zoom-operator/crds/zoomconnections.zoom-operator.io.yaml";
const CRD: &str = "crds/zoomconnections.zoom-operator.io.yaml";

/// What a ZoomConnection's namespace needs, as "<group>/<resource>[/<name>] <verb>".
const CONNECTION_RULES: &[&str] = &[
    "zoom-operator.io/zoomconnections get",
    "zoom-operator.io/zoomconnections list",
    "zoom-operator.io/zoomconnections watch",
    "zoom-operator.io/zoomconnections patch",
    "zoom-operator.io/zoomconnections/status patch",
    "core/secrets get",
    "core/secrets list",
    "core/secrets watch",
    "core/secrets create",
    "core/secrets update",
    "core/services get",
    "events.k8s.io/events create",
    "events.k8s.io/events patch",
];

/// What the release namespace needs: the leader Lease, the signing-key Secret and the events
/// stored for redelivery (ConfigMaps).
const OWN_NAMESPACE_RULES: &[&str] = &[
    "coordination.k8s.io/leases create",
    "coordination.k8s.io/leases/zoom-operator-leader get",
    "coordination.k8s.io/leases/zoom-operator-leader update",
    "core/secrets create",
    "core/secrets/zoom-operator-signing-key get",
    "core/configmaps get",
    "core/configmaps list",
    "core/configmaps watch",
    "core/configmaps create",
    "core/configmaps patch",
    "core/configmaps delete",
];

// ---------------------------------------------------------------------------------------------
// helm and rendering
// ---------------------------------------------------------------------------------------------

fn chart_dir() -> PathBuf {
    repo_root().join("charts/zoom-operator")
}

/// The helm binary, installed (once per test binary) by `hack/install-helm.sh`.
fn helm_binary() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("hack/install-helm.sh"))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run hack/install-helm.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "hack/install-helm.sh exited {}; the chart tests need helm (see its messages above)",
            out.status
        );
        let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        assert!(
            path.is_file(),
            "hack/install-helm.sh printed {stdout:?}, which is not a file"
        );
        path
    })
}

/// A helm command with its caches and config under target/, not the user's home.
fn helm() -> Command {
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    let mut cmd = Command::new(helm_binary());
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns stdout.
fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd`, expecting it to fail; returns stderr.
fn run_fails(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not start: {e}"));
    assert!(
        !out.status.success(),
        "{what} should have failed but printed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn with_sets<'a>(cmd: &'a mut Command, sets: &[&str]) -> &'a mut Command {
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    cmd
}

fn parse_docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The objects `helm template` renders.
struct Rendered {
    docs: Vec<Value>,
}

const RELEASE: &str = "zoom-operator";
const RELEASE_NS: &str = "zoom-system";

/// `helm template zoom-operator charts/zoom-operator -n zoom-system --set ...`.
fn template(sets: &[&str]) -> Command {
    let mut cmd = helm();
    cmd.args(["template", RELEASE])
        .arg(chart_dir())
        .args(["--namespace", RELEASE_NS]);
    with_sets(&mut cmd, sets);
    cmd
}

fn render(sets: &[&str]) -> Rendered {
    let yaml = run_ok(&mut template(sets), &format!("helm template {sets:?}"));
    Rendered {
        docs: parse_docs(&yaml),
    }
}

fn render_fails(sets: &[&str]) -> String {
    run_fails(&mut template(sets), &format!("helm template {sets:?}"))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().map(|x| str_of(x).to_owned()).collect())
        .unwrap_or_default()
}

impl Rendered {
    /// "Kind namespace/name" of every object, for messages and exact comparisons.
    fn objects(&self) -> BTreeSet<String> {
        self.docs
            .iter()
            .map(|d| {
                let ns = str_of(&d["metadata"]["namespace"]);
                let name = str_of(&d["metadata"]["name"]);
                if ns.is_empty() {
                    format!("{} {name}", str_of(&d["kind"]))
                } else {
                    format!("{} {ns}/{name}", str_of(&d["kind"]))
                }
            })
            .collect()
    }

    fn find(&self, kind: &str, ns: &str, name: &str) -> Option<&Value> {
        self.docs.iter().find(|d| {
            str_of(&d["kind"]) == kind
                && str_of(&d["metadata"]["name"]) == name
                && str_of(&d["metadata"]["namespace"]) == ns
        })
    }

    fn get(&self, kind: &str, ns: &str, name: &str) -> &Value {
        self.find(kind, ns, name)
            .unwrap_or_else(|| panic!("no {kind} {ns}/{name} rendered; got {:#?}", self.objects()))
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs
            .iter()
            .filter(|d| str_of(&d["kind"]) == kind)
            .collect()
    }

    fn container(&self) -> &Value {
        &self.get("Deployment", RELEASE_NS, RELEASE)["spec"]["template"]["spec"]["containers"][0]
    }

    fn args(&self) -> Vec<String> {
        strings(&self.container()["args"])
    }

    /// The rules of a Role or ClusterRole, one "<group>/<resource>[/<name>] <verb>" each.
    fn rules(&self, kind: &str, ns: &str, name: &str) -> BTreeSet<String> {
        rule_set(self.get(kind, ns, name))
    }
}

fn rule_set(role: &Value) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for rule in role["rules"].as_sequence().expect("a role has rules") {
        let names = strings(&rule["resourceNames"]);
        for group in strings(&rule["apiGroups"]) {
            let group = if group.is_empty() {
                "core".to_owned()
            } else {
                group
            };
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    if names.is_empty() {
                        set.insert(format!("{group}/{resource} {verb}"));
                    }
                    for name in &names {
                        set.insert(format!("{group}/{resource}/{name} {verb}"));
                    }
                }
            }
        }
    }
    set
}

fn set_of(rules: &[&str]) -> BTreeSet<String> {
    rules.iter().map(|r| (*r).to_owned()).collect()
}

/// Invariants of every rendering: no wildcards, no way to delete or patch Secrets (delete only
/// of the release namespace's stored-event ConfigMaps), nothing
/// outside the operator's own resources, and every binding names the chart's ServiceAccount.
fn assert_least_privilege(r: &Rendered, service_account: &str) {
    const ALLOWED: &[&str] = &[
        "zoom-operator.io/zoomconnections",
        "zoom-operator.io/zoomconnections/status",
        "core/secrets",
        "core/configmaps",
        "core/services",
        "events.k8s.io/events",
        "coordination.k8s.io/leases",
    ];
    // Resources the chart may grant by name only (resourceNames).
    const BY_NAME: &[&str] = &[
        "core/secrets/",
        "coordination.k8s.io/leases/",
        "networking.k8s.io/ingresses/",
    ];
    for role in r
        .of_kind("ClusterRole")
        .into_iter()
        .chain(r.of_kind("Role"))
    {
        let who = format!(
            "{} {}",
            str_of(&role["kind"]),
            str_of(&role["metadata"]["name"])
        );
        for rule in role["rules"].as_sequence().expect("rules") {
            assert!(rule["nonResourceURLs"].is_null(), "{who}: nonResourceURLs");
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                assert!(
                    !strings(&rule[field]).iter().any(|s| s.contains('*')),
                    "{who}: wildcard in {field}: {rule:?}"
                );
            }
        }
        for entry in rule_set(role) {
            let (target, verb) = entry.split_once(' ').expect("entry");
            assert!(
                ALLOWED.contains(&target)
                    || BY_NAME.iter().any(|prefix| target.starts_with(prefix)),
                "{who}: {entry} is not something the operator uses"
            );
            // Deleting is for delivered events only, in the release namespace.
            let stored_events = target == "core/configmaps" && str_of(&role["kind"]) == "Role";
            assert!(verb != "delete" || stored_events, "{who}: {entry}");
            assert!(
                !["deletecollection", "escalate", "bind", "impersonate"].contains(&verb),
                "{who}: {entry}"
            );
            if target.starts_with("core/secrets") {
                assert_ne!(verb, "patch", "{who}: nothing patches Secrets");
            }
        }
    }
    for binding in r
        .of_kind("ClusterRoleBinding")
        .into_iter()
        .chain(r.of_kind("RoleBinding"))
    {
        let subjects = binding["subjects"].as_sequence().expect("subjects");
        assert_eq!(subjects.len(), 1, "{binding:?}");
        assert_eq!(str_of(&subjects[0]["kind"]), "ServiceAccount");
        assert_eq!(str_of(&subjects[0]["name"]), service_account);
        assert_eq!(str_of(&subjects[0]["namespace"]), RELEASE_NS);
    }
}

fn app_version() -> String {
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    assert_eq!(str_of(&chart["apiVersion"]), "v2");
    str_of(&chart["appVersion"]).to_owned()
}

// ---------------------------------------------------------------------------------------------
// without a cluster
// ---------------------------------------------------------------------------------------------

#[test]
fn chart_ships_exactly_the_generated_crd() {
    let chart = std::fs::read_to_string(repo_root().join(CHART_CRD)).expect("chart CRD exists");
    let committed = std::fs::read_to_string(repo_root().join(CRD)).expect("crds/ CRD exists");
    assert!(
        chart == committed,
        "{CHART_CRD} differs from {CRD}; copy it: cp {CRD} {CHART_CRD}"
    );
    // And both are what the code generates (tests/crd.rs checks crds/ too; this names the fix).
    let generated = zoom_operator::api::crd_yaml().expect("CRD renders");
    assert!(
        chart == generated,
        "{CHART_CRD} is not what `zoom-operator crd` prints; regenerate crds/ and copy it"
    );
    // `helm template --include-crds` ships that very document.
    let mut cmd = helm();
    cmd.args(["template", RELEASE])
        .arg(chart_dir())
        .arg("--include-crds");
    let docs = parse_docs(&run_ok(&mut cmd, "helm template --include-crds"));
    let want: Value = serde_yaml::from_str(&generated).expect("CRD parses");
    assert!(
        docs.contains(&want),
        "the rendered chart does not include the CRD"
    );
}

#[test]
fn chart_passes_helm_lint_strict() {
    let variants: &[&[&str]] = &[
        &[],
        &["operator.publicURL=https://zoom.example.com"],
        &[
            "operator.watchNamespaces={team-a}",
            "operator.defaultAppSecret=platform/zoom-default-app",
        ],
        &["operator.watchNamespaces={team-a,team-b}"],
        &[
            "ingress.enabled=true",
            "ingress.host=zoom.example.com",
            "ingress.tls.enabled=true",
            "ingress.className=nginx",
            "serviceMonitor.enabled=true",
        ],
        &["replicaCount=1", "operator.leaderElection=false"],
    ];
    for sets in variants {
        let mut cmd = helm();
        cmd.args(["lint", "--strict", "--namespace", RELEASE_NS])
            .arg(chart_dir());
        run_ok(
            with_sets(&mut cmd, sets),
            &format!("helm lint --strict {sets:?}"),
        );
    }
}

#[test]
fn default_values_render_a_highly_available_least_privilege_operator() {
    let r = render(&[]);
    assert_eq!(
        r.objects(),
        set_of(&[
            "ServiceAccount zoom-system/zoom-operator",
            "ClusterRole zoom-operator",
            "ClusterRoleBinding zoom-operator",
            "Role zoom-system/zoom-operator-own-namespace",
            "RoleBinding zoom-system/zoom-operator-own-namespace",
            "Service zoom-system/zoom-operator",
            "Service zoom-system/zoom-operator-metrics",
            "Deployment zoom-system/zoom-operator",
            "PodDisruptionBudget zoom-system/zoom-operator",
        ]),
        "no Ingress, no ServiceMonitor by default"
    );
    assert_least_privilege(&r, "zoom-operator");

    // RBAC: exactly what the code uses.
    assert_eq!(
        r.rules("ClusterRole", "", "zoom-operator"),
        set_of(CONNECTION_RULES)
    );
    assert_eq!(
        r.rules("Role", RELEASE_NS, "zoom-operator-own-namespace"),
        set_of(OWN_NAMESPACE_RULES)
    );
    let binding = r.get("ClusterRoleBinding", "", "zoom-operator");
    assert_eq!(str_of(&binding["roleRef"]["name"]), "zoom-operator");
}

#[test]
fn the_default_deployment_runs_two_leader_elected_replicas_probed_on_the_admin_port() {
    let r = render(&[]);
    // Deployment: two replicas behind leader election, the lease in the release namespace.
    let deployment = r.get("Deployment", RELEASE_NS, RELEASE);
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(2));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(str_of(&pod["serviceAccountName"]), "zoom-operator");
    let args = r.args();
    for want in [
        "run",
        "--listen=0.0.0.0:8080",
        "--metrics-listen=0.0.0.0:9090",
        "--log-format=json",
        "--leader-election=true",
        "--lease-namespace=$(POD_NAMESPACE)",
        "--zoom-oauth-url=https://zoom.us",
        "--zoom-api-url=https://api.zoom.us",
        "--max-pending-events=1000",
        "--max-pending-events-per-connection=100",
    ] {
        assert!(args.iter().any(|a| a == want), "missing {want} in {args:?}");
    }
    for absent in [
        "--public-url",
        "--ingress",
        "--watch-namespace",
        "--default-app-secret",
        "--allow-sink-host",
    ] {
        assert!(
            !args.iter().any(|a| a.starts_with(absent)),
            "{absent} in {args:?}"
        );
    }
    let container = r.container();
    assert_eq!(
        str_of(&container["image"]),
        format!("zoom-operator:{}", app_version())
    );
    assert_eq!(str_of(&container["imagePullPolicy"]), "IfNotPresent");
    let env = container["env"].as_sequence().expect("env");
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env
            .iter()
            .find(|e| str_of(&e["name"]) == name)
            .unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(str_of(&var["valueFrom"]["fieldRef"]["fieldPath"]), path);
    }

    // Ports and probes: the admin port serves /healthz and /readyz.
    let ports = container["ports"].as_sequence().expect("ports");
    let port = |name: &str| {
        ports
            .iter()
            .find(|p| str_of(&p["name"]) == name)
            .and_then(|p| p["containerPort"].as_u64())
    };
    assert_eq!((port("http"), port("metrics")), (Some(8080), Some(9090)));
    assert_eq!(
        str_of(&container["livenessProbe"]["httpGet"]["path"]),
        "/healthz"
    );
    assert_eq!(
        str_of(&container["livenessProbe"]["httpGet"]["port"]),
        "metrics"
    );
    assert_eq!(
        str_of(&container["readinessProbe"]["httpGet"]["path"]),
        "/readyz"
    );
    assert_eq!(
        str_of(&container["readinessProbe"]["httpGet"]["port"]),
        "metrics"
    );
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
}

#[test]
fn the_default_pods_are_hardened_spread_and_kept_up() {
    let r = render(&[]);
    let deployment = r.get("Deployment", RELEASE_NS, RELEASE);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = r.container();
    // Hardened: non-root, read-only root, no capabilities, RuntimeDefault seccomp.
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(
        str_of(&pod["securityContext"]["seccompProfile"]["type"]),
        "RuntimeDefault"
    );
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(strings(&sc["capabilities"]["drop"]), vec!["ALL"]);

    // Spread softly: preferred anti-affinity, ScheduleAnyway across zones.
    let anti = &pod["affinity"]["podAntiAffinity"];
    assert!(anti["requiredDuringSchedulingIgnoredDuringExecution"].is_null());
    assert_eq!(
        str_of(
            &anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
                ["topologyKey"]
        ),
        "kubernetes.io/hostname"
    );
    assert_eq!(
        str_of(&pod["topologySpreadConstraints"][0]["whenUnsatisfiable"]),
        "ScheduleAnyway"
    );

    // Services: the public listener and the metrics listener, by name.
    let public = r.get("Service", RELEASE_NS, "zoom-operator");
    assert_eq!(str_of(&public["spec"]["ports"][0]["name"]), "http");
    assert_eq!(public["spec"]["ports"][0]["port"].as_u64(), Some(8080));
    let metrics = r.get("Service", RELEASE_NS, "zoom-operator-metrics");
    assert_eq!(str_of(&metrics["spec"]["ports"][0]["name"]), "metrics");
    assert_eq!(metrics["spec"]["ports"][0]["port"].as_u64(), Some(9090));

    // A PDB keeps one replica up.
    let pdb = r.get("PodDisruptionBudget", RELEASE_NS, "zoom-operator");
    assert_eq!(pdb["spec"]["minAvailable"].as_u64(), Some(1));
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn every_rendered_flag_is_a_flag_of_the_binary() {
    let help = run_ok(
        Command::new(env!("CARGO_BIN_EXE_zoom-operator")).args(["run", "--help"]),
        "zoom-operator run --help",
    );
    let r = render(&[
        "operator.publicURL=https://zoom.example.com",
        "operator.ingress=web/edge",
        "operator.defaultAppSecret=platform/zoom-default-app",
        "operator.watchNamespaces={team-a,team-b}",
        "operator.allowSinkHosts={hooks.example.com}",
    ]);
    let args = r.args();
    assert_eq!(args.first().map(String::as_str), Some("run"));
    for arg in &args[1..] {
        let flag = arg.split('=').next().unwrap_or_default();
        assert!(
            flag.starts_with("--") && help.contains(&format!("{flag} ")),
            "the chart passes {arg}, but `zoom-operator run` has no {flag}:\n{help}"
        );
    }
}

#[test]
fn one_replica_has_no_disruption_budget_and_may_run_without_leader_election() {
    let r = render(&["replicaCount=1", "operator.leaderElection=false"]);
    assert!(r.of_kind("PodDisruptionBudget").is_empty());
    assert!(r.args().iter().any(|a| a == "--leader-election=false"));
    // No Lease rules without leader election; the signing key is still needed.
    assert_eq!(
        r.rules("Role", RELEASE_NS, "zoom-operator-own-namespace"),
        OWN_NAMESPACE_RULES
            .iter()
            .filter(|rule| !rule.starts_with("coordination.k8s.io/leases"))
            .map(|rule| (*rule).to_owned())
            .collect::<BTreeSet<String>>()
    );
    // Two replicas without leader election would rotate the same refresh tokens twice.
    let err = render_fails(&["operator.leaderElection=false"]);
    assert!(err.contains("needs operator.leaderElection"), "{err}");
}

/// The chart for `watchNamespaces` (and the default app in `platform`), which must be least
/// privilege and grant nothing cluster-wide.
fn render_namespaced(watch_namespaces: &str) -> Rendered {
    let r = render(&[
        &format!("operator.watchNamespaces={watch_namespaces}"),
        "operator.defaultAppSecret=platform/zoom-default-app",
    ]);
    assert_least_privilege(&r, "zoom-operator");
    assert!(r.of_kind("ClusterRole").is_empty(), "{:#?}", r.objects());
    assert!(r.of_kind("ClusterRoleBinding").is_empty());
    r
}

#[test]
fn watch_namespaces_get_roles_instead_of_a_cluster_role() {
    let r = render_namespaced("{team-a}");
    assert_eq!(
        r.rules("Role", "team-a", "zoom-operator-connections"),
        set_of(CONNECTION_RULES)
    );
    let binding = r.get("RoleBinding", "team-a", "zoom-operator-connections");
    assert_eq!(str_of(&binding["roleRef"]["kind"]), "Role");
    // The default app's Secret: that one Secret, read (and watched by name) only.
    assert_eq!(
        r.rules("Role", "platform", "zoom-operator-default-app"),
        set_of(&[
            "core/secrets/zoom-default-app get",
            "core/secrets/zoom-default-app list",
            "core/secrets/zoom-default-app watch",
        ])
    );
    let args = r.args();
    assert!(
        args.iter().any(|a| a == "--watch-namespace=team-a"),
        "{args:?}"
    );
    assert!(
        args.iter()
            .any(|a| a == "--default-app-secret=platform/zoom-default-app"),
        "{args:?}"
    );

    // Several namespaces: a Role in each and nothing cluster-wide, since the operator watches
    // each namespace on its own. A repeated namespace gets one Role and one flag.
    let r = render_namespaced("{team-a,team-b,team-a}");
    assert_eq!(
        r.objects()
            .into_iter()
            .filter(|o| o.starts_with("Role ") || o.starts_with("RoleBinding "))
            .collect::<BTreeSet<_>>(),
        set_of(&[
            "Role platform/zoom-operator-default-app",
            "Role team-a/zoom-operator-connections",
            "Role team-b/zoom-operator-connections",
            "Role zoom-system/zoom-operator-own-namespace",
            "RoleBinding platform/zoom-operator-default-app",
            "RoleBinding team-a/zoom-operator-connections",
            "RoleBinding team-b/zoom-operator-connections",
            "RoleBinding zoom-system/zoom-operator-own-namespace",
        ])
    );
    for ns in ["team-a", "team-b"] {
        assert_eq!(
            r.rules("Role", ns, "zoom-operator-connections"),
            set_of(CONNECTION_RULES)
        );
    }
    assert_eq!(
        r.rules("Role", "platform", "zoom-operator-default-app"),
        set_of(&[
            "core/secrets/zoom-default-app get",
            "core/secrets/zoom-default-app list",
            "core/secrets/zoom-default-app watch",
        ])
    );
    let flags: Vec<_> = r
        .args()
        .into_iter()
        .filter(|a| a.starts_with("--watch-namespace"))
        .collect();
    assert_eq!(
        flags,
        ["--watch-namespace=team-a", "--watch-namespace=team-b"]
    );
}

#[test]
fn the_ingress_routes_oauth_and_events_and_feeds_the_urls() {
    let r = render(&[
        "ingress.enabled=true",
        "ingress.host=zoom.example.com",
        "ingress.tls.enabled=true",
        "ingress.className=nginx",
        "operator.allowSinkHosts={hooks.example.com,events.example.com}",
    ]);
    assert_least_privilege(&r, "zoom-operator");
    let ingress = r.get("Ingress", RELEASE_NS, "zoom-operator");
    assert_eq!(str_of(&ingress["spec"]["ingressClassName"]), "nginx");
    assert_eq!(
        strings(&ingress["spec"]["tls"][0]["hosts"]),
        vec!["zoom.example.com"]
    );
    assert_eq!(
        str_of(&ingress["spec"]["tls"][0]["secretName"]),
        "zoom-operator-tls"
    );
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(str_of(&rule["host"]), "zoom.example.com");
    let paths: BTreeSet<String> = rule["http"]["paths"]
        .as_sequence()
        .expect("paths")
        .iter()
        .map(|p| {
            assert_eq!(str_of(&p["backend"]["service"]["name"]), "zoom-operator");
            assert_eq!(str_of(&p["backend"]["service"]["port"]["name"]), "http");
            format!("{} {}", str_of(&p["pathType"]), str_of(&p["path"]))
        })
        .collect();
    assert_eq!(
        paths,
        set_of(&["Prefix /oauth/", "Exact /zoom/event"]),
        "only OAuth and events are exposed"
    );

    // The operator derives its URLs from this Ingress and may watch exactly it.
    let args = r.args();
    assert!(
        args.iter()
            .any(|a| a == "--ingress=zoom-system/zoom-operator"),
        "{args:?}"
    );
    assert!(
        !args.iter().any(|a| a.starts_with("--public-url")),
        "{args:?}"
    );
    let sinks: Vec<_> = args
        .iter()
        .filter(|a| a.starts_with("--allow-sink-host"))
        .collect();
    assert_eq!(
        sinks,
        [
            "--allow-sink-host=hooks.example.com",
            "--allow-sink-host=events.example.com"
        ]
    );
    assert_eq!(
        r.rules("Role", RELEASE_NS, "zoom-operator-ingress"),
        set_of(&[
            "networking.k8s.io/ingresses/zoom-operator list",
            "networking.k8s.io/ingresses/zoom-operator watch",
        ])
    );

    // publicURL wins over the Ingress: no --ingress, no Ingress access.
    let r = render(&[
        "ingress.enabled=true",
        "operator.publicURL=https://zoom.example.com",
    ]);
    let args = r.args();
    assert!(
        args.iter()
            .any(|a| a == "--public-url=https://zoom.example.com"),
        "{args:?}"
    );
    assert!(!args.iter().any(|a| a.starts_with("--ingress")), "{args:?}");
    assert!(r
        .find("Role", RELEASE_NS, "zoom-operator-ingress")
        .is_none());
    assert!(r.find("Ingress", RELEASE_NS, "zoom-operator").is_some());

    // An Ingress managed elsewhere: the Role goes to its namespace.
    let r = render(&["operator.ingress=web/edge"]);
    assert!(r.args().iter().any(|a| a == "--ingress=web/edge"));
    assert_eq!(
        r.rules("Role", "web", "zoom-operator-ingress"),
        set_of(&[
            "networking.k8s.io/ingresses/edge list",
            "networking.k8s.io/ingresses/edge watch"
        ])
    );
    assert!(r.of_kind("Ingress").is_empty());

    // The ServiceMonitor scrapes the metrics Service only.
    let r = render(&[
        "serviceMonitor.enabled=true",
        "serviceMonitor.labels.release=prom",
    ]);
    let sm = r.get("ServiceMonitor", RELEASE_NS, "zoom-operator");
    assert_eq!(str_of(&sm["metadata"]["labels"]["release"]), "prom");
    assert_eq!(str_of(&sm["spec"]["endpoints"][0]["port"]), "metrics");
    assert_eq!(
        str_of(&sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]),
        "metrics"
    );
}

#[test]
fn bad_values_are_rejected_with_a_reason() {
    let cases: &[(&[&str], &str)] = &[
        (&["operator.ingress=edge"], "operator/ingress"),
        (
            &["operator.defaultAppSecret=zoom-default-app"],
            "operator/defaultAppSecret",
        ),
        (&["operator.logFormat=xml"], "logFormat"),
        (&["operator.publicURL=zoom.example.com"], "publicURL"),
        (&["operator.watchNamespace={team-a}"], "watchNamespace"),
        (
            &["ingress.enabled=true", "ingress.tls.enabled=true"],
            "ingress.tls.enabled needs ingress.host",
        ),
        (&["podAntiAffinity=sometimes"], "podAntiAffinity"),
    ];
    for (sets, why) in cases {
        let err = render_fails(sets);
        assert!(
            err.contains(why),
            "{sets:?}: expected an error about {why}, got:\n{err}"
        );
    }
}

#[test]
fn examples_pass_the_operators_own_validation() {
    let mut connections = 0;
    for file in example_files() {
        let text = std::fs::read_to_string(&file).expect("read example");
        let docs = parse_docs(&text);
        assert!(!docs.is_empty(), "{} is empty", file.display());
        for doc in docs {
            assert!(
                doc["metadata"]["namespace"].is_null(),
                "{}: examples are applied with -n; leave metadata.namespace out",
                file.display()
            );
            if str_of(&doc["kind"]) != "ZoomConnection" {
                continue;
            }
            let zc: ZoomConnection = serde_yaml::from_value(doc).expect("a ZoomConnection");
            if let Err(e) = zoom_operator::controller::validate(&zc) {
                panic!("{}: {e}", file.display());
            }
            connections += 1;
        }
    }
    assert!(
        connections >= 5,
        "expected the examples to hold at least 5 connections, found {connections}"
    );
}

fn example_files() -> Vec<PathBuf> {
    let dir = repo_root().join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let names: BTreeSet<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for want in [
        "private-oauth.yaml",
        "server-to-server.yaml",
        "default-oauth.yaml",
        "events-sink.yaml",
    ] {
        assert!(
            names.contains(want),
            "examples/{want} is missing; found {names:?}"
        );
    }
    files
}

// ---------------------------------------------------------------------------------------------
// against the local control plane
// ---------------------------------------------------------------------------------------------

/// The install tests run one at a time: an operator watching all namespaces would otherwise
/// also reconcile the other test's connections.
static INSTALLS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[test]
fn examples_are_accepted_by_the_api_server() {
    let cp = control_plane();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ns = runtime.block_on(async { namespace(&client().await, "examples").await });
    for file in example_files() {
        let out = run_ok(
            Command::new("kubectl")
                .env("KUBECONFIG", &cp.kubeconfig)
                .args(["apply", "--dry-run=server", "-n", &ns, "-f"])
                .arg(&file)
                .stdin(Stdio::null()),
            &format!("kubectl apply --dry-run=server -f {}", file.display()),
        );
        assert!(
            out.contains("(server dry run)"),
            "{}: {out}",
            file.display()
        );
    }
}

/// `helm install` of the chart into `ns`, as release `release`.
fn helm_install(release: &str, ns: &str, sets: &[&str]) {
    let cp = control_plane();
    let mut cmd = helm();
    cmd.args(["install", release])
        .arg(chart_dir())
        .args(["--namespace", ns, "--kubeconfig"])
        .arg(&cp.kubeconfig);
    let out = run_ok(
        with_sets(&mut cmd, sets),
        &format!("helm install {release} {sets:?}"),
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(out.contains("kubectl get zc"), "NOTES.txt is shown: {out}");
}

fn helm_uninstall(release: &str, ns: &str) {
    let cp = control_plane();
    let mut cmd = helm();
    cmd.args(["uninstall", release, "--namespace", ns, "--kubeconfig"])
        .arg(&cp.kubeconfig);
    run_ok(&mut cmd, &format!("helm uninstall {release}"));
}

/// A kubeconfig that authenticates as ServiceAccount `ns/name`, with the token the
/// kube-controller-manager issued for it (a token Secret, as 1.20 does).
async fn service_account_kubeconfig(client: &Client, ns: &str, name: &str) -> PathBuf {
    let cp = control_plane();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let token = wait_listed(
        &secrets,
        &ListParams::default(),
        &format!("a token Secret for ServiceAccount {ns}/{name}"),
        Duration::from_secs(60),
        |secrets| {
            secrets
                .iter()
                .filter(|s| s.type_.as_deref() == Some("kubernetes.io/service-account-token"))
                .filter(|s| {
                    s.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("kubernetes.io/service-account.name"))
                        .is_some_and(|n| n == name)
                })
                .find_map(|s| {
                    s.data
                        .as_ref()?
                        .get("token")
                        .map(|t| String::from_utf8_lossy(&t.0).into_owned())
                })
                .ok_or_else(|| format!("{} Secrets, none a token for {name}", secrets.len()))
        },
    )
    .await;
    let admin = kube::config::Kubeconfig::read_from(&cp.kubeconfig).expect("admin kubeconfig");
    let server = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .expect("server in the admin kubeconfig");
    let path = cp.dir.join(format!("kubeconfig-{ns}-{name}"));
    let yaml = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {{server: '{server}', insecure-skip-tls-verify: true}}
users:
- name: {name}
  user: {{token: '{token}'}}
contexts:
- name: {name}
  context: {{cluster: local, user: {name}, namespace: {ns}}}
current-context: {name}
"
    );
    std::fs::write(&path, yaml).expect("write kubeconfig");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path
}

/// The operator binary, started the way the chart's Deployment starts it (its args and
/// downward-API env), but as a local process authenticated as the chart's ServiceAccount.
struct ChartOperator {
    process: Process,
    metrics: String,
    probes: Vec<String>,
}

async fn start_operator_from_deployment(
    client: &Client,
    ns: &str,
    name: &str,
    kubeconfig: &Path,
) -> ChartOperator {
    let cp = control_plane();
    let deployment = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("the chart's Deployment exists");
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec");
    let container = pod.containers.first().expect("a container").clone();
    assert_eq!(pod.service_account_name.as_deref(), Some(name));
    let port = free_port();
    let metrics_port = free_port();
    let args: Vec<String> = container
        .args
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            if a.starts_with("--listen=") {
                format!("--listen=127.0.0.1:{port}")
            } else if a.starts_with("--metrics-listen=") {
                format!("--metrics-listen=127.0.0.1:{metrics_port}")
            } else {
                // What the kubelet does with $(VAR) references to the container's env.
                a.replace("$(POD_NAMESPACE)", ns)
            }
        })
        .collect();
    assert!(
        args.iter().any(|a| a == &format!("--lease-namespace={ns}")),
        "{args:?}"
    );
    let probes = [container.liveness_probe, container.readiness_probe]
        .into_iter()
        .flatten()
        .filter_map(|p| p.http_get.and_then(|h| h.path))
        .collect();
    let log = cp.dir.join(format!("chart-operator-{ns}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_zoom-operator"))
        .args(&args)
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", format!("{name}-test"))
        .env("POD_NAMESPACE", ns)
        .env("RUST_LOG", "info,zoom_operator=debug")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("spawn zoom-operator");
    ChartOperator {
        process: Process {
            child,
            log,
            name: format!("zoom-operator as {ns}/{name}"),
        },
        metrics: format!("http://127.0.0.1:{metrics_port}"),
        probes,
    }
}

impl ChartOperator {
    /// The Deployment's probe paths answer 200 on the admin port.
    async fn wait_probes_ok(&self) {
        assert_eq!(
            self.probes,
            ["/healthz", "/readyz"],
            "liveness and readiness probe paths"
        );
        for path in &self.probes {
            let url = format!("{}{path}", self.metrics);
            eventually(&format!("GET {url} = 200"), Duration::from_secs(30), || {
                let url = url.clone();
                async move {
                    match reqwest::get(&url).await {
                        Ok(r) if r.status() == 200 => Ok(()),
                        Ok(r) => Err(format!("HTTP {}", r.status())),
                        Err(e) => Err(e.to_string()),
                    }
                }
            })
            .await;
        }
    }

    /// Nothing the operator did was refused.
    fn assert_never_forbidden(&self) {
        let logs = self.process.logs();
        let refused: Vec<&str> = logs
            .lines()
            .filter(|l| {
                // kube's API errors carry `reason: "Forbidden"`; a bare "403" would also
                // match timestamps.
                l.to_ascii_lowercase().contains("forbidden")
            })
            .collect();
        assert!(
            refused.is_empty(),
            "the operator was refused something:\n{}",
            refused.join("\n")
        );
    }
}

/// `kubectl auth can-i ARGS` with `kubeconfig`: the answer for that identity.
fn can_i(kubeconfig: &Path, args: &[&str]) -> bool {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(["auth", "can-i"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl auth can-i");
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if answer.starts_with("yes") {
        true
    } else if answer.starts_with("no") {
        false
    } else {
        panic!(
            "kubectl auth can-i {args:?}: unexpected answer {answer:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// Resource and flag of the `kubectl auth can-i` rows below, short so a row fits a line.
const ZC: &str = "zoomconnections.zoom-operator.io";
const STATUS: &str = "--subresource=status";

fn assert_can(kubeconfig: &Path, cases: &[&[&str]], expected: bool) {
    let wrong: Vec<String> = cases
        .iter()
        .filter(|args| can_i(kubeconfig, args) != expected)
        .map(|args| args.join(" "))
        .collect();
    assert!(
        wrong.is_empty(),
        "the chart's ServiceAccount {} do these:\n  {}",
        if expected { "cannot" } else { "can" },
        wrong.join("\n  ")
    );
}

/// A chart installed for the test: its release namespace and name, and the operator started
/// as the Deployment starts it, authenticated as the chart's ServiceAccount.
struct Installed {
    release_ns: String,
    release: String,
    kubeconfig: PathBuf,
    operator: ChartOperator,
}

/// A release namespace, and a release name that contains the chart name (so every object is
/// named after it) and is unique (the ClusterRole is cluster-scoped).
async fn release_namespace(client: &Client) -> (String, String) {
    let release_ns = namespace(client, "zoom-system").await;
    let release = format!(
        "zoom-operator-{}",
        release_ns.trim_start_matches("zoom-system-")
    );
    (release_ns, release)
}

/// `helm install` with `sets` (`{release_ns}` replaced), then the operator from the
/// Deployment, its probes answering.
async fn install(
    client: &Client,
    (release_ns, release): (String, String),
    sets: &[&str],
) -> Installed {
    let sets: Vec<String> = sets
        .iter()
        .map(|s| s.replace("{release_ns}", &release_ns))
        .collect();
    helm_install(&release, &release_ns, &strs(&sets));
    Installed::start(client, release_ns, release).await
}

impl Installed {
    /// The operator of an installed release, as its Deployment starts it; its probes answer
    /// once every replica's index listed what its Roles allow.
    async fn start(client: &Client, release_ns: String, release: String) -> Installed {
        let kubeconfig = service_account_kubeconfig(client, &release_ns, &release).await;
        let operator =
            start_operator_from_deployment(client, &release_ns, &release, &kubeconfig).await;
        operator.wait_probes_ok().await;
        Installed {
            release_ns,
            release,
            kubeconfig,
            operator,
        }
    }

    fn uninstall(self) {
        drop(self.operator);
        helm_uninstall(&self.release, &self.release_ns);
    }
}

/// The OAuth app `id`/`s` as Secret `zoom-app` and connection `bot` in `ns`.
async fn oauth_bot(client: &Client, ns: &str) {
    put_secret(client, ns, "zoom-app", APP_KEYS).await;
    Zc::private_oauth("bot").apply(client, ns).await;
}

#[tokio::test]
async fn installed_chart_grants_the_operator_enough_and_no_more() {
    let _serial = INSTALLS.lock().await;
    let client = client().await;
    let names = release_namespace(&client).await;
    let tenant = namespace(&client, "team").await;
    let s2s = ZoomApp::s2s("s2s-id", "acc-1");
    let sim = start_zoom_sim(&[&s2s.sim_flag()]);
    let oauth_url = format!("operator.zoomOAuthURL={}", sim.url);
    let api_url = format!("operator.zoomAPIURL={}", sim.url);
    let installed = install(
        &client,
        names,
        &[
            "operator.publicURL=https://zoom.example.com",
            &oauth_url,
            &api_url,
        ],
    )
    .await;
    let (release_ns, release) = (&installed.release_ns, &installed.release);
    let (kubeconfig, operator) = (&installed.kubeconfig, &installed.operator);

    // Enough: a connection in another namespace is reconciled end to end; the operator's
    // Events, Lease and signing key are where the chart says.
    oauth_bot_is_reconciled(&client, &tenant).await;
    s2s_tokens_are_written_refreshed_and_revoked(&client, &tenant, &s2s).await;
    events_lease_and_signing_key(&client, &tenant, release_ns, release).await;
    operator.assert_never_forbidden();

    // No more: what the operator does not do, its ServiceAccount cannot do.
    assert_enough_and_no_more(kubeconfig, &tenant, release_ns);

    installed.uninstall();
    drop(sim);
}

/// An OAuth connection `bot` in `tenant` gets the chart's public URLs and awaits
/// authorization; the Secret watch notices a key removed at once, not at the next resync.
async fn oauth_bot_is_reconciled(client: &Client, tenant: &str) {
    let team = Zcs::new(client, tenant);
    oauth_bot(client, tenant).await;
    team.wait("bot", "CredentialsReady", "True", "Valid").await;
    let zc = team
        .wait_redirect_url("bot", "https://zoom.example.com/oauth/redirect/zoom")
        .await;
    let status = zc.status.expect("status");
    assert_eq!(
        status.event_url.as_deref(),
        Some("https://zoom.example.com/zoom/event")
    );
    assert!(
        status
            .authorize_url
            .as_deref()
            .is_some_and(|u| u.starts_with(&format!(
                "https://zoom.example.com/oauth/start/zoom/{tenant}/bot?ticket="
            ))),
        "{:?}",
        status.authorize_url
    );
    team.wait("bot", "Authorized", "False", "AwaitingAuthorization")
        .await;

    // The Secret watch works: removing a key is noticed at once, not at the next resync.
    put_secret(client, tenant, "zoom-app", &[("clientId", "id")]).await;
    team.wait("bot", "CredentialsReady", "False", "MissingKey")
        .await;
}

/// Token Secret writes, a forced refresh, the revoke finalizer: a Server-to-Server
/// connection against zoom-sim (the chart's zoomOAuthURL/zoomAPIURL values).
async fn s2s_tokens_are_written_refreshed_and_revoked(
    client: &Client,
    tenant: &str,
    s2s: &ZoomApp,
) {
    s2s.secret("zoom-s2s").put(client, tenant).await;
    Zc::s2s("s2s")
        .credentials("zoom-s2s")
        .revoke_on_delete()
        .apply(client, tenant)
        .await;
    Zcs::new(client, tenant).wait_ready("s2s").await;
    let access_token = |s: &Secret| secret_key(s, "access_token").unwrap_or_default();
    let first = token_secret(client, tenant, "s2s")
        .await
        .expect("the token Secret was created");
    assert!(!access_token(&first).is_empty());
    let zcs: Api<ZoomConnection> = Api::namespaced(client.clone(), tenant);
    let zc = zcs.get("s2s").await.expect("get");
    assert!(
        zc.metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == "zoom-operator.io/revoke"),
        "revokeOnDelete adds the finalizer"
    );
    request_refresh(client, tenant, "s2s", "chart-test").await;
    let before = access_token(&first);
    eventually(
        "a refreshed token in the token Secret",
        Duration::from_secs(60),
        || async {
            match token_secret(client, tenant, "s2s").await {
                Some(now) if access_token(&now) != before => Ok(()),
                Some(_) => Err("same access token".to_owned()),
                None => Err("no token Secret".to_owned()),
            }
        },
    )
    .await;
    zcs.delete("s2s", &kube::api::DeleteParams::default())
        .await
        .expect("delete");
    wait_deleted(
        &zcs,
        "s2s",
        "s2s to be gone (finalizer removed)",
        Duration::from_secs(60),
    )
    .await;
}

/// Events were recorded (events.k8s.io/v1) in `tenant`; the Lease is held and the signing
/// key exists in the release namespace.
async fn events_lease_and_signing_key(
    client: &Client,
    tenant: &str,
    release_ns: &str,
    release: &str,
) {
    wait_event(
        client,
        tenant,
        "an Event about bot from zoom-operator",
        |e| {
            e.reporting_controller.as_deref() == Some("zoom-operator")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("bot")
        },
    )
    .await;
    let holder = lease_holder(client, release_ns)
        .await
        .expect("the leader Lease is in the release namespace");
    assert!(
        holder.starts_with(&format!("{release}-test")),
        "holder {holder:?}"
    );
    Api::<Secret>::namespaced(client.clone(), release_ns)
        .get("zoom-operator-signing-key")
        .await
        .expect("the signing key is in the release namespace");
}

/// The ServiceAccount can do what the operator does in `tenant` and the release namespace,
/// and nothing more.
fn assert_enough_and_no_more(kubeconfig: &Path, tenant: &str, release_ns: &str) {
    let (t, r) = (tenant, release_ns);
    assert_can(
        kubeconfig,
        &[
            &["get", "secrets", "-n", t],
            &["update", "secrets", "-n", t],
            &["watch", "secrets", "-A"],
            &["patch", ZC, "-n", t],
            &["patch", ZC, STATUS, "-n", t],
            &["create", "events.events.k8s.io", "-n", t],
            &["create", "leases.coordination.k8s.io", "-n", r],
            &[
                "update",
                "leases.coordination.k8s.io/zoom-operator-leader",
                "-n",
                r,
            ],
        ],
        true,
    );
    assert_can(
        kubeconfig,
        &[
            &["delete", "secrets", "-n", t],
            &["delete", "secrets", "-n", r],
            &["deletecollection", "secrets", "-n", t],
            &["patch", "secrets", "-n", t],
            &["create", "pods", "-n", t],
            &["get", "pods", "-n", t],
            &["get", "configmaps", "-n", t],
            &["list", "nodes"],
            &["create", "namespaces"],
            &["delete", ZC, "-n", t],
            &["update", ZC, "-n", t],
            &["create", ZC, "-n", t],
            &["create", "events", "-n", t],
            &["create", "leases.coordination.k8s.io", "-n", t],
            &[
                "update",
                "leases.coordination.k8s.io/someone-elses-lease",
                "-n",
                r,
            ],
            &["list", "ingresses.networking.k8s.io", "-A"],
            &["create", "clusterrolebindings"],
            &["impersonate", "serviceaccounts", "-n", r],
        ],
        false,
    );
}

#[tokio::test]
async fn installed_chart_for_one_namespace_behind_its_ingress() {
    let _serial = INSTALLS.lock().await;
    let client = client().await;
    let names = release_namespace(&client).await;
    let tenant = namespace(&client, "team").await;
    let team = Zcs::new(&client, &tenant);
    let elsewhere = namespace(&client, "unwatched").await;
    // The default app lives in the release namespace, outside the one watched namespace: the
    // operator reads and watches that one Secret by name.
    put_secret(&client, &names.0, "zoom-default-app", DEFAULT_APP_KEYS).await;
    let watch = format!("operator.watchNamespaces={{{tenant}}}");
    let installed = install(
        &client,
        names,
        &[
            &watch,
            "operator.defaultAppSecret={release_ns}/zoom-default-app",
            "ingress.enabled=true",
            "ingress.host=zoom-ingress.example.com",
            "ingress.tls.enabled=true",
        ],
    )
    .await;
    let (release_ns, release) = (&installed.release_ns, &installed.release);
    let (kubeconfig, operator) = (&installed.kubeconfig, &installed.operator);

    // The URLs come from the chart's Ingress (TLS host), read through the one-Ingress Role.
    for ns in [&tenant, &elsewhere] {
        oauth_bot(&client, ns).await;
    }
    team.wait_redirect_url(
        "bot",
        "https://zoom-ingress.example.com/oauth/redirect/zoom",
    )
    .await;
    team.wait("bot", "CredentialsReady", "True", "Valid").await;
    team.wait("bot", "URLsReady", "True", "Ready").await;
    // DefaultOAuth reads the default app through its one-Secret Role.
    Zc::default_oauth("shared").apply(&client, &tenant).await;
    team.wait("shared", "CredentialsReady", "True", "Valid")
        .await;
    operator.assert_never_forbidden();
    // The unwatched namespace is left alone.
    let other = Api::<ZoomConnection>::namespaced(client.clone(), &elsewhere)
        .get("bot")
        .await
        .expect("get");
    assert!(
        other.status.is_none(),
        "{elsewhere}/bot was reconciled: {:?}",
        other.status
    );

    // Namespaced RBAC only: the watched namespace, the release namespace's Lease, signing key
    // and default app, and the one Ingress.
    let t = tenant.as_str();
    let r = release_ns.as_str();
    let e = elsewhere.as_str();
    let ingress = format!("ingresses.networking.k8s.io/{release}");
    assert_can(
        kubeconfig,
        &[
            &["get", "secrets", "-n", t],
            &["list", "secrets", "-n", t],
            &["get", "secrets/zoom-operator-signing-key", "-n", r],
            &["get", "secrets/zoom-default-app", "-n", r],
            &["watch", "secrets/zoom-default-app", "-n", r],
            &["watch", &ingress, "-n", r],
        ],
        true,
    );
    assert_can(
        kubeconfig,
        &[
            &["list", "secrets", "-A"],
            &["get", "secrets", "-n", e],
            &["create", "secrets", "-n", e],
            &["get", "secrets/some-other-secret", "-n", r],
            &["update", "secrets/zoom-default-app", "-n", r],
            &["list", "secrets", "-n", r],
            &["list", ZC, "-A"],
            &["patch", ZC, "-n", e],
            &["list", "ingresses.networking.k8s.io", "-n", r],
            &["get", "ingresses.networking.k8s.io/other", "-n", r],
            &["create", "events.events.k8s.io", "-n", e],
        ],
        false,
    );

    installed.uninstall();
}

#[tokio::test]
async fn installed_chart_for_several_namespaces() {
    let _serial = INSTALLS.lock().await;
    let client = client().await;
    let (release_ns, release) = release_namespace(&client).await;
    let team_a = namespace(&client, "team-a").await;
    let team_b = namespace(&client, "team-b").await;
    let elsewhere = namespace(&client, "unwatched").await;
    // The default app lives in the release namespace, outside both watched namespaces, and
    // lacks its client secret at first.
    put_secret(
        &client,
        &release_ns,
        "zoom-default-app",
        &[("clientId", "default-id")],
    )
    .await;
    let watch = format!("operator.watchNamespaces={{{team_a},{team_b}}}");
    let default_app = format!("operator.defaultAppSecret={release_ns}/zoom-default-app");
    helm_install(
        &release,
        &release_ns,
        &[
            &watch,
            &default_app,
            "operator.publicURL=https://zoom.example.com",
        ],
    );
    // Roles only: nothing cluster-wide is bound to the operator's ServiceAccount.
    let cluster_bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let bound: Vec<String> = cluster_bindings
        .list(&ListParams::default())
        .await
        .expect("list ClusterRoleBindings")
        .items
        .into_iter()
        .filter(|b| {
            b.subjects.iter().flatten().any(|s| {
                s.kind == "ServiceAccount"
                    && s.name == release
                    && s.namespace.as_deref() == Some(release_ns.as_str())
            })
        })
        .filter_map(|b| b.metadata.name)
        .collect();
    assert!(
        bound.is_empty(),
        "ClusterRoleBindings for the ServiceAccount: {bound:?}"
    );
    // Ready means every replica's webhook index listed both namespaces with these Roles.
    let installed = Installed::start(&client, release_ns.clone(), release).await;
    let (kubeconfig, operator) = (&installed.kubeconfig, &installed.operator);

    for ns in [&team_a, &team_b, &elsewhere] {
        oauth_bot(&client, ns).await;
        Zc::default_oauth("shared").apply(&client, ns).await;
    }
    for ns in [&team_a, &team_b] {
        let zcs = Zcs::new(&client, ns);
        zcs.wait("bot", "CredentialsReady", "True", "Valid").await;
        zcs.wait_redirect_url("bot", "https://zoom.example.com/oauth/redirect/zoom")
            .await;
        zcs.wait_no_default_app("shared").await;
    }
    // Completing the default app reaches both namespaces through its one-Secret Role (each
    // namespace's controller watches that Secret by name).
    put_secret(&client, &release_ns, "zoom-default-app", DEFAULT_APP_KEYS).await;
    for ns in [&team_a, &team_b] {
        let zcs = Zcs::new(&client, ns);
        zcs.wait("shared", "CredentialsReady", "True", "Valid")
            .await;
    }
    operator.assert_never_forbidden();
    let others = Api::<ZoomConnection>::namespaced(client.clone(), &elsewhere);
    for name in ["bot", "shared"] {
        let other = others.get(name).await.expect("get");
        assert!(
            other.status.is_none(),
            "{elsewhere}/{name} was reconciled: {:?}",
            other.status
        );
    }

    // Reads and writes in the watched namespaces only: nothing is listed or watched across
    // the cluster or in a third namespace.
    let (a, b, e, r) = (
        team_a.as_str(),
        team_b.as_str(),
        elsewhere.as_str(),
        release_ns.as_str(),
    );
    assert_can(
        kubeconfig,
        &[
            &["list", "secrets", "-n", a],
            &["watch", "secrets", "-n", b],
            &["update", "secrets", "-n", a],
            &["list", ZC, "-n", a],
            &["watch", ZC, "-n", b],
            &["patch", ZC, STATUS, "-n", b],
            &["watch", "secrets/zoom-default-app", "-n", r],
        ],
        true,
    );
    assert_can(
        kubeconfig,
        &[
            &["list", "secrets", "--all-namespaces"],
            &["watch", "secrets", "--all-namespaces"],
            &["list", ZC, "--all-namespaces"],
            &["watch", ZC, "--all-namespaces"],
            &["list", "secrets", "-n", e],
            &["watch", "secrets", "-n", e],
            &["get", "secrets", "-n", e],
            &["list", "secrets", "-n", r],
            &["list", ZC, "-n", e],
            &["create", "secrets", "-n", e],
            &["update", "secrets", "-n", e],
            &["patch", ZC, "-n", e],
            &["patch", ZC, STATUS, "-n", e],
            &["create", "events.events.k8s.io", "-n", e],
        ],
        false,
    );

    installed.uninstall();
}
