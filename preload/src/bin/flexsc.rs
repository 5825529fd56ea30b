//! `flexsc`: runs a program under libflexsc.
//!
//! `flexsc run [OPTIONS] -- CMD [ARGS...]` sets the `FLEXSC_*` variables of its options,
//! prepends `libflexsc.so` to `LD_PRELOAD` and executes CMD in its own place (execvp: PATH
//! search, same process, so CMD's exit status and signals are what the caller sees). See
//! `docs/usage.md` and `flexsc --help`. `flexsc profile ... -- CMD [ARGS...]` runs CMD as a
//! child with the syscall profiler's recorder on and reports what it recorded
//! (`launcher/profile.rs`).
//!
//! The launcher is a separate binary so that the library itself carries none of this code.

#[path = "../launcher/options.rs"]
mod options;
#[path = "../launcher/profile.rs"]
mod profile;

use std::env;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use flexsc_threads::kmod::config::KMOD_DEVICE;
use options::Invocation;

/// The file name of the library (cargo's name for the cdylib `flexsc`).
const LIB_NAME: &str = "libflexsc.so";

/// The exit status of a usage error or of a launch that could not be set up.
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<OsString> = env::args_os().skip(1).collect();
    match options::parse(&args) {
        Ok(Invocation::Help) => {
            print!("{}", options::usage());
            ExitCode::SUCCESS
        }
        Ok(Invocation::Usage) => {
            eprint!("{}", options::usage());
            ExitCode::from(USAGE_ERROR)
        }
        Ok(Invocation::Version) => {
            println!("flexsc {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Invocation::Run(run)) => launch(run),
        Ok(Invocation::Profile(p)) => profile::main(p),
        Err(e) => {
            eprintln!("flexsc: {e} (see `flexsc --help`)");
            ExitCode::from(USAGE_ERROR)
        }
    }
}

/// Sets up the environment and replaces this process with the command; returns only if that
/// fails: 2 if the launch could not be set up, 127 if the command was not found, 126 if it could
/// not be executed (the shell's and env(1)'s convention).
fn launch(run: options::Run) -> ExitCode {
    let preload = match preload_for(&run) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("flexsc: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let (program, args) = run
        .command
        .split_first()
        .expect("options::parse rejects an empty command");
    let mut cmd = Command::new(program);
    cmd.args(args).envs(&run.set).env("LD_PRELOAD", preload);
    for var in run.remove {
        cmd.env_remove(var);
    }
    let err = cmd.exec();
    eprintln!("flexsc: cannot run {program:?}: {err}");
    ExitCode::from(if err.kind() == ErrorKind::NotFound {
        127
    } else {
        126
    })
}

/// The `LD_PRELOAD` value for `run`, after checking that its backend can run here.
fn preload_for(run: &options::Run) -> Result<OsString, String> {
    let kmod = run.set.get(options::BACKEND).is_some_and(|b| b == "kmod");
    if kmod && !Path::new(KMOD_DEVICE).exists() {
        return Err(format!(
            "the kmod backend needs {KMOD_DEVICE}: load the flexsc kernel module \
             (docs/kernel-module.md)"
        ));
    }
    find_library().and_then(|lib| ld_preload(&lib))
}

/// The library to preload, as an absolute path: `FLEXSC_LIB` if set (and not empty), else the
/// first file of [`library_places`].
fn find_library() -> Result<PathBuf, String> {
    if let Some(lib) = env::var_os("FLEXSC_LIB").filter(|v| !v.is_empty()) {
        let path = std::path::absolute(&lib)
            .map_err(|e| format!("FLEXSC_LIB={}: {e}", lib.to_string_lossy()))?;
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "FLEXSC_LIB={}: no such file",
                lib.to_string_lossy()
            ))
        };
    }
    let exe = env::current_exe().map_err(|e| {
        format!("cannot find this executable, so not {LIB_NAME} either: {e} (set FLEXSC_LIB)")
    })?;
    let places = library_places(exe.parent().unwrap_or(Path::new("/")));
    places.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let looked: Vec<_> = places.iter().map(|p| p.display().to_string()).collect();
        format!(
            "{LIB_NAME} not found: looked at {} (build it with `cargo build -p flexsc-preload`, \
             or set FLEXSC_LIB to its path)",
            looked.join(", ")
        )
    })
}

/// Where to look for the library, given the directory of this executable (`current_exe`, an
/// absolute path with symbolic links resolved), in order:
///
/// 1. `deps/libflexsc.so`: in a cargo target directory (`target/<profile>/`), the cdylib as
///    cargo last built it. Cargo copies it to `target/<profile>/` only when the library is a
///    target of the command (`cargo build`); when it is built as a dependency (`cargo test`,
///    `cargo run --bin flexsc`) it stays in `deps/`, and a copy an earlier `cargo build` left
///    is not updated (rust-lang/cargo#8311, #6162).
/// 2. `libflexsc.so` beside the executable (`cargo build`'s copy, or a bundle).
/// 3. `../lib/libflexsc.so` (an installed layout: `bin/flexsc`, `lib/libflexsc.so`).
fn library_places(dir: &Path) -> Vec<PathBuf> {
    [
        Some(dir.join("deps").join(LIB_NAME)),
        Some(dir.join(LIB_NAME)),
        dir.parent().map(|up| up.join("lib").join(LIB_NAME)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `LD_PRELOAD` with `lib` first, then the inherited value if any.
fn ld_preload(lib: &Path) -> Result<OsString, String> {
    // The dynamic loader splits LD_PRELOAD at colons and spaces.
    if lib
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .any(|b| matches!(b, b':' | b' '))
    {
        return Err(format!(
            "{}: LD_PRELOAD cannot hold a path with a colon or a space",
            lib.display()
        ));
    }
    let mut value = OsString::from(lib);
    if let Some(old) = env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        value.push(":");
        value.push(old);
    }
    Ok(value)
}
