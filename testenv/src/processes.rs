//! The processes of one control plane as DIR/pids records them ("NAME PID STARTTIME" a line, in
//! start order), and the one way they stop. Shared by the library and the watchdog executable,
//! which build.rs compiles on its own: std only.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
    fn setsid() -> i32;
}
const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// How long a process has between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// One line of DIR/pids. The start time guards against PID reuse: a recorded process is ours
/// only while /proc/PID/stat still shows that start time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub pid: u32,
    pub starttime: u64,
}

impl Record {
    pub fn of(name: &str, pid: u32) -> Record {
        Record {
            name: name.to_owned(),
            pid,
            starttime: starttime(pid).unwrap_or(0),
        }
    }

    pub fn parse(line: &str) -> Option<Record> {
        let mut fields = line.split_whitespace();
        let record = Record {
            name: fields.next()?.to_owned(),
            pid: fields.next()?.parse().ok()?,
            starttime: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(record)
    }

    pub fn line(&self) -> String {
        format!("{} {} {}", self.name, self.pid, self.starttime)
    }

    pub fn alive(&self) -> bool {
        alive(self.pid, self.starttime)
    }
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
pub fn starttime(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Drop "pid (comm) ": comm may contain spaces and parentheses.
    let rest = &stat[stat.rfind(") ")? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Still running (a zombie is not) and still the process that started at `starttime`.
pub fn alive(pid: u32, starttime: u64) -> bool {
    if self::starttime(pid) != Some(starttime) {
        return false;
    }
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .and_then(|s| s.trim_start().chars().next())
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Spawns `cmd` detached, as `name`: its own session (a Ctrl-C meant for the caller does not
/// reach it), stdin from /dev/null and no inherited descriptors, so a caller reading our
/// stdout to its end never hangs on it. Records it in DIR/pids.
pub fn launch(dir: &Path, name: &str, cmd: &mut Command) -> io::Result<Child> {
    // SAFETY: setsid is async-signal-safe, and the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| match setsid() {
            -1 => Err(io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    let child = cmd.stdin(std::process::Stdio::null()).spawn()?;
    record(dir, &Record::of(name, child.id()))?;
    Ok(child)
}

pub fn record(dir: &Path, record: &Record) -> io::Result<()> {
    let mut pids = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("pids"))?;
    writeln!(pids, "{}", record.line())
}

/// The order `stop_dir` stops DIR's processes in: the watchdog first (so it does not race the
/// stop), then the rest in reverse start order, so the apiserver can still reach etcd while it
/// shuts down (it hangs otherwise).
pub fn stop_order(pids: &str) -> Vec<Record> {
    let records: Vec<Record> = pids.lines().filter_map(Record::parse).collect();
    let (watchdogs, components): (Vec<_>, Vec<_>) =
        records.into_iter().partition(|r| r.name == "watchdog");
    watchdogs
        .into_iter()
        .chain(components.into_iter().rev())
        .collect()
}

/// Stops what DIR/pids lists (SIGTERM, SIGKILL after 5s), skipping this very process (the
/// watchdog stops the others), then drops etcd's data (~60 MB of preallocated WAL) and the pids
/// file; logs stay for post-mortems. Idempotent.
pub fn stop_dir(dir: &Path, quiet: bool) -> io::Result<()> {
    let pids = match fs::read_to_string(dir.join("pids")) {
        Ok(pids) => pids,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let running: Vec<Record> = stop_order(&pids)
        .into_iter()
        .filter(|r| r.pid != std::process::id() && r.alive())
        .collect();
    if !running.is_empty() && !quiet {
        log(&format!(
            "stopping {} process(es) of {}",
            running.len(),
            dir.display()
        ));
    }
    for r in &running {
        terminate(r);
    }
    match fs::remove_dir_all(dir.join("etcd")) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    fs::remove_file(dir.join("pids"))
}

/// Straight to fd 2: the test harness would capture `eprintln!` from a test thread.
pub fn log(message: &str) {
    let _ = writeln!(io::stderr(), "[control-plane] {message}");
}

/// SIGTERM, wait up to GRACE, then SIGKILL.
fn terminate(r: &Record) {
    let Ok(pid) = i32::try_from(r.pid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers; `alive` has just checked that the pid is ours.
    unsafe { kill(pid, SIGTERM) };
    let step = Duration::from_millis(100);
    for _ in 0..(GRACE.as_millis() / step.as_millis()) {
        if !r.alive() {
            return;
        }
        std::thread::sleep(step);
    }
    if r.alive() {
        log(&format!(
            "{} (pid {}) ignored SIGTERM for {}s; sending SIGKILL",
            r.name,
            r.pid,
            GRACE.as_secs()
        ));
        // SAFETY: as above.
        unsafe { kill(pid, SIGKILL) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_what_they_write() {
        let r = Record {
            name: "kube-apiserver".to_owned(),
            pid: 4242,
            starttime: 987654,
        };
        assert_eq!(Record::parse(&r.line()), Some(r));
        for bad in ["", "etcd", "etcd 12", "etcd x 1", "etcd 12 1 extra"] {
            assert_eq!(Record::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_watchdog_stops_first_then_components_in_reverse_start_order() {
        let pids = "watchdog 1 1\netcd 2 2\nkube-apiserver 3 3\n\nkube-controller-manager 4 4\n";
        let names: Vec<String> = stop_order(pids).into_iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            [
                "watchdog",
                "kube-controller-manager",
                "kube-apiserver",
                "etcd"
            ]
        );
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let st = starttime(me).expect("own /proc/self/stat");
        assert!(alive(me, st));
        assert!(!alive(me, st + 1));
        assert!(!alive(u32::MAX, st));
    }
}
