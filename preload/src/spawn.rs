//! Running programs from green threads: `system`, `posix_spawn`/`posix_spawnp`, `vfork` and
//! `_Fork`. The green thread waits for the child parked, not its carrier, and nothing the child
//! runs goes through the syscall pages:
//!
//! - `system`: the steps of glibc's, with the library's calls: `SIGINT` and `SIGQUIT` ignored in
//!   the process while any `system` runs (counted, as glibc does), `SIGCHLD` blocked in the
//!   caller's own mask, `/bin/sh -c` started by glibc's `posix_spawn` with the caller's mask and
//!   those two signals at their default action, then the exception-less `waitpid` (a
//!   cancellation point: a cancelled caller kills and reaps the child first, as glibc's does).
//! - `posix_spawn`/`posix_spawnp`: glibc's (its child runs on a stack of its own and makes only
//!   libc-internal calls, which never reach an export: libc's only interposable calls are the
//!   allocator's), with the calling green thread's signal mask for the child unless the
//!   attributes set one (glibc's would give it the carrier's). glibc starts the child with
//!   `CLONE_VFORK`, which holds the carrier until the child has called `exec` (or failed to):
//!   a short wait, not the child's run time.
//! - `vfork` on a green thread is `_Fork`: a vfork child shares the parent's memory, and any
//!   export it called (`close` before `exec` is common) would post to the parent's syscall pages
//!   and switch green threads in the parent's runtime. A copy-on-write child is what a correct
//!   vfork program cannot tell apart (it may only `exec` or `_exit`), and no carrier waits for
//!   it. Elsewhere `vfork` is glibc's.
//! - `_Fork` (no `atfork` handlers): glibc's; in the child of a green thread, the thread stops
//!   being one (async-signal-safe steps only: [`rt::become_plain_in_child`]).
//!
//! The `GLIBC_2.2.5` `posix_spawn`/`posix_spawnp` (which run a script without `#!` through the
//! shell) keep that behaviour ([`crate::versions`]).

use std::ffi::c_char;
use std::sync::Mutex;

use libc::{c_int, pid_t, posix_spawn_file_actions_t, posix_spawnattr_t, sigset_t};

use crate::{real, rt, signal};

/// A `posix_spawn`-shaped function.
type Spawn = unsafe extern "C-unwind" fn(
    *mut pid_t,
    *const c_char,
    *const posix_spawn_file_actions_t,
    *const posix_spawnattr_t,
    *const *mut c_char,
    *const *mut c_char,
) -> c_int;

unsafe extern "C" {
    static environ: *const *mut c_char;
}

/// Whether the caller is application code on a green thread.
fn green_caller() -> bool {
    rt::application_caller() && rt::on_green_thread()
}

/// Runs `spawn` with the calling green thread's mask for the child, unless `attr` sets one.
///
/// # Safety
/// As `posix_spawn(3)`.
unsafe fn with_green_mask(
    spawn: Spawn,
    pid: *mut pid_t,
    path: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    let Some(mask) = green_caller().then(signal::green_mask).flatten() else {
        // SAFETY: forwarded unchanged.
        return unsafe { spawn(pid, path, actions, attr, argv, envp) };
    };
    // SAFETY: a zeroed attribute is valid storage for init or a copy.
    let mut a: posix_spawnattr_t = unsafe { std::mem::zeroed() };
    // SAFETY: glibc's posix_spawnattr_t holds plain values (flags, pgrp, signal sets, sched
    // parameters), so a bitwise copy of the caller's is an attribute object; init fills a fresh
    // one.
    unsafe {
        match attr.as_ref() {
            Some(attr) => std::ptr::copy_nonoverlapping(attr, &mut a, 1),
            None => {
                libc::posix_spawnattr_init(&mut a);
            }
        }
    }
    let mut flags: libc::c_short = 0;
    // SAFETY: `a` is an attribute object; the out-parameter and the set are ours.
    unsafe {
        libc::posix_spawnattr_getflags(&a, &mut flags);
        if flags & libc::POSIX_SPAWN_SETSIGMASK as libc::c_short == 0 {
            libc::posix_spawnattr_setsigmask(&mut a, &mask);
            libc::posix_spawnattr_setflags(
                &mut a,
                flags | libc::POSIX_SPAWN_SETSIGMASK as libc::c_short,
            );
        }
    }
    // SAFETY: the caller's arguments, with our copy of the attributes.
    unsafe { spawn(pid, path, actions, &a, argv, envp) }
}

