//! The `flexsc` launcher, run as a program: the variables it sets, `LD_PRELOAD`, the library
//! lookup, exit statuses, the usage errors, `--help`.
//!
//! Most tests point `FLEXSC_LIB` at a placeholder file, so they do not depend on the cdylib
//! (the dynamic loader reports on stderr that the placeholder cannot be preloaded, and runs the
//! command anyway); `finds_the_library_cargo_built` uses the real one.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The launcher cargo built for these tests.
const FLEXSC: &str = env!("CARGO_BIN_EXE_flexsc");

/// A directory of its own for one test, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("flexsc-launcher-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Creates `name` in the directory (and its parent directories), returning its path.
    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `program` with `args`, without the `FLEXSC_*` variables and `LD_PRELOAD` of the test's own
/// environment.
fn clean(program: impl AsRef<OsStr>, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).env_remove("LD_PRELOAD");
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("FLEXSC_") {
            cmd.env_remove(var);
        }
    }
    cmd
}

/// The launcher with `args`, its library a placeholder file in `dir`; returns the command and
/// the placeholder's path.
fn flexsc(dir: &TempDir, args: &[&str]) -> (Command, PathBuf) {
    let lib = dir.file("placeholder/libflexsc.so", "not a library");
    let mut cmd = clean(FLEXSC, args);
    cmd.env("FLEXSC_LIB", &lib);
    (cmd, lib)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `cmd`, the launcher running `env`, and returns the `FLEXSC_*` variables `env` printed
/// (but `FLEXSC_LIB`), sorted.
fn flexsc_vars(cmd: &mut Command) -> Vec<String> {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut vars: Vec<String> = stdout(&out)
        .lines()
        .filter(|l| l.starts_with("FLEXSC_") && !l.starts_with("FLEXSC_LIB="))
        .map(str::to_owned)
        .collect();
    vars.sort();
    vars
}

#[test]
fn sets_the_variables_and_puts_the_library_first_in_ld_preload() {
    let dir = TempDir::new("vars");
    let (mut cmd, lib) = flexsc(
        &dir,
        &[
            "run",
            "--cores",
            "2",
            "--backend",
            "uring",
            "--stats",
            "--",
            "/bin/sh",
            "-c",
            r#"echo "$FLEXSC_CORES $FLEXSC_BACKEND $FLEXSC_STATS $LD_PRELOAD""#,
        ],
    );
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("2 uring 1 {}\n", lib.display()));
}

#[test]
fn keeps_an_existing_ld_preload_after_the_library() {
    let dir = TempDir::new("keep");
    let other = dir.file("other.so", "not a library either");
    let (mut cmd, lib) = flexsc(
        &dir,
        &["run", "--", "/bin/sh", "-c", r#"echo "$LD_PRELOAD""#],
    );
    let out = cmd.env("LD_PRELOAD", &other).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{}:{}\n", lib.display(), other.display())
    );
}

#[test]
fn every_option_sets_its_variable() {
    let dir = TempDir::new("every");
    let (mut cmd, _) = flexsc(
        &dir,
        &[
            "run",
            "--cores=3",
            "--syscall-cores",
            "0",
            "--backend=threads",
            "--pages",
            "2",
            "--order",
            "lifo:5",
            "--batch=1",
            "--direct",
            "nonblock+stat",
            "--map-cache=off",
            "--no-tls",
            "--stats=stats.txt",
            "--",
            "env",
        ],
    );
    let stats = dir.0.join("stats.txt");
    assert_eq!(
        flexsc_vars(cmd.current_dir(&dir.0)),
        [
            "FLEXSC_BACKEND=threads".to_string(),
            "FLEXSC_BATCH=1".into(),
            "FLEXSC_CORES=3".into(),
            "FLEXSC_DIRECT=nonblock+stat".into(),
            "FLEXSC_MAP_CACHE=0".into(),
            "FLEXSC_ORDER=lifo:5".into(),
            "FLEXSC_PAGES=2".into(),
            // --syscall-cores alone means the static specialization.
            "FLEXSC_SPECIALIZATION=static".into(),
            format!("FLEXSC_STATS={}", stats.display()),
            "FLEXSC_SYSCALL_CORES=0".into(),
            "FLEXSC_TLS=0".into(),
        ]
    );
    let (mut cmd, _) = flexsc(
        &dir,
        &[
            "run",
            "--specialization",
            "dynamic",
            "--order=fifo",
            "--main",
            "plain",
            "--",
            "env",
        ],
    );
    assert_eq!(
        flexsc_vars(&mut cmd),
        [
            "FLEXSC_MAIN=plain",
            "FLEXSC_ORDER=fifo",
            "FLEXSC_SPECIALIZATION=dynamic"
        ]
    );
}

