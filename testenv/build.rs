//! Compiles src/watchdog.rs (std only) into OUT_DIR and tells the library where it is
//! (TESTENV_WATCHDOG): the control plane's watchdog must be an executable of its own, and a
//! library's users, the integration tests here, never get the library package's binaries built.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/watchdog.rs");
    println!("cargo:rerun-if-changed=src/processes.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let exe = out.join("testenv-watchdog");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition=2021",
            "--crate-type=bin",
            "--crate-name=testenv_watchdog",
        ])
        .args(["-C", "opt-level=1", "-o"])
        .arg(&exe)
        .arg("src/watchdog.rs")
        .status()
        .expect("run rustc");
    assert!(status.success(), "rustc src/watchdog.rs failed ({status})");
    println!("cargo:rustc-env=TESTENV_WATCHDOG={}", exe.display());
}
