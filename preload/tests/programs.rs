//! Issue 4's native-vs-preload harness: the C and C++ programs in `tests/programs/` are compiled
//! at test time, run natively, then run again with `LD_PRELOAD` = the `libflexsc.so` cargo built
//! beside this test, and must give the same result: both exit 0, with identical stdout.
//!
//! Each program is deterministic and self-checking (see `tests/programs/check.h`): it prints only
//! what every correct run prints, ending with `ok <checksum>`, and exits non-zero with the reason
//! on stderr when a check fails. Each run is killed (with any process it forked) after
//! [`TIMEOUT`]. The preload run writes the library's statistics to a file (`FLEXSC_STATS`), shown
//! when it fails, and inherits the `FLEXSC_*` variables of the test's environment (so
//! `FLEXSC_BACKEND=uring cargo test --test programs` runs the programs on that backend), over
//! which a program's test may set its own (`main_green.c` runs on one carrier); the native run
//! has neither `LD_PRELOAD` nor `FLEXSC_*`.
//!
//! One test per program; cargo runs them in parallel, while each program's two runs are
//! sequential. A missing `cc`, `g++` or `libflexsc.so` fails its test with a message saying so.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one run of one program may take before it is killed and the test fails.
const TIMEOUT: Duration = Duration::from_secs(60);

// SAFETY: kill(2) as glibc declares it (pid_t is i32 on Linux). It reads and writes no memory of
// this process, so any arguments are safe: at worst it fails with ESRCH or EPERM.
unsafe extern "C" {
    safe fn kill(pid: i32, sig: i32) -> i32;
}

const SIGKILL: i32 = 9;

/// The directory of the programs' sources.
fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

/// `libflexsc.so` of this build. The test binary is `target/<profile>/deps/programs-<hash>`;
/// `cargo test` builds the package's lib (crate-type cdylib + rlib) as this test's dependency
/// into the same `deps/` directory, and only `cargo build` also copies it up to
/// `target/<profile>/`: the `deps/` copy is the one built with this test, the other one a
/// fallback.
fn preload_library() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("the test binary's directory");
    let candidates = [
        deps.join("libflexsc.so"),
        deps.parent().unwrap_or(deps).join("libflexsc.so"),
    ];
    let lib = candidates.iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "libflexsc.so is missing: looked for {} and {}. It is the flexsc-preload package's \
             lib target (crate-type cdylib), built with this test by `cargo test -p \
             flexsc-preload` (or by `cargo build -p flexsc-preload` in the same profile)",
            candidates[0].display(),
            candidates[1].display()
        )
    });
    lib.canonicalize().expect("canonicalize the library path")
}