#[test]
fn options_override_inherited_variables_and_leave_the_others() {
    let dir = TempDir::new("inherit");
    let (mut cmd, _) = flexsc(
        &dir,
        &["run", "--cores", "2", "--syscall-cores", "0", "--", "env"],
    );
    cmd.env("FLEXSC_CORES", "9")
        .env("FLEXSC_SPINS", "5")
        .env("FLEXSC_SPECIALIZATION", "percore");
    assert_eq!(
        flexsc_vars(&mut cmd),
        [
            "FLEXSC_CORES=2",
            "FLEXSC_SPECIALIZATION=static",
            "FLEXSC_SPINS=5",
            "FLEXSC_SYSCALL_CORES=0",
        ]
    );
    // percore and dynamic take no syscall-core list: an inherited one would make the library
    // refuse to start, so the launcher drops it.
    let (mut cmd, _) = flexsc(&dir, &["run", "--specialization", "percore", "--", "env"]);
    cmd.env("FLEXSC_SYSCALL_CORES", "1");
    assert_eq!(flexsc_vars(&mut cmd), ["FLEXSC_SPECIALIZATION=percore"]);
}

#[test]
fn the_command_replaces_the_launcher() {
    let dir = TempDir::new("exec");
    let status = |script: &str| {
        let (mut cmd, _) = flexsc(&dir, &["run", "--", "/bin/sh", "-c", script]);
        cmd.output().unwrap().status
    };
    assert_eq!(status("exit 7").code(), Some(7));
    assert_eq!(status("exit 0").code(), Some(0));
    assert_eq!(status("kill -TERM $$").signal(), Some(15));
    // Same process: the command has the launcher's pid.
    let (mut cmd, _) = flexsc(&dir, &["run", "--", "/bin/sh", "-c", "echo $$"]);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out).trim(), pid.to_string());
}

#[test]
fn the_command_does_not_inherit_the_launchers_ignored_sigpipe() {
    // The launcher, a Rust program, ignores SIGPIPE; the command must not, or `flexsc run --
    // yes | head` would never end.
    let dir = TempDir::new("sigpipe");
    let (mut cmd, _) = flexsc(&dir, &["run", "--", "cat", "/proc/self/status"]);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status = stdout(&out);
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|mask| u64::from_str_radix(mask.trim(), 16).unwrap())
        .unwrap_or_else(|| panic!("no SigIgn in {status}"));
    assert_eq!(
        ignored & (1 << (13 - 1)),
        0,
        "SIGPIPE ignored: {ignored:#x}"
    );
}

