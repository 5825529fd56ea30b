//! `flexsc profile` end to end: a small C program (`tests/profile/recorded.c`) with a known
//! call sequence, recorded by libflexsc (green threads, an OS thread, a forked child) and,
//! natively, by `strace -f`; the sequence must appear in both reports with its exact counts.
//! Also the command line's errors. Needs `cc`, `strace`, and Graphviz's `dot` for the SVG (the
//! test says which is missing).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The launcher cargo built for these tests (it finds the library built with it).
const FLEXSC: &str = env!("CARGO_BIN_EXE_flexsc");

/// A directory of its own for one test, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("flexsc-profile-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `program` without the test's own `FLEXSC_*` variables and `LD_PRELOAD`.
fn clean(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_remove("LD_PRELOAD").stdin(Stdio::null());
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("FLEXSC_") {
            cmd.env_remove(var);
        }
    }
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(cmd: &mut Command, what: &str) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("{what} is not installed (on Debian: apt-get install {what})")
        }
        Err(e) => panic!("cannot run {what}: {e}"),
    }
}

/// Compiles the test program into `dir`.
fn compile(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/profile/recorded.c");
    let exe = dir.join("recorded");
    let out = run(
        clean("cc")
            .args(["-std=gnu11", "-O2", "-Wall", "-pthread", "-o"])
            .arg(&exe)
            .arg(&src),
        "cc",
    );
    assert!(out.status.success(), "cc failed: {}", text(&out.stderr));
    exe
}