/// `posix_spawn` (`@@GLIBC_2.15`): glibc's, with the green caller's signal mask (see the module
/// docs).
///
/// # Safety
/// As `posix_spawn(3)`.
#[unsafe(export_name = "__flexsc_posix_spawn")]
pub unsafe extern "C-unwind" fn posix_spawn(
    pid: *mut pid_t,
    path: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { with_green_mask(real::posix_spawn(), pid, path, actions, attr, argv, envp) }
}

/// `posix_spawnp` (`@@GLIBC_2.15`): as [`posix_spawn`], searching `PATH`.
///
/// # Safety
/// As `posix_spawnp(3)`.
#[unsafe(export_name = "__flexsc_posix_spawnp")]
pub unsafe extern "C-unwind" fn posix_spawnp(
    pid: *mut pid_t,
    file: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { with_green_mask(real::posix_spawnp(), pid, file, actions, attr, argv, envp) }
}

/// `posix_spawn@GLIBC_2.2.5`: as [`posix_spawn`], on glibc's function of that version.
///
/// # Safety
/// As `posix_spawn(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn __flexsc_posix_spawn_compat(
    pid: *mut pid_t,
    path: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        with_green_mask(
            real::posix_spawn_compat(),
            pid,
            path,
            actions,
            attr,
            argv,
            envp,
        )
    }
}

/// `posix_spawnp@GLIBC_2.2.5`.
///
/// # Safety
/// As `posix_spawnp(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn __flexsc_posix_spawnp_compat(
    pid: *mut pid_t,
    file: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        with_green_mask(
            real::posix_spawnp_compat(),
            pid,
            file,
            actions,
            attr,
            argv,
            envp,
        )
    }
}

/// `_Fork`: glibc's; the child of a green thread is a plain thread from its first instruction.
#[unsafe(no_mangle)]
pub extern "C" fn _Fork() -> pid_t {
    let green = rt::on_green_thread();
    // SAFETY: no arguments; glibc's _Fork works on any thread with a glibc TCB, a green
    // thread's included (as fork does).
    let pid = unsafe { real::fork_without_handlers()() };
    if pid == 0 && green {
        rt::become_plain_in_child();
    }
    pid
}

/// What `vfork` runs: [`_Fork`] on a green thread, glibc's `vfork` elsewhere.
extern "C" fn vfork_target() -> usize {
    if rt::on_green_thread() {
        _Fork as *const () as usize
    } else {
        real::vfork() as *const () as usize
    }
}

/// `vfork` (see the module docs). glibc's must be entered with the caller's own return address
/// on the stack (the child returns through it before the parent resumes), so this only asks
/// [`vfork_target`] which function to run and jumps to it.
///
/// # Safety
/// As `vfork(2)`: the child may only call `_exit` or an `exec` function (on a green thread it is
/// a copy, so more works, but a program must not rely on it).
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vfork() -> pid_t {
    core::arch::naked_asm!(
        // Keep the stack 16-byte aligned for the call; the return address stays on top.
        "sub rsp, 8",
        "call {target}",
        "add rsp, 8",
        "jmp rax",
        target = sym vfork_target,
    )
}

/// How many `system` calls are running, and the `SIGINT`/`SIGQUIT` actions the first one
/// replaced (glibc's scheme: the last one restores them).
static INTERACTIVE: Mutex<(usize, Option<(libc::sigaction, libc::sigaction)>)> =
    Mutex::new((0, None));

/// `system`: on a green thread, see the module docs; elsewhere glibc's.
///
/// # Safety
/// As `system(3)`: `command` null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn system(command: *const c_char) -> c_int {
    if !green_caller() {
        // SAFETY: forwarded unchanged.
        return unsafe { real::system()(command) };
    }
    if command.is_null() {
        // Whether a shell is there (glibc's test).
        // SAFETY: a NUL-terminated command.
        return c_int::from(unsafe { run_shell(c"exit 0".as_ptr()) } == 0);
    }
    // SAFETY: the caller's contract.
    unsafe { run_shell(command) }
}