/// A fresh directory for one program's binary and outputs; removed on drop unless kept (it is
/// kept, and named in the failure message, when a run fails).
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn new(tag: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "flexsc-programs-{}-{tag}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&path).expect("create the work directory");
        Self { path, keep: false }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Compiles `source` (C, or C++ when it ends in `.cpp`) into `out`.
fn compile(source: &Path, out: &Path) -> Result<(), String> {
    compile_with(source, out, &[])
}

/// As [`compile`], with `extra` arguments after the source (later flags override earlier ones,
/// libraries link in order).
fn compile_with(source: &Path, out: &Path, extra: &[String]) -> Result<(), String> {
    let cpp = source.extension().is_some_and(|e| e == "cpp");
    let (compiler, std) = if cpp {
        ("g++", "-std=c++17")
    } else {
        ("cc", "-std=gnu11")
    };
    let output = Command::new(compiler)
        .args([std, "-O2", "-g", "-pthread", "-Wall", "-Wextra", "-o"])
        .arg(out)
        .arg(source)
        .args(extra)
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(format!(
                "`{compiler}` is not installed: it is needed to build {} (on Debian: apt-get \
                 install {})",
                source.display(),
                if cpp { "g++" } else { "gcc libc6-dev" }
            ));
        }
        Err(e) => return Err(format!("could not run `{compiler}`: {e}")),
    };
    if !output.status.success() {
        return Err(format!(
            "`{compiler}` failed on {} ({}):\n{}",
            source.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// How a run ended.
#[derive(Debug)]
enum End {
    Exited(ExitStatus),
    /// Still running after this timeout: killed, with its process group.
    TimedOut(Duration),
}

/// One run of a program.
struct Run {
    label: &'static str,
    end: End,
    elapsed: Duration,
    stdout: String,
    stderr: String,
    /// Under the preload: the library's statistics file, if it wrote one.
    stats: Option<Option<String>>,
}

impl Run {
    fn succeeded(&self) -> bool {
        matches!(&self.end, End::Exited(s) if s.success())
    }

    fn describe_end(&self) -> String {
        match &self.end {
            End::TimedOut(t) => format!("did not finish within {t:.1?}: killed"),
            End::Exited(s) => match (s.code(), s.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(sig)) => format!(
                    "killed by signal {sig} ({}){}",
                    signal_name(sig),
                    if s.core_dumped() { ", core dumped" } else { "" }
                ),
                _ => format!("ended with {s}"),
            },
        }
    }

    /// Everything known about the run, for a failure message.
    fn report(&self) -> String {
        let mut r = format!(
            "--- {} run: {} after {:.2?}\n--- stdout:\n{}--- stderr:\n{}",
            self.label,
            self.describe_end(),
            self.elapsed,
            tail(&self.stdout),
            tail(&self.stderr)
        );
        match &self.stats {
            Some(Some(stats)) => r.push_str(&format!("--- FLEXSC_STATS:\n{}", tail(stats))),
            Some(None) => r.push_str("--- FLEXSC_STATS: no file written\n"),
            None => {}
        }
        r
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        31 => "SIGSYS",
        _ => "?",
    }
}

/// The last 16 KiB of a text (a runaway program's output would drown the message).
fn tail(s: &str) -> String {
    const MAX: usize = 16 * 1024;
    let mut t = if s.len() > MAX {
        let mut start = s.len() - MAX;
        while !s.is_char_boundary(start) {
            start += 1;
        }
        format!("[... {start} bytes cut ...]\n{}", &s[start..])
    } else {
        s.to_owned()
    };
    if !t.is_empty() && !t.ends_with('\n') {
        t.push('\n');
    }
    t
}

/// Waits for `child` up to `timeout`; after it, kills the child's whole process group (the
/// program and anything it forked) and reaps the child.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> End {
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    loop {
        match child.try_wait().expect("wait for the program") {
            Some(status) => return End::Exited(status),
            None if Instant::now() >= deadline => {
                let pgid = i32::try_from(child.id()).expect("pid fits pid_t");
                // The child leads its own process group (process_group(0)) and is not reaped
                // yet, so the group id cannot have been reused.
                kill(-pgid, SIGKILL);
                child.wait().expect("reap the killed program");
                return End::TimedOut(timeout);
            }
            None => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(20));
            }
        }
    }
}

/// Runs `binary` in `dir`, natively or under `preload`, with `timeout`.
fn run(
    label: &'static str,
    binary: &Path,
    dir: &Path,
    preload: Option<&Path>,
    timeout: Duration,
) -> Run {
    run_env(label, binary, dir, preload, &[], timeout)
}