#[test]
fn the_command_is_searched_in_path() {
    let dir = TempDir::new("path");
    let script = dir.file("bin/flexsc-test-hello", "#!/bin/sh\necho hello \"$@\"\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut cmd, _) = flexsc(&dir, &["run", "--", "flexsc-test-hello", "a b"]);
    let out = cmd.env("PATH", dir.0.join("bin")).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello a b\n");
}

#[test]
fn a_command_that_cannot_run_gives_126_or_127() {
    let dir = TempDir::new("noexec");
    let (mut cmd, _) = flexsc(&dir, &["run", "--", "flexsc-no-such-command"]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("flexsc-no-such-command"),
        "{}",
        stderr(&out)
    );
    let plain = dir.file("plain", "");
    let (mut cmd, _) = flexsc(&dir, &["run", "--", plain.to_str().unwrap()]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(126));
    assert!(stderr(&out).contains("plain"), "{}", stderr(&out));
}

#[test]
fn bad_input_is_a_one_line_error_and_exit_2() {
    let dir = TempDir::new("bad");
    let cases: &[(&[&str], &str)] = &[
        (&["frob"], "unknown command \"frob\""),
        (
            &["run", "--frob", "--", "true"],
            "unknown option \"--frob\"",
        ),
        (&["run", "-c", "--", "true"], "unexpected argument \"-c\""),
        (&["run", "true"], "the command goes after `--`"),
        (&["run", "--cores", "2"], "missing command"),
        (&["run", "--cores", "2", "--"], "missing command after `--`"),
        (&["run", "--pages"], "missing value for --pages"),
        (
            &["run", "--direct", "nonblock,fast", "--", "true"],
            "\"fast\" is not none, all, auto, nonblock, nonblock-recv, nonblock-send, ready or stat",
        ),
        (
            &["run", "--map-cache", "sometimes", "--", "true"],
            "expected `on` or `off`",
        ),
        (
            &["run", "--cores", "--pages", "2", "--", "true"],
            "missing value for --cores",
        ),
        (
            &["run", "--cores", "x", "--", "true"],
            "--cores \"x\": not a number",
        ),
        (&["run", "--cores", "0", "--", "true"], "--cores \"0\""),
        (
            &["run", "--syscall-cores", "x", "--", "true"],
            "--syscall-cores \"x\"",
        ),
        (
            &["run", "--syscall-cores=4095", "--", "true"],
            "does not exist",
        ),
        (
            &["run", "--backend", "fast", "--", "true"],
            "--backend \"fast\"",
        ),
        (&["run", "--pages", "0", "--", "true"], "--pages \"0\""),
        (
            &["run", "--pages", "4097", "--", "true"],
            "--pages \"4097\"",
        ),
        (
            &["run", "--specialization", "x", "--", "true"],
            "--specialization \"x\"",
        ),
        (
            &["run", "--order", "lifo:0", "--", "true"],
            "--order \"lifo:0\"",
        ),
        (
            &["run", "--order", "random", "--", "true"],
            "--order \"random\"",
        ),
        (&["run", "--batch", "0", "--", "true"], "--batch \"0\""),
        (&["run", "--main", "red", "--", "true"], "--main \"red\""),
        (&["run", "--batch", "-1", "--", "true"], "--batch \"-1\""),
        (
            &["run", "--no-tls=1", "--", "true"],
            "--no-tls takes no value",
        ),
        (
            &["run", "--stats=", "--", "true"],
            "--stats=: the file name is empty",
        ),
        (
            &[
                "run",
                "--specialization",
                "percore",
                "--syscall-cores",
                "0",
                "--",
                "true",
            ],
            "--syscall-cores \"0\" applies to --specialization static only",
        ),
        (
            &[
                "run",
                "--backend",
                "uring",
                "--specialization",
                "dynamic",
                "--",
                "true",
            ],
            "--backend uring with --specialization dynamic",
        ),
    ];
    for (args, want) in cases {
        let mut args = args.to_vec();
        // A command that would show it ran; it must not.
        if args.last() == Some(&"true") {
            args.pop();
            args.extend(["/bin/sh", "-c", "echo ran"]);
        }
        let (mut cmd, _) = flexsc(&dir, &args);
        let out = cmd.output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
        assert!(err.starts_with("flexsc: "), "{args:?}: {err:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
    }
}

#[test]
fn the_kmod_backend_needs_its_device() {
    let dir = TempDir::new("kmod");
    let (mut cmd, _) = flexsc(&dir, &["run", "--backend", "kmod", "--", "env"]);
    let out = cmd.output().unwrap();
    if Path::new("/dev/flexsc").exists() {
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).lines().any(|l| l == "FLEXSC_BACKEND=kmod"));
    } else {
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            stderr(&out),
            "flexsc: the kmod backend needs /dev/flexsc: load the flexsc kernel module \
             (docs/kernel-module.md)\n"
        );
    }
}