/// Undoes what `system` changed when it ends, whether it returns or is cancelled: the child
/// killed and reaped if it is still there, `SIGINT`/`SIGQUIT` restored by the last `system`,
/// the caller's mask restored.
struct Restore {
    child: Option<pid_t>,
    mask: sigset_t,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(pid) = self.child {
            // Cancelled while waiting: glibc kills the child and reaps it (not a cancellation
            // point: trapped directly, the child dies at once).
            // SAFETY: signals and reaps our own child; no memory is passed but a null status.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                flexsc_threads::kmod::raw::syscall(libc::SYS_wait4, [pid as u64, 0, 0]);
            }
        }
        {
            let _lib = rt::InLib::enter();
            let mut g = INTERACTIVE.lock().unwrap_or_else(|e| e.into_inner());
            g.0 -= 1;
            if g.0 == 0
                && let Some((int, quit)) = g.1.take()
            {
                // SAFETY: actions read by sigaction before; null old-action pointers.
                unsafe {
                    real::sigaction()(libc::SIGINT, &int, std::ptr::null_mut());
                    real::sigaction()(libc::SIGQUIT, &quit, std::ptr::null_mut());
                }
            }
        }
        // SAFETY: the mask saved by system, on the calling green thread.
        unsafe { signal::pthread_sigmask(libc::SIG_SETMASK, &self.mask, std::ptr::null_mut()) };
    }
}

/// glibc's `do_system` on a green thread.
///
/// # Safety
/// `line` a NUL-terminated string.
unsafe fn run_shell(line: *const c_char) -> c_int {
    // SAFETY: zeroed sigactions and sets are valid; sigemptyset/sigaddset write our own.
    let (ignore, chld, mut mask, mut reset) = unsafe {
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        libc::sigemptyset(&mut ignore.sa_mask);
        let mut chld: sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        let mut reset: sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut reset);
        (ignore, chld, std::mem::zeroed::<sigset_t>(), reset)
    };
    let (int, quit) = {
        let _lib = rt::InLib::enter();
        let mut g = INTERACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 == 0 {
            // SAFETY: zeroed sigactions are valid out-parameters; `ignore` is valid.
            let saved = unsafe {
                let mut int: libc::sigaction = std::mem::zeroed();
                let mut quit: libc::sigaction = std::mem::zeroed();
                real::sigaction()(libc::SIGINT, &ignore, &mut int);
                real::sigaction()(libc::SIGQUIT, &ignore, &mut quit);
                (int, quit)
            };
            g.1 = Some(saved);
        }
        g.0 += 1;
        g.1.expect("saved by the first system")
    };
    // SAFETY: our own sets; on a green thread this is its own mask.
    unsafe { signal::pthread_sigmask(libc::SIG_BLOCK, &chld, &mut mask) };
    let mut restore = Restore { child: None, mask };
    // SAFETY: our own sets and attribute object (destroyed below), argv and the environment
    // valid for the call.
    let (r, pid) = unsafe {
        if int.sa_sigaction != libc::SIG_IGN {
            libc::sigaddset(&mut reset, libc::SIGINT);
        }
        if quit.sa_sigaction != libc::SIG_IGN {
            libc::sigaddset(&mut reset, libc::SIGQUIT);
        }
        let mut attr: posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawnattr_init(&mut attr);
        libc::posix_spawnattr_setsigmask(&mut attr, &restore.mask);
        libc::posix_spawnattr_setsigdefault(&mut attr, &reset);
        libc::posix_spawnattr_setflags(
            &mut attr,
            (libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as libc::c_short,
        );
        let argv = [
            c"sh".as_ptr().cast_mut(),
            c"-c".as_ptr().cast_mut(),
            line.cast_mut(),
            std::ptr::null_mut(),
        ];
        let mut pid = 0;
        let r = real::posix_spawn()(
            &mut pid,
            c"/bin/sh".as_ptr(),
            std::ptr::null(),
            &attr,
            argv.as_ptr(),
            environ,
        );
        libc::posix_spawnattr_destroy(&mut attr);
        (r, pid)
    };
    if r != 0 {
        drop(restore);
        crate::io::set_errno(r);
        // As if the shell had ended with _exit(127) (POSIX).
        return 127 << 8;
    }
    restore.child = Some(pid);
    let mut status = 0;
    let status = loop {
        // The exception-less waitpid: the green thread parks; a cancellation point.
        // SAFETY: our own status word.
        let w = unsafe { crate::io::waitpid(pid, &mut status, 0) };
        if w == pid {
            break status;
        }
        if w == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        break -1;
    };
    restore.child = None;
    status
}