/// As [`run`], the preload run with the variables `env` set (over the inherited ones).
fn run_env(
    label: &'static str,
    binary: &Path,
    dir: &Path,
    preload: Option<&Path>,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Run {
    let out_path = dir.join(format!("{label}.stdout"));
    let err_path = dir.join(format!("{label}.stderr"));
    let stats_path = dir.join(format!("{label}.stats"));
    let mut cmd = Command::new(binary);
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create the stdout file"))
        .stderr(File::create(&err_path).expect("create the stderr file"))
        .env_remove("LD_PRELOAD")
        .env_remove("FLEXSC_STATS")
        // its own process group: a timeout kills whatever it forked too
        .process_group(0);
    match preload {
        Some(lib) => {
            cmd.env("LD_PRELOAD", lib).env("FLEXSC_STATS", &stats_path);
            cmd.envs(env.iter().copied());
        }
        None => {
            for (var, _) in std::env::vars_os() {
                if var.to_string_lossy().starts_with("FLEXSC_") {
                    cmd.env_remove(var);
                }
            }
        }
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", binary.display()));
    let end = wait_with_timeout(&mut child, timeout);
    let elapsed = start.elapsed();
    if !matches!(&end, End::Exited(s) if s.success()) {
        // A failed program may have left forked children behind (the leader is reaped, but a
        // group with members keeps its id): kill them. ESRCH when there are none.
        let pgid = i32::try_from(child.id()).expect("pid fits pid_t");
        kill(-pgid, SIGKILL);
    }
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    Run {
        label,
        end,
        elapsed,
        stdout: read(&out_path),
        stderr: read(&err_path),
        stats: preload.map(|_| {
            fs::read(&stats_path)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        }),
    }
}

/// The verdict on a program's two runs: the native run must succeed with a final `ok ` line (or
/// the program itself is wrong), and the preload run must succeed with the same stdout.
fn compare(native: &Run, preload: &Run) -> Result<(), String> {
    if !native.succeeded() {
        return Err(format!(
            "the NATIVE run failed (the program or this machine is at fault, not the \
             preload)\n{}",
            native.report()
        ));
    }
    let last = native.stdout.lines().last().unwrap_or("");
    if !last.starts_with("ok ") {
        return Err(format!(
            "the native run's last line is {last:?}, not \"ok <checksum>\"\n{}",
            native.report()
        ));
    }
    if !preload.succeeded() {
        return Err(format!(
            "the PRELOAD run failed (the native run passed)\n{}\n{}",
            preload.report(),
            native.report()
        ));
    }
    if preload.stdout != native.stdout {
        return Err(format!(
            "the PRELOAD run's stdout differs from the native run's\n{}\n{}",
            preload.report(),
            native.report()
        ));
    }
    Ok(())
}

/// Compiles `tests/programs/<source>`, runs it natively and under the preload, and compares.
fn check_program(source: &str) {
    check_program_posting(source, &[]);
}

/// The `name count` pairs of the last "system calls posted" line of a statistics file.
fn posted_calls(stats: &str) -> Vec<(String, u64)> {
    calls_of(stats, "system calls posted")
}

/// The `name count` pairs of the last line of a statistics file that starts with `prefix`.
fn calls_of(stats: &str, prefix: &str) -> Vec<(String, u64)> {
    let Some(line) = stats.lines().rev().find(|l| l.starts_with(prefix)) else {
        return Vec::new();
    };
    let list = line.split_once("): ").map_or("", |(_, l)| l);
    list.split(", ")
        .filter_map(|pair| {
            let (name, n) = pair.rsplit_once(' ')?;
            Some((name.to_string(), n.parse().ok()?))
        })
        .collect()
}

/// As [`check_program`], and the preload run's statistics must show each of `calls` posted
/// (exception-less) at least the given number of times: what the output of a program cannot
/// tell apart from a call that went to glibc.
fn check_program_posting(source: &str, calls: &[(&str, u64)]) {
    check_program_with(source, calls, &[], &[], &|_| Ok(Vec::new()), true);
}

/// As [`check_program`], the preload run with the variables `env` set (a single carrier, where
/// a thread blocking its carrier deadlocks the program: the timeout reports it).
fn check_program_env(source: &str, env: &[(&str, &str)]) {
    check_program_with(source, &[], &[], env, &|_| Ok(Vec::new()), true);
}

/// As [`check_program_posting`], after `prepare` built what the program needs in its work
/// directory (modules it loads), returning extra arguments for the program's own compilation.
fn check_program_built(
    source: &str,
    calls: &[(&str, u64)],
    prepare: &dyn Fn(&Path) -> Result<Vec<String>, String>,
) {
    check_program_with(source, calls, &[], &[], prepare, true);
}

/// As [`check_program_posting`], and each of `on_carrier` must have run on the carriers (the
/// hybrid rule) at least the given number of times.
fn check_program_calls(source: &str, calls: &[(&str, u64)], on_carrier: &[(&str, u64)]) {
    check_program_with(source, calls, on_carrier, &[], &|_| Ok(Vec::new()), true);
}

/// The verdict on a program that only runs under the preload (it uses libflexsc's own API): it
/// must succeed with a final `ok ` line.
fn preload_alone(preload: &Run) -> Result<(), String> {
    let last = preload.stdout.lines().last().unwrap_or("");
    if !preload.succeeded() || !last.starts_with("ok ") {
        return Err(format!(
            "the PRELOAD run failed (its last line is {last:?})\n{}",
            preload.report()
        ));
    }
    Ok(())
}

/// The harness itself: [`check_program_posting`] with the carrier counts of
/// [`check_program_calls`] and the preparation of [`check_program_built`]; without `native`,
/// the preload run alone ([`preload_alone`]).
fn check_program_with(
    source: &str,
    calls: &[(&str, u64)],
    on_carrier: &[(&str, u64)],
    env: &[(&str, &str)],
    prepare: &dyn Fn(&Path) -> Result<Vec<String>, String>,
    native: bool,
) {
    let src = programs_dir().join(source);
    assert!(src.is_file(), "{} is missing", src.display());
    let lib = preload_library();
    let stem = source.split('.').next().unwrap_or(source);
    let mut dir = WorkDir::new(stem);
    let binary = dir.path.join(stem);
    let t0 = Instant::now();
    if let Err(e) = prepare(&dir.path).and_then(|extra| compile_with(&src, &binary, &extra)) {
        panic!("{source}: {e}");
    }
    let compiled = t0.elapsed();
    let native = native.then(|| run("native", &binary, &dir.path, None, TIMEOUT));
    let preload = run_env("preload", &binary, &dir.path, Some(&lib), env, TIMEOUT);
    let verdict = match &native {
        Some(native) => compare(native, &preload),
        None => preload_alone(&preload),
    };
    let posted = verdict.and_then(|()| {
        let stats = preload.stats.clone().flatten().unwrap_or_default();
        let posted = posted_calls(&stats);
        let carrier = calls_of(&stats, "system calls run on the carriers");
        let checks = calls.iter().map(|c| (c, &posted, "posted")).chain(
            on_carrier
                .iter()
                .map(|c| (c, &carrier, "ran on the carriers")),
        );
        for (&(name, min), got, how) in checks {
            let n = got.iter().find(|(c, _)| c == name).map_or(0, |&(_, n)| n);
            if n < min {
                return Err(format!(
                    "the preload run {how} {name} {n} times, expected at least {min}\n{}",
                    preload.report()
                ));
            }
        }
        Ok(())
    });
    if let Err(e) = posted {
        dir.keep = true;
        panic!(
            "{source}: {e}\n(binary and outputs kept in {}; preload: {})",
            dir.path.display(),
            lib.display()
        );
    }
    println!(
        "{source}: compiled in {compiled:.2?}, native {}, preload {:.2?}: {}",
        native
            .as_ref()
            .map_or("not run".to_string(), |n| format!("{:.2?}", n.elapsed)),
        preload.elapsed,
        preload.stdout.lines().last().unwrap_or("")
    );
}

#[test]
fn lifecycle() {
    check_program("lifecycle.c");
}

#[test]
fn main_green() {
    // One carrier: main's blocking reads must park it (green thread 0), not block the carrier
    // the writer needs; the program checks it is green by its gettid.
    check_program_env(
        "main_green.c",
        &[("FLEXSC_CORES", "1"), ("FLEXSC_MAIN", "green")],
    );
}

#[test]
fn tls_errno() {
    check_program("tls_errno.c");
}

#[test]
fn sync() {
    check_program("sync.c");
}

#[test]
fn blocking() {
    check_program("blocking.c");
}

#[test]
fn echo() {
    check_program("echo.c");
}

#[test]
fn fork() {
    check_program("fork.c");
}

#[test]
fn signals() {
    check_program("signals.c");
}

#[test]
fn sigwait() {
    check_program("sigwait.c");
}

#[test]
fn cancel() {
    check_program("cancel.c");
}

#[test]
fn futex() {
    check_program("futex.c");
}

#[test]
fn stdthread() {
    check_program("stdthread.cpp");
}

#[test]
fn segv() {
    check_program("segv.c");
}

#[test]
fn join_np() {
    check_program("join_np.c");
}

#[test]
fn c11() {
    check_program("c11.c");
}

#[test]
fn sched() {
    check_program("sched.c");
}

#[test]
fn versions() {
    check_program("versions.c");
}

#[test]
fn spawn() {
    check_program("spawn.c");
}

#[test]
fn stat() {
    // stat.c's 8 threads each make 50 rounds of these calls on green threads.
    check_program_posting(
        "stat.c",
        &[
            ("newfstatat", 8 * 50 * 8),
            ("fstat", 8 * 50 * 3),
            ("statx", 8 * 50),
        ],
    );
}

#[test]
fn uring_wait() {
    check_program_built("uring_wait.c", &[], &|_| Ok(vec!["-ldl".into()]));
}

#[test]
fn sigsync() {
    check_program("sigsync.c");
}

#[test]
fn procsig() {
    check_program("procsig.c");
}

#[test]
fn dlopen_tls() {
    // The module, built once per TLS model; the program finds the global-dynamic one through
    // its RUNPATH ($ORIGIN: the work directory).
    check_program_built("dlopen_tls.c", &[], &|dir| {
        let module = programs_dir().join("dlopen_tls/module.c");
        for (name, model) in [("gd", "global-dynamic"), ("ie", "initial-exec")] {
            let out = dir.join(format!("libdltls_{name}.so"));
            let flags = ["-shared", "-fPIC"].map(String::from);
            let model = format!("-DMODEL=\"{model}\"");
            compile_with(&module, &out, &[&flags[..], &[model]].concat())?;
        }
        Ok(vec!["-ldl".into(), "-Wl,-rpath,$ORIGIN".into()])
    });
}

#[test]
fn compound() {
    // flexsc.h's functions exist only in libflexsc: no native run. Each of the 1 + 1 + 7 + 2 + 2
    // compounds the green thread runs is posted as one entry (counted as `other`: its number is
    // no Linux call's); the main thread's ran in-process before the runtime started.
    check_program_with(
        "compound.c",
        &[("other", 13)],
        &[],
        &[],
        &|_| {
            let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../flexsc-kmod/include");
            Ok(vec![format!("-I{}", include.display())])
        },
        false,
    );
}

#[test]
fn nonblock() {
    // Each descriptor that stops being non-blocking is read once with readv, which must be
    // posted (it waits); the EAGAIN rounds (100 each) must have run on the carrier.
    check_program_calls(
        "nonblock.c",
        &[("readv", 6)],
        &[
            ("read", 400),
            ("recvmsg", 100),
            ("recvfrom", 100),
            ("accept4", 100),
        ],
    );
}

#[test]
fn tune() {
    // The default hybrid rule is the tuner's: over more than a second of echoes it closes epochs
    // and probes the rule it has not chosen, so sends and receives on the non-blocking pairs run
    // both posted and on the carrier.
    check_program_calls(
        "tune.c",
        &[("sendto", 1000), ("recvfrom", 1000)],
        &[("sendto", 1000), ("recvfrom", 1000)],
    );
}

#[test]
fn map_cache() {
    // On by default: an unmapped file range stays mapped until it expires, and every mapping
    // still shows what the kernel would.
    check_program_env("map_cache.c", &[("FLEXSC_EXPECT_MAP_CACHE", "1")]);
}

#[test]
fn map_cache_off() {
    // FLEXSC_MAP_CACHE=0: every munmap unmaps at once.
    check_program_env("map_cache.c", &[("FLEXSC_MAP_CACHE", "0")]);
}

/// Every program in `tests/programs/` has a test above (a new one cannot be forgotten).
#[test]
fn every_program_has_a_test() {
    let listed = [
        "lifecycle.c",
        "main_green.c",
        "tls_errno.c",
        "sync.c",
        "blocking.c",
        "echo.c",
        "fork.c",
        "signals.c",
        "sigwait.c",
        "cancel.c",
        "stdthread.cpp",
        "futex.c",
        "c11.c",
        "join_np.c",
        "segv.c",
        "sched.c",
        "versions.c",
        "stat.c",
        "spawn.c",
        "dlopen_tls.c",
        "procsig.c",
        "sigsync.c",
        "uring_wait.c",
        "nonblock.c",
        "preempt.c",
        "compound.c",
        "tune.c",
        "map_cache.c",
    ];
    let mut found: Vec<String> = fs::read_dir(programs_dir())
        .expect("read tests/programs")
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".c") || n.ends_with(".cpp"))
        .collect();
    found.sort();
    let mut listed: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        found, listed,
        "tests/programs and the tests of programs.rs differ"
    );
}

