//! The statistics table for real (issue 4): the system calls by name, and printing on SIGUSR2.
//!
//! SIGUSR2's handler and printer thread are process-wide, and `FLEXSC_STATS` is read from the
//! environment, so each case re-runs this test binary as a child process (filtered to
//! [`child_process_entry`], its role chosen by an environment variable) with `FLEXSC_STATS`
//! naming a file, and checks the tables the child appended to it.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flexsc_threads::{Runtime, spawn, syscall};

/// Selects the child's role; unset in the parent.
const ROLE: &str = "FLEXSC_STATS_TEST_ROLE";

/// getppid calls each child makes from green threads.
const CALLS: u64 = 100;

/// A statistics file of this test process's own (removed by the caller).
fn stats_file(case: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("flexsc-stats-{case}-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Starts this binary as a child in `role`, its statistics going to `path`.
fn start_child(role: &str, path: &Path) -> Child {
    common::child::command(ROLE, role)
        .env("FLEXSC_STATS", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most 30 s) for `child` to exit and checks it succeeded.
fn finish(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(status.success(), "child: {status}\n{err}");
}

/// The tables in a statistics file: each heading line (`flexsc-threads statistics (pid N,
/// WHEN)`) with the lines after it.
fn tables(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if line.starts_with("flexsc-threads statistics (") {
            out.push((line.to_string(), Vec::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push(line.to_string());
        }
    }
    out
}

/// The `name count` pairs of a table's line starting with `heading`, and the line's total.
fn by_name(body: &[String], heading: &str) -> (u64, Vec<(String, u64)>) {
    let line = body
        .iter()
        .find(|l| l.starts_with(heading))
        .unwrap_or_else(|| panic!("no {heading:?} line in {body:#?}"));
    let (head, items) = line.split_once("):").expect("the heading ends with '):'");
    let total = head.rsplit_once("total ").unwrap().1.parse().unwrap();
    let items = items
        .split(", ")
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|i| {
            let (name, n) = i.rsplit_once(' ').expect("name count");
            (name.to_string(), n.parse().expect("a count"))
        })
        .collect();
    (total, items)
}

/// How many `name` calls a table lists as posted.
fn posted(body: &[String], name: &str) -> u64 {
    by_name(body, "system calls posted")
        .1
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |&(_, c)| c)
}

/// A column of the table's `all` row (0: the row name, 3: posted, 8: local).
fn all_row(body: &[String], column: usize) -> u64 {
    let row = body
        .iter()
        .find(|l| l.trim_start().starts_with("all "))
        .expect("an `all` row");
    row.split_whitespace().nth(column).unwrap().parse().unwrap()
}

/// `CALLS` getppid calls from four green threads.
fn make_calls(rt: &Runtime) {
    rt.block_on(|| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                spawn(|| {
                    for _ in 0..CALLS / 4 {
                        // SAFETY: getppid takes no arguments.
                        let r = unsafe { syscall(libc::SYS_getppid, &[]) };
                        assert!(r > 0);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
}

fn send_sigusr2(pid: i32) {
    // SAFETY: sends a signal to a process of ours.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR2) }, 0);
}

/// Polls `path` (at most 10 s) until `done` holds for its text; the last text read.
fn wait_for_file(path: &Path, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The child side: does nothing in a normal test run.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        // Calls, then "ready", then waits for the parent to close stdin (signalling meanwhile).
        "sigusr2" => {
            let rt = Runtime::builder().cores(2).build().unwrap();
            make_calls(&rt);
            println!("ready {}", rt.syscall_stats().posted(libc::SYS_getppid));
            let mut rest = String::new();
            std::io::stdin().read_to_string(&mut rest).unwrap();
            drop(rt); // the table, at shutdown
        }
        // The application's own SIGUSR2 handler, installed before the runtime: it stays.
        "app_handler" => {
            static CAUGHT: AtomicUsize = AtomicUsize::new(0);
            extern "C" fn on_usr2(_: libc::c_int) {
                CAUGHT.fetch_add(1, Ordering::SeqCst);
            }
            let handler = on_usr2 as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // SAFETY: installs a handler that only touches an atomic; `act` is initialised.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = handler;
                libc::sigemptyset(&mut act.sa_mask);
                assert_eq!(
                    libc::sigaction(libc::SIGUSR2, &act, std::ptr::null_mut()),
                    0
                );
            }
            let rt = Runtime::builder().cores(2).build().unwrap();
            make_calls(&rt);
            // SAFETY: signals our own process.
            send_sigusr2(unsafe { libc::getpid() });
            let deadline = Instant::now() + Duration::from_secs(10);
            while CAUGHT.load(Ordering::SeqCst) == 0 {
                assert!(Instant::now() < deadline, "our handler never ran");
                std::thread::sleep(Duration::from_millis(1));
            }
            // SAFETY: queries the action only; `now` is a valid out-pointer.
            let now = unsafe {
                let mut now: libc::sigaction = std::mem::zeroed();
                assert_eq!(
                    libc::sigaction(libc::SIGUSR2, std::ptr::null(), &mut now),
                    0
                );
                now.sa_sigaction
            };
            assert_eq!(
                now, handler,
                "the runtime replaced the application's handler"
            );
            // Time for a printer that should not exist to print.
            std::thread::sleep(Duration::from_millis(300));
            drop(rt);
        }
        // A fork child inherits the handler but not the printer: SIGUSR2 must do nothing there.
        "fork" => {
            let path = std::env::var_os("FLEXSC_STATS").unwrap();
            let rt = Runtime::builder().cores(2).build().unwrap();
            make_calls(&rt);
            // SAFETY: signals our own process.
            let me = unsafe { libc::getpid() };
            send_sigusr2(me);
            let text = wait_for_file(Path::new(&path), |t| t.contains("SIGUSR2)"));
            assert!(text.contains("SIGUSR2)"), "no table on SIGUSR2: {text}");
            // SAFETY: the child calls only async-signal-safe functions (getpid, kill, _exit).
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                // SAFETY: as above.
                unsafe {
                    let r = libc::kill(libc::getpid(), libc::SIGUSR2);
                    // Single-threaded: the handler ran before kill returned.
                    libc::_exit(if r == 0 { 0 } else { 3 });
                }
            }
            let mut status = 0;
            // SAFETY: waits for our own child; `status` is a valid out-pointer.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "the fork child died of SIGUSR2 (status {status:#x})"
            );
            std::thread::sleep(Duration::from_millis(300));
            let after = std::fs::read_to_string(&path).unwrap();
            assert!(
                !after.contains(&format!("(pid {pid},")),
                "the fork child printed: {after}"
            );
            // Nor did its signal reach this process's printer through the inherited pipe.
            assert_eq!(
                after.matches("SIGUSR2)").count(),
                text.matches("SIGUSR2)").count(),
                "{after}"
            );
            // And the printer still serves this process.
            let before = text.matches("SIGUSR2)").count();
            send_sigusr2(me);
            let text = wait_for_file(Path::new(&path), |t| t.matches("SIGUSR2)").count() > before);
            assert!(text.matches("SIGUSR2)").count() > before, "{text}");
            drop(rt);
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn sigusr2_prints_the_table_with_the_calls_by_name() {
    let path = stats_file("sigusr2");
    let mut child = start_child("sigusr2", &path);
    // The child's "ready" line, read on a thread so that a hung child fails the test.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // After the harness's "test child_process_entry ... ", on the same line.
            if let Some((_, n)) = line.split_once("ready ") {
                let _ = tx.send(n.trim().parse::<u64>().unwrap());
            }
            // Read on to the end: the child's harness still writes its summary.
        }
    });
    let counted = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the child never got ready");
    assert!(counted >= CALLS, "Runtime::syscall_stats: {counted}");

    send_sigusr2(child.id() as i32);
    let signalled = |text: &str| {
        tables(text)
            .iter()
            .any(|(h, b)| h.ends_with(", SIGUSR2)") && posted(b, "getppid") >= CALLS)
    };
    let text = wait_for_file(&path, signalled);
    assert!(
        signalled(&text),
        "no table listing getppid {CALLS} within 10 s of SIGUSR2:\n{text}"
    );
    // The table is printed again for a second signal, the process still running.
    let n = text.matches(", SIGUSR2)").count();
    send_sigusr2(child.id() as i32);
    let text = wait_for_file(&path, |t| t.matches(", SIGUSR2)").count() > n);
    assert!(text.matches(", SIGUSR2)").count() > n, "{text}");

    drop(child.stdin.take()); // the child shuts its runtime down and exits
    finish(child);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let all = tables(&text);
    let (heading, body) = all.last().unwrap();
    assert!(heading.ends_with(", shutdown)"), "{text}");
    let (total, items) = by_name(body, "system calls posted");
    assert!(posted(body, "getppid") >= CALLS, "{text}");
    // Most first, and adding up.
    assert!(items.windows(2).all(|w| w[0].1 >= w[1].1), "{text}");
    assert_eq!(items.iter().map(|(_, n)| n).sum::<u64>(), total, "{text}");
    // At shutdown the table's columns are final too: they agree with the lists.
    assert_eq!(all_row(body, 3), total, "posted column: {text}");
    let (local, _) = by_name(body, "system calls run on the carriers");
    assert_eq!(all_row(body, 8), local, "local column: {text}");
    // Printed once at shutdown: not again at exit.
    assert_eq!(
        all.iter()
            .filter(|(h, _)| !h.ends_with(", SIGUSR2)"))
            .count(),
        1
    );
}

#[test]
fn an_application_handler_for_sigusr2_is_left_alone() {
    let path = stats_file("app-handler");
    finish(start_child("app_handler", &path));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let all = tables(&text);
    assert_eq!(all.len(), 1, "{text}");
    assert!(all[0].0.ends_with(", shutdown)"), "{text}");
    assert!(posted(&all[0].1, "getppid") >= CALLS, "{text}");
}

#[test]
fn sigusr2_in_a_fork_child_does_nothing() {
    let path = stats_file("fork");
    finish(start_child("fork", &path));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(text.contains(", shutdown)"), "{text}");
}
