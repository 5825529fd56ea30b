//! How the ABI tests read a header's facts: compile a program against `include/` with every
//! warning an error (strict C11 or C++11: the headers must not lean on compiler extensions beyond
//! `__attribute__`), run it, and collect the `name value` lines it prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Compiles `program`, saved as `file`, against `include/` (`abi.c`: `$CC`, default `cc`,
/// `-std=c11`; `abi.cpp`: `$CXX`, default `g++`, `-std=c++11`), runs it and returns its `name
/// value` lines. Panics (failing the test) if the compiler rejects it, or it fails or prints
/// anything else.
pub fn facts(file: &str, program: &str) -> BTreeMap<String, u64> {
    let (var, default, std) = if file.ends_with(".cpp") {
        ("CXX", "g++", "-std=c++11")
    } else {
        ("CC", "cc", "-std=c11")
    };
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let dir = TempDir::new();
    let src = dir.0.join(file);
    let exe = dir.0.join("abi");
    std::fs::write(&src, program).expect("write the program");
    let compiler = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    let out = Command::new(&compiler)
        .args([std, "-pedantic", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(&include)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("run {compiler}: {e}"));
    assert!(
        out.status.success(),
        "{compiler} rejected the header:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().expect("run the program");
    assert!(run.status.success(), "the program failed: {:?}", run.status);
    String::from_utf8(run.stdout)
        .expect("ASCII output")
        .lines()
        .map(|line| {
            let (k, v) = line.split_once(' ').expect("`name value` lines");
            (k.to_owned(), v.parse().expect("a number"))
        })
        .collect()
}

/// A scratch directory removed when dropped (also when the test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        // Tests of one binary run in parallel: the pid alone does not tell them apart.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("flexsc-abi-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