/// The harness itself: a stdout that differs under the preload, a failing exit status and a
/// hang (with a forked child) are each reported as failures, and a hang is killed with its
/// whole process group.
#[test]
fn harness_catches_divergence_failure_and_hangs() {
    let lib = preload_library();
    let dir = WorkDir::new("selftest");
    let source = dir.path.join("selftest.c");
    fs::write(
        &source,
        r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    (void)argc;
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (strcmp(name, "diverge") == 0) {
        printf("ok %d\n", getenv("LD_PRELOAD") != NULL);
        return 0;
    }
    if (strcmp(name, "fail") == 0) {
        printf("ok 1\n");
        return getenv("LD_PRELOAD") != NULL ? 3 : 0;
    }
    /* hang: a forked child and the parent both sleep; the child's pid is printed first */
    pid_t pid = fork();
    if (pid == 0) { for (;;) pause(); }
    printf("%d\n", (int)pid);
    fflush(stdout);
    for (;;) pause();
}
"#,
    )
    .unwrap();
    let mut bins = Vec::new();
    for name in ["diverge", "fail", "hang"] {
        let bin = dir.path.join(name);
        compile(&source, &bin).unwrap_or_else(|e| panic!("{e}"));
        bins.push(bin);
    }

    let native = run("native", &bins[0], &dir.path, None, TIMEOUT);
    let preload = run("preload", &bins[0], &dir.path, Some(&lib), TIMEOUT);
    let err = compare(&native, &preload).expect_err("a differing stdout must fail");
    assert!(err.contains("stdout differs"), "{err}");

    let native = run("native", &bins[1], &dir.path, None, TIMEOUT);
    let preload = run("preload", &bins[1], &dir.path, Some(&lib), TIMEOUT);
    let err = compare(&native, &preload).expect_err("a failing preload run must fail");
    assert!(
        err.contains("PRELOAD run failed") && err.contains("exited with status 3"),
        "{err}"
    );
    let err = compare(&preload, &native).expect_err("a failing native run must fail");
    assert!(err.contains("NATIVE run failed"), "{err}");

    let hang = run(
        "native",
        &bins[2],
        &dir.path,
        None,
        Duration::from_millis(500),
    );
    assert!(matches!(hang.end, End::TimedOut(_)), "{}", hang.report());
    let err = compare(&hang, &hang).expect_err("a hang must fail");
    assert!(err.contains("did not finish within"), "{err}");
    let child: u32 = hang
        .stdout
        .trim()
        .parse()
        .expect("the hanging program's child pid");
    // The forked child was killed with the group: it disappears once its new parent reaps it
    // (or shows as a zombie until then).
    let gone = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        if stat.is_empty() || state == Some('Z') {
            break;
        }
        assert!(
            Instant::now() < gone,
            "the hanging program's forked child {child} survived the timeout kill: {stat}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Linking with `-lflexsc` in place of `-lpthread` (what `flexsc.pc` gives): the program runs on
/// green threads without `LD_PRELOAD` (its statistics count them) and prints what it prints
/// natively.
#[test]
fn linked_in_place_of_lpthread() {
    let src = programs_dir().join("lifecycle.c");
    let lib = preload_library();
    let libdir = lib.parent().expect("the library's directory");
    let mut dir = WorkDir::new("linked");
    let native_bin = dir.path.join("native");
    let linked_bin = dir.path.join("linked");
    compile(&src, &native_bin).unwrap_or_else(|e| panic!("lifecycle.c: {e}"));
    let link = [
        format!("-L{}", libdir.display()),
        format!("-Wl,-rpath,{}", libdir.display()),
        "-lflexsc".to_string(),
    ];
    compile_with(&src, &linked_bin, &link)
        .unwrap_or_else(|e| panic!("linking with -lflexsc failed: {e}"));
    let native = run("native", &native_bin, &dir.path, None, TIMEOUT);
    let stats = dir.path.join("linked.stats");
    let linked = Command::new(&linked_bin)
        .current_dir(&dir.path)
        .env_remove("LD_PRELOAD")
        // cargo's LD_LIBRARY_PATH names target/<profile>, where an older `cargo build` may have
        // left another libflexsc.so; it would win over the binary's rpath (a RUNPATH).
        .env_remove("LD_LIBRARY_PATH")
        .env("FLEXSC_STATS", &stats)
        .stdin(Stdio::null())
        .output()
        .expect("run the linked program");
    let stdout = String::from_utf8_lossy(&linked.stdout);
    if !(native.succeeded() && linked.status.success() && stdout == native.stdout) {
        dir.keep = true;
        panic!(
            "the linked run differs from the native one (kept in {}):\nlinked: {:?}\n{stdout}\n{}\n{}",
            dir.path.display(),
            linked.status,
            String::from_utf8_lossy(&linked.stderr),
            native.report()
        );
    }
    let table = fs::read_to_string(&stats).unwrap_or_default();
    let finished: u64 = table
        .lines()
        .find(|l| l.trim_start().starts_with("all "))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        finished > 0,
        "the linked program ran no green thread (statistics:\n{table})"
    );
}

