//! Child processes and what they leave behind: servers that are stopped by their PID even when
//! a run fails (`Drop`), load generators bounded in time, a work directory removed at the end,
//! and the CPU times the kernel keeps per process.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A fresh directory under `/tmp`, removed with everything in it when dropped (unless kept).
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Creates `/tmp/PREFIX.PID.NANOS`, readable by everyone: Apache's workers run as www-data
    /// and must reach the document root and write their statistics file there.
    pub fn new(prefix: &str, keep: bool) -> io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = PathBuf::from(format!("/tmp/{prefix}.{}.{nanos}", std::process::id()));
        fs::create_dir(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        Ok(WorkDir { path, keep })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("flexsc-bench: work directory kept: {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// How a server ended when asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It exited by itself after SIGTERM, with status 0.
    Clean,
    /// It exited by itself after SIGTERM, with another status (or a signal).
    Status(Option<i32>),
    /// It had exited before it was asked to.
    Early(Option<i32>),
    /// It did not exit within the grace period and was SIGKILLed.
    Killed,
}

/// A server process (the PID is the server itself: `taskset` and `flexsc run` exec in place).
/// Dropping it stops it: SIGTERM, then SIGKILL after a grace period.
pub struct Server {
    child: Child,
    /// The exit status, once reaped: from then on the PID may belong to another process.
    reaped: Option<ExitStatus>,
    grace: Duration,
}

impl Server {
    /// Starts `cmd` with stdout and stderr appended to `log`; `grace` bounds the wait after
    /// SIGTERM (MariaDB flushes its buffer pool, Apache joins 256 threads).
    pub fn spawn(mut cmd: Command, log: &Path, grace: Duration) -> io::Result<Self> {
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        Ok(Server {
            child,
            reaped: None,
            grace,
        })
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running (reaps it if it exited).
    pub fn running(&mut self) -> bool {
        if self.reaped.is_none() {
            self.reaped = self.child.try_wait().ok().flatten();
        }
        self.reaped.is_none()
    }

    /// Sends signal `sig` (a name such as `USR2`) to the server if it still runs. With the
    /// `kill` program rather than a raw `kill(2)`: the harness needs no `unsafe`.
    pub fn signal(&mut self, sig: &str) -> io::Result<()> {
        if !self.running() {
            return Err(io::Error::other("the server has exited"));
        }
        let st = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .stderr(Stdio::null())
            .status()?;
        if st.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill -s {sig} failed: {st}")))
        }
    }

    /// SIGTERM, then waits up to the grace period for it to exit, else SIGKILL.
    pub fn stop(&mut self) -> Stopped {
        if let Some(st) = self.reaped {
            return Stopped::Early(st.code());
        }
        if !self.running() {
            return Stopped::Early(self.reaped.and_then(|s| s.code()));
        }
        let _ = self.signal("TERM");
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if !self.running() {
                return match self.reaped.map(|s| s.code()) {
                    Some(Some(0)) => Stopped::Clean,
                    Some(code) => Stopped::Status(code),
                    None => Stopped::Status(None),
                };
            }
            sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.reaped = self.child.wait().ok();
        Stopped::Killed
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.stop();
        }
    }
}

/// A finished load generator (or helper) run.
pub struct Finished {
    /// Its exit status; `None`: it ran past its time limit and was killed.
    pub status: Option<ExitStatus>,
    /// Its stdout and stderr, as one text.
    pub output: String,
    /// Wall time from start to exit.
    pub elapsed: Duration,
}

impl Finished {
    /// Whether it exited by itself with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// A one-line reason for a failure: the status and the last line of the output.
    pub fn why(&self) -> String {
        let last = self
            .output
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        match self.status {
            None => format!("killed at its time limit; last output: {last}"),
            Some(s) => format!("{s}; last output: {last}"),
        }
    }
}

/// Runs `cmd` to completion, killed (SIGKILL, by its PID) if it runs longer than `limit`; its
/// output goes through the file `out` (a pipe could fill up and stall it).
pub fn run_bounded(cmd: &mut Command, limit: Duration, out: &Path) -> io::Result<Finished> {
    let file = File::create(out)?;
    let err = file.try_clone()?;
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| {
            let prog = cmd.get_program().to_string_lossy().into_owned();
            io::Error::new(e.kind(), format!("cannot run {prog}: {e}"))
        })?;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let output = String::from_utf8_lossy(&fs::read(out)?).into_owned();
    Ok(Finished {
        status,
        output,
        elapsed,
    })
}

/// User and system CPU time of process `pid`, all its threads (exited ones included), in clock
/// ticks: fields 14 and 15 of `/proc/PID/stat`.
pub fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count from its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// Busy and total CPU time of the whole machine so far, in clock ticks (the `cpu` line of
/// `/proc/stat`; idle and iowait are not busy).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails, the value on every Linux
/// architecture this runs on).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The CPUs this process may run on (`Cpus_allowed_list` of `/proc/self/status`).
pub fn allowed_cpus() -> Vec<usize> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("0")
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
            cpus.extend(a..=b);
        }
    }
    cpus
}

/// A cpulist for `taskset -c`: `0,1,2`.
pub fn cpulist(cpus: &[usize]) -> String {
    cpus.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The effective user id (from `/proc/self/status`, no `unsafe` needed).
pub fn euid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// The uid and gid of `user` from `/etc/passwd`.
pub fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Whether `prog` is found in `PATH` (or is a path to an executable file).
pub fn have(prog: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if prog.contains('/') {
        return exec(Path::new(prog));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| exec(&d.join(prog))))
}
