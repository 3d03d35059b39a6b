//! testenv-watchdog PID STARTTIME DIR: waits until process PID (the one that started at
//! STARTTIME) is gone, however it ended, then stops the control plane in DIR. Started detached
//! by `ControlPlane::start_watching`, so a test binary killed mid-run, or a shell that asked
//! for a control plane, leaves nothing running. Std only: build.rs compiles it with rustc alone.

#[allow(dead_code)] // launching is the library's half of the module
mod processes;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(pid), Some(starttime), Some(dir), 3) = (
        args.first().and_then(|a| a.parse::<u32>().ok()),
        args.get(1).and_then(|a| a.parse::<u64>().ok()),
        args.get(2).map(PathBuf::from),
        args.len(),
    ) else {
        eprintln!("usage: testenv-watchdog PID STARTTIME DIR");
        return ExitCode::from(2);
    };
    // SIGTERM (from a stop of DIR) ends this process at once, sleeping or not.
    while processes::alive(pid, starttime) {
        std::thread::sleep(Duration::from_secs(1));
    }
    processes::log(&format!(
        "watched pid {pid} is gone; stopping the control plane in {}",
        dir.display()
    ));
    match processes::stop_dir(&dir, false) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            processes::log(&format!("ERROR: stopping {}: {e}", dir.display()));
            ExitCode::FAILURE
        }
    }
}