/// Green thread 0 (the main thread, adopted at its first `pthread_create`) grows the main stack
/// on whichever carrier runs it, and an overflow of that stack is reported by name.
#[test]
fn main_stack_grows_and_its_overflow_is_reported() {
    const SOURCE: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <string.h>
static void *nothing(void *a) { return a; }
static int deep(int n, int max) {
    volatile char buf[1024];
    memset((char *)buf, n, sizeof buf);
    return n >= max ? buf[5] : deep(n + 1, max) + buf[0];
}
int main(int argc, char **argv) {
    (void)argv;
    pthread_t t;
    pthread_create(&t, 0, nothing, 0);
    pthread_join(t, 0);
    /* 6 MiB of the 8 MiB main stack, or more than it has */
    printf("deep %d\n", deep(0, argc > 1 ? 1 << 20 : 6000) != 12345);
    return 0;
}
"#;
    let mut dir = WorkDir::new("main-overflow");
    let src = dir.path.join("deep.c");
    fs::write(&src, SOURCE).expect("write the program");
    let bin = dir.path.join("deep");
    // -O0: the recursion must stay a recursion.
    compile_with(&src, &bin, &["-O0".to_string()]).unwrap_or_else(|e| panic!("{e}"));
    let run = |args: &[&str]| {
        // The 8 MiB main stack the program's sizes assume (RLIMIT_STACK sizes it).
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -s 8192 && exec \"$0\" \"$@\"")
            .arg(&bin)
            .args(args)
            .env("LD_PRELOAD", preload_library())
            .env_remove("FLEXSC_MAIN")
            .stdin(Stdio::null())
            .output()
            .expect("run the program")
    };
    let grown = run(&[]);
    let overflow = run(&["overflow"]);
    let stderr = String::from_utf8_lossy(&overflow.stderr);
    let aborted = overflow.status.signal() == Some(6);
    if !(grown.status.success()
        && grown.stdout == b"deep 1\n"
        && aborted
        && stderr.contains("(\"main\") overflowed its stack"))
    {
        dir.keep = true;
        panic!(
            "expected a 6 MiB recursion to succeed ({:?}, {:?}) and a deeper one to be reported \
             as green thread \"main\"'s overflow, got {:?}:\n{stderr}",
            grown.status,
            String::from_utf8_lossy(&grown.stderr),
            overflow.status
        );
    }
}

