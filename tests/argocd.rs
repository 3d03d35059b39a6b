//! The Argo CD health check (`examples/argocd/health.lua`), run by a Lua 5.1 interpreter (the
//! dialect of Argo CD's gopher-lua) against ZoomConnection objects the operator really wrote
//! on the local control plane: Healthy when Ready, Progressing while awaiting authorization,
//! Degraded with the operator's message otherwise.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

/// `value` as a Lua table constructor, the shape Argo CD hands the script as `obj`.
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_literal(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// Every byte outside plain ASCII letters, digits and spaces as a decimal escape: no quoting
/// mistakes whatever the operator's messages contain.
fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b' ' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\{b:03}"));
        }
    }
    out.push('"');
    out
}

/// Runs the health check on `obj`: (status, message).
fn health(obj: &Value) -> (String, String) {
    let script = repo_root().join("examples/argocd/health.lua");
    let program = format!(
        "obj = {}\nlocal hs = dofile({})\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua_literal(obj),
        lua_string(&script.display().to_string()),
    );
    let mut child = Command::new("lua5.1")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.1 is needed for this test (apt-get install lua5.1)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(program.as_bytes())
        .expect("write program");
    let out = child.wait_with_output().expect("lua5.1");
    assert!(
        out.status.success(),
        "lua5.1 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (status, message) = text.split_once('\n').expect("two lines");
    (status.to_owned(), message.to_owned())
}

#[tokio::test]
async fn health_follows_the_real_status_of_connections() {
    let env = Env::new("argocd")
        .app(ZoomApp::s2s("s2s-id", "acc-1"))
        .operator(&["--public-url=https://zoom.example.com"])
        .start()
        .await;
    let (client, ns) = (&env.client, &env.ns);
    ZoomApp::oauth("oauth-id", "oauth-secret")
        .secret("oauth-app")
        .put(client, ns)
        .await;

    env.apply(&Zc::s2s("reporting")).await;
    let ready = env.wait_ready("reporting").await;
    let (status, _) = health(&serde_json::to_value(&ready).expect("json"));
    assert_eq!(status, "Healthy");

    env.apply(&Zc::private_oauth("sales-bot").credentials("oauth-app"))
        .await;
    let waiting = env
        .wait("sales-bot", "Ready", "False", "AwaitingAuthorization")
        .await;
    let (status, message) = health(&serde_json::to_value(&waiting).expect("json"));
    assert_eq!(status, "Progressing");
    assert!(message.starts_with("AwaitingAuthorization"), "{message}");

    env.apply(&Zc::private_oauth("broken").credentials("no-such-secret"))
        .await;
    let broken = env.wait("broken", "Ready", "False", "SecretNotFound").await;
    let operator_message = condition_message(&broken, "Ready");
    let (status, message) = health(&serde_json::to_value(&broken).expect("json"));
    assert_eq!(status, "Degraded");
    assert_eq!(message, format!("SecretNotFound: {operator_message}"));
    assert!(message.contains("no-such-secret"), "{message}");
}

#[test]
fn health_waits_for_the_operator_to_catch_up() {
    let cases = [
        (
            json!({"metadata": {"generation": 1}}),
            "Progressing",
            "Waiting for zoom-operator to report status",
        ),
        (
            json!({"metadata": {"generation": 3}, "status": {"observedGeneration": 2,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "old"}]}}),
            "Progressing",
            "Waiting for zoom-operator to observe generation 3",
        ),
        (
            json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec",
                "message": "spec.refreshBefore: \"25h\" is more than 24h"}]}}),
            "Degraded",
            "InvalidSpec: spec.refreshBefore: \"25h\" is more than 24h",
        ),
    ];
    for (obj, want_status, want_message) in cases {
        let (status, message) = health(&obj);
        assert_eq!(
            (status.as_str(), message.as_str()),
            (want_status, want_message),
            "{obj}"
        );
    }
}

#[test]
fn argocd_cm_example_carries_the_tested_script() {
    let root = repo_root().join("examples/argocd");
    let script = std::fs::read_to_string(root.join("health.lua")).expect("health.lua");
    let cm = std::fs::read_to_string(root.join("argocd-cm.yaml")).expect("argocd-cm.yaml");
    let cm: Value = serde_yaml::from_str(&cm).expect("yaml");
    assert_eq!(
        cm["data"]["resource.customizations.health.zoom-operator.io_ZoomConnection"],
        Value::String(script),
        "examples/argocd/argocd-cm.yaml must embed examples/argocd/health.lua verbatim"
    );
}
