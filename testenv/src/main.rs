//! `testenv control-plane start|stop`: the local control plane (see the library) for shells:
//! `hack/run-local.sh`, `hack/bench-memory.sh`, and `hack/control-plane.sh start|stop`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use testenv::ControlPlane;

#[derive(Parser)]
#[command(about = "Test environments for zoom-operator")]
enum Cli {
    /// A local Kubernetes v1.20.2 control plane: etcd, kube-apiserver, kube-controller-manager.
    #[command(subcommand)]
    ControlPlane(ControlPlaneCommand),
}

#[derive(Subcommand)]
enum ControlPlaneCommand {
    /// Build the binaries if needed, then start a fresh control plane under DIR (replacing any
    /// there). When it is ready, print exactly one line on stdout: KUBECONFIG=DIR/kubeconfig.
    Start {
        /// Stop the control plane once process PID exits (a detached watchdog).
        #[arg(long, value_name = "PID")]
        watch_pid: Option<u32>,
        dir: PathBuf,
    },
    /// Stop the control plane in DIR (SIGTERM, SIGKILL after 5s), apiserver before etcd.
    /// Idempotent.
    Stop { dir: PathBuf },
}

fn main() -> ExitCode {
    let Cli::ControlPlane(command) = Cli::parse();
    let result = match command {
        ControlPlaneCommand::Start { watch_pid, dir } => match watch_pid {
            Some(pid) => ControlPlane::start_watching(&dir, pid),
            None => ControlPlane::start(&dir),
        }
        .map(|cp| {
            println!("KUBECONFIG={}", cp.kubeconfig.display());
            cp.keep_running();
        })
        .map_err(|e| e.to_string()),
        ControlPlaneCommand::Stop { dir } => testenv::stop(&dir)
            .map_err(|e| format!("stopping the control plane in {}: {e}", dir.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("[control-plane] ERROR: {message}");
            ExitCode::FAILURE
        }
    }
}