/// A green thread that overflows its stack is reported by name even after the application
/// installed its own SIGSEGV handler (which the overflow handler chains to, rather than being
/// replaced by it); natively such a program just dies of the fault.
#[test]
fn overflow_is_reported_despite_an_application_handler() {
    const SOURCE: &str = r#"
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
static void on_segv(int sig) { (void)sig; write(2, "application handler\n", 20); _exit(3); }
static int deep(int n) { volatile char buf[512]; buf[0] = (char)n; return deep(n + 1) + buf[0]; }
static void *overflow(void *a) { (void)a; return (void *)(long)deep(0); }
static void *nothing(void *a) { return a; }
int main(void) {
    pthread_t t;
    pthread_create(&t, 0, nothing, 0);
    pthread_join(t, 0);
    signal(SIGSEGV, on_segv);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 * 1024);
    pthread_create(&t, &at, overflow, 0);
    pthread_join(t, 0);
    return 0;
}
"#;
    let mut dir = WorkDir::new("overflow");
    let src = dir.path.join("overflow.c");
    fs::write(&src, SOURCE).expect("write the program");
    let bin = dir.path.join("overflow");
    // -O0: the recursion must stay a recursion.
    compile_with(&src, &bin, &["-O0".to_string()]).unwrap_or_else(|e| panic!("{e}"));
    let run = Command::new(&bin)
        .env("LD_PRELOAD", preload_library())
        .stdin(Stdio::null())
        .output()
        .expect("run the program");
    let stderr = String::from_utf8_lossy(&run.stderr);
    let aborted = std::os::unix::process::ExitStatusExt::signal(&run.status) == Some(6);
    if !(aborted && stderr.contains("overflowed its stack")) {
        dir.keep = true;
        panic!(
            "expected the overflow report and an abort, got {:?}:\n{stderr}",
            run.status
        );
    }
}

#[test]
fn preempt() {
    // One carrier: a thread spinning without a call keeps it until it is preempted.
    check_program_env("preempt.c", &[("FLEXSC_CORES", "1")]);
}
