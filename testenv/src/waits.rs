//! Waiting for a component: poll its health until it holds, notice it dying (of a port clash,
//! which a retry with new ports fixes, or of anything else, which is an error with its log).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::processes::{log, Record};
use crate::Error;

/// Tries per component when another process takes a port between our check and its bind.
const PORT_ATTEMPTS: usize = 3;

/// How a wait for a component ended, when it did not fail.
pub(crate) enum Ready {
    Yes(u32),
    /// The process died of a port someone else took first; retry with other ports.
    PortClash,
}

/// Polls `check` every 100 ms until it holds. The process exiting for any other reason than a
/// port clash, or ZOOM_CONTROL_PLANE_TIMEOUT passing, is an error carrying its log's tail.
pub(crate) fn await_ready(
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
pub(crate) fn retry_on_port_clash<T>(
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

pub(crate) fn component_error(problem: impl Into<String>, log_path: &Path) -> Error {
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
pub(crate) fn curl(args: &[&str]) -> Option<String> {
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
