//! The committed CRD is exactly what the code generates (`zoom-operator crd`).

#[test]
fn committed_crd_matches_generated() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/zoomconnections.zoom-operator.io.yaml"
    );
    let committed = std::fs::read_to_string(path).expect("crds/ file exists");
    let generated = zoom_operator::api::crd_yaml().expect("renders");
    assert!(
        committed == generated,
        "crds/zoomconnections.zoom-operator.io.yaml is stale; regenerate it with `cargo run -- crd > {path}`"
    );
}

#[test]
fn crd_command_prints_the_same_yaml() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zoom-operator"))
        .arg("crd")
        .output()
        .expect("run zoom-operator crd");
    assert!(out.status.success());
    let generated = zoom_operator::api::crd_yaml().expect("renders");
    assert_eq!(String::from_utf8_lossy(&out.stdout), generated);
}

#[test]
fn flags_are_read_from_the_environment() {
    // An invalid value given only through the environment is reported against its flag,
    // which proves the variable is read (and that bad input gets a clear CLI error).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zoom-operator"))
        .arg("run")
        .env("ZOOM_OPERATOR_METRICS_LISTEN", "not-an-address")
        .output()
        .expect("run zoom-operator");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'not-an-address'") && stderr.contains("--metrics-listen"),
        "{stderr}"
    );
}