/// The lines of the report's tables, without the remedies.
fn rows(report: &str) -> Vec<String> {
    report
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn has(report: &str, row: &str) {
    assert!(
        rows(report).iter().any(|r| r == row),
        "no row {row:?} in:\n{report}"
    );
}

/// The worker's truncate-and-write sequence, as it appears in the report.
const TRUNC_WRITE_CLOSE: &str =
    "openat(O_WRONLY|O_CREAT|O_TRUNC) -> write(file) -> write(file) -> close(file)";

#[test]
fn records_green_threads_os_threads_and_a_forked_child() {
    let dir = TempDir::new("record");
    let exe = compile(&dir.0);
    let out_dir = dir.0.join("out");
    let out = run(
        clean(FLEXSC)
            .arg("profile")
            .arg("-o")
            .arg(&out_dir)
            .arg("--")
            .arg(&exe)
            .arg(&dir.0),
        "flexsc",
    );
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", text(&out.stderr));
    assert!(report.starts_with("done\n"), "{report}");
    // Two workers x 3 rounds x 8 calls, the child's 4, the main thread's wait4 and write.
    assert!(
        report.contains("54 calls in 4 threads (0 older calls lost"),
        "{report}"
    );
    // Edge weights: 6 rounds of each worker pair; the child's truncate-write-close once more.
    has(
        &report,
        "7 14.0% openat(O_WRONLY|O_CREAT|O_TRUNC) -> write(file)",
    );
    has(&report, "6 12.0% newfstatat -> openat(O_RDONLY)");
    has(
        &report,
        "4 8.0% close(file) -> openat(O_WRONLY|O_CREAT|O_TRUNC)",
    );
    has(&report, &format!("4 7 7 21 38.9% {TRUNC_WRITE_CLOSE}"));
    // stdout is the test's pipe.
    has(&report, "1 2.0% wait4 -> write(pipe)");
    // The patterns: 7 truncations (6 by the workers, 1 by the child), 6 stat+open pairs.
    let pattern = |p: &str| {
        rows(&report)
            .into_iter()
            .find(|r| r.contains(p))
            .unwrap_or_default()
    };
    assert!(
        pattern("open(O_TRUNC) + write + close").starts_with("7 28 21 "),
        "{report}"
    );
    assert!(
        pattern("stat then open of the same path").starts_with("6 12 6 "),
        "{report}"
    );
    assert!(
        pattern("tiny writes (< 64 B) in a row").starts_with("7 14 7 "),
        "{report}"
    );
    // One dump per process: the parent and the forked child.
    let dumps = std::fs::read_dir(out_dir.join("records")).unwrap().count();
    assert_eq!(dumps, 2);
    for f in ["report.txt", "graph.dot"] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    let dot = std::fs::read_to_string(out_dir.join("graph.dot")).unwrap();
    assert!(
        dot.contains("\"newfstatat\" -> \"openat(O_RDONLY)\" [label=\"6\""),
        "{dot}"
    );
    let has_dot = Command::new("dot").arg("-V").output().is_ok();
    assert_eq!(out_dir.join("graph.svg").is_file(), has_dot, "{report}");
    assert!(
        has_dot,
        "Graphviz's dot is not installed (apt-get install graphviz): no SVG"
    );
    // The recordings read again give the same report.
    let again = run(
        clean(FLEXSC)
            .arg("profile")
            .arg("-o")
            .arg(dir.0.join("again"))
            .arg("--records")
            .arg(out_dir.join("records")),
        "flexsc",
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    let read = |d: &str| std::fs::read_to_string(dir.0.join(d).join("report.txt")).unwrap();
    assert_eq!(read("again"), read("out"));
}

#[test]
fn strace_output_gives_the_same_sequence() {
    let dir = TempDir::new("strace");
    let exe = compile(&dir.0);
    let trace = dir.0.join("trace");
    let out = run(
        clean("strace")
            .args(["-f", "-tt", "-T", "-o"])
            .arg(&trace)
            .arg(&exe)
            .arg(&dir.0),
        "strace",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(
        clean(FLEXSC)
            .arg("profile")
            .arg("-o")
            .arg(dir.0.join("out"))
            .arg("--strace")
            .arg(&trace)
            .arg("--top")
            .arg("50"),
        "flexsc",
    );
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", text(&out.stderr));
    // strace sees every call (thread start-up, mmap...), so only the known part is exact.
    let row = rows(&report)
        .into_iter()
        .find(|r| r.ends_with(TRUNC_WRITE_CLOSE) && r.starts_with("4 "))
        .unwrap_or_else(|| panic!("no {TRUNC_WRITE_CLOSE} in:\n{report}"));
    let n: Vec<&str> = row.split(' ').collect();
    assert_eq!(&n[1..4], ["7", "7", "21"], "{row}");
    let pattern = rows(&report)
        .into_iter()
        .find(|r| r.contains("stat then open of the same path"));
    assert!(
        pattern.is_some_and(|p| p.starts_with("6 12 6 ")),
        "{report}"
    );
}

#[test]
fn bad_command_lines_are_one_line_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["profile"], "nothing to profile"),
        (&["profile", "true"], "the command goes after `--`"),
        (
            &["profile", "--top", "0", "--", "true"],
            "--top \"0\": at least 1",
        ),
        (
            &["profile", "--max-len", "x", "--", "true"],
            "--max-len \"x\": not a number",
        ),
        (
            &["profile", "--strace", "a", "--records", "b"],
            "give one of",
        ),
        (&["profile", "--strace", "a", "--", "true"], "give one of"),
        (
            &["profile", "--ring", "8", "--strace", "a"],
            "--ring applies to recording",
        ),
        (&["profile", "--cores", "0", "--", "true"], "--cores \"0\""),
        (&["profile", "--strace"], "missing value for --strace"),
        (
            &["profile", "--ring", "99999999999", "--", "true"],
            "at most 16777216",
        ),
    ];
    for (args, want) in cases {
        let out = run(clean(FLEXSC).args(*args), "flexsc");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn unreadable_inputs_are_errors() {
    let dir = TempDir::new("bad-input");
    let out = run(
        clean(FLEXSC)
            .arg("profile")
            .arg("-o")
            .arg(dir.0.join("o"))
            .arg("--strace")
            .arg(dir.0.join("missing")),
        "flexsc",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("missing"),
        "{}",
        text(&out.stderr)
    );
    let records = dir.0.join("records");
    std::fs::create_dir_all(&records).unwrap();
    std::fs::write(records.join("12.fxp"), b"garbage").unwrap();
    let out = run(
        clean(FLEXSC)
            .arg("profile")
            .arg("-o")
            .arg(dir.0.join("o"))
            .arg("--records")
            .arg(&records),
        "flexsc",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("12.fxp: not a flexsc profile recording"),
        "{}",
        text(&out.stderr)
    );
}