#[test]
fn flexsc_lib_is_made_absolute_and_must_exist() {
    let dir = TempDir::new("flexsc-lib");
    let lib = dir.file("relative/libflexsc.so", "");
    let mut cmd = clean(
        FLEXSC,
        &["run", "--", "/bin/sh", "-c", r#"echo "$LD_PRELOAD""#],
    );
    let out = cmd
        .current_dir(&dir.0)
        .env("FLEXSC_LIB", "relative/libflexsc.so")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n", lib.display()));
    let missing = dir.0.join("missing/libflexsc.so");
    let mut cmd = clean(FLEXSC, &["run", "--", "true"]);
    let out = cmd.env("FLEXSC_LIB", &missing).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("FLEXSC_LIB={}", missing.display())),
        "{}",
        stderr(&out)
    );
    let colon = dir.file("a:b/libflexsc.so", "");
    let mut cmd = clean(FLEXSC, &["run", "--", "true"]);
    let out = cmd.env("FLEXSC_LIB", &colon).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("colon"), "{}", stderr(&out));
}

#[test]
fn looks_in_deps_then_beside_the_executable_then_in_lib() {
    // A copy of the launcher in a directory of its own, where the test decides which files
    // exist.
    let dir = TempDir::new("layout");
    let exe = dir.0.join("bin/flexsc");
    std::fs::create_dir_all(dir.0.join("bin")).unwrap();
    std::fs::copy(FLEXSC, &exe).unwrap();
    let preload = || {
        let out = clean(
            &exe,
            &["run", "--", "/bin/sh", "-c", r#"echo "$LD_PRELOAD""#],
        )
        .output()
        .unwrap();
        (out.status.code(), stdout(&out), stderr(&out))
    };
    let places = [
        "bin/deps/libflexsc.so",
        "bin/libflexsc.so",
        "lib/libflexsc.so",
    ];
    let (code, out, err) = preload();
    assert_eq!(code, Some(2));
    assert_eq!(out, "");
    for place in places {
        let place = dir.0.join(place);
        assert!(err.contains(&place.display().to_string()), "{err}");
    }
    // Each place, created in reverse order, takes over from the ones after it.
    for place in places.into_iter().rev() {
        let lib = dir.file(place, "");
        assert_eq!(preload().1, format!("{}\n", lib.display()), "{place}");
    }
}

#[test]
fn finds_the_library_cargo_built() {
    // Cargo builds this package's cdylib before its integration tests, into
    // target/<profile>/deps/ (it copies it next to the binary only for `cargo build`). This
    // loads the real library into the shell.
    let lib = Path::new(FLEXSC).with_file_name("deps/libflexsc.so");
    assert!(lib.is_file(), "{} was not built", lib.display());
    let out = clean(
        FLEXSC,
        &["run", "--", "/bin/sh", "-c", r#"echo "$LD_PRELOAD""#],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n", lib.display()));
}

#[test]
fn help_lists_every_option_and_its_variable() {
    let listed = [
        ("--cores N", "FLEXSC_CORES"),
        ("--syscall-cores LIST", "FLEXSC_SYSCALL_CORES"),
        ("--backend uring|threads|kmod", "FLEXSC_BACKEND"),
        ("--pages N", "FLEXSC_PAGES"),
        (
            "--specialization percore|static|dynamic",
            "FLEXSC_SPECIALIZATION",
        ),
        ("--order fifo|lifo|lifo:N", "FLEXSC_ORDER"),
        ("--batch N", "FLEXSC_BATCH"),
        ("--main green|plain", "FLEXSC_MAIN"),
        ("--no-tls", "FLEXSC_TLS=0"),
        ("--stats[=FILE]", "FLEXSC_STATS"),
    ];
    for args in [
        &["--help"][..],
        &["help"],
        &["-h"],
        &["run", "--cores", "2", "--help"],
    ] {
        let out = clean(FLEXSC, args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = stdout(&out);
        assert!(
            text.contains("flexsc run [OPTIONS] -- CMD [ARGS...]"),
            "{text}"
        );
        assert!(text.contains("FLEXSC_LIB"), "{text}");
        for (option, var) in listed {
            let line = text.lines().find(|l| l.trim_start().starts_with(option));
            let line = line.unwrap_or_else(|| panic!("{args:?}: {option} missing:\n{text}"));
            assert!(line.ends_with(var), "{line:?} should name {var}");
        }
    }
    // No arguments: the same text, as an error.
    let out = clean(FLEXSC, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--specialization"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn version() {
    let out = clean(FLEXSC, &["--version"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        format!("flexsc {}\n", env!("CARGO_PKG_VERSION"))
    );
}
