//! glibc's own functions, for the calls libflexsc.so does not take over (callers that are not
//! green threads, and everything before the runtime starts): looked up once with
//! `dlsym(RTLD_NEXT, ...)`, the next definition after this library's, which is libc's.

use std::ffi::{CStr, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The address of the next definition of `name`; aborts with a message if there is none (the
/// export that asked has no way to do its job).
pub(crate) fn lookup(slot: &AtomicUsize, name: &CStr) -> *mut c_void {
    let p = slot.load(Ordering::Relaxed);
    if p != 0 {
        return p as *mut c_void;
    }
    // SAFETY: a symbol lookup with a NUL-terminated name; RTLD_NEXT is valid from a shared
    // object's code.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if p.is_null() {
        missing();
    }
    slot.store(p as usize, Ordering::Relaxed);
    p
}

/// A wrapped libc function is not there: the export that asked has no way to do its job.
fn missing() -> ! {
    let msg = b"libflexsc: a libc function it wraps was not found\n";
    // SAFETY: writes a static message to stderr, then aborts.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::abort()
    }
}

/// Declares `real::name()`, returning glibc's `name` as a function pointer of the given type.
/// The pointers are "C-unwind": glibc's cancellation points and `pthread_exit` end a glibc
/// thread with a forced unwind, which passes through the export that called them.
macro_rules! real {
    ($($name:ident: fn($($arg:ty),*) -> $ret:ty;)*) => {$(
        #[doc = concat!("glibc's `", stringify!($name), "`.")]
        pub(crate) fn $name() -> unsafe extern "C-unwind" fn($($arg),*) -> $ret {
            static SLOT: AtomicUsize = AtomicUsize::new(0);
            let p = lookup(&SLOT, {
                const NAME: &CStr = match CStr::from_bytes_with_nul(
                    concat!(stringify!($name), "\0").as_bytes(),
                ) {
                    Ok(n) => n,
                    Err(_) => panic!("a symbol name with a NUL"),
                };
                NAME
            });
            // SAFETY: `p` is glibc's definition of the function, whose C signature is the one
            // declared here (checked against the glibc headers when this list was written).
            unsafe {
                std::mem::transmute::<*mut c_void, unsafe extern "C-unwind" fn($($arg),*) -> $ret>(p)
            }
        }
    )*};
}

use libc::{
    c_char, c_int, c_uint, clockid_t, epoll_event, fd_set, iovec, mode_t, msghdr, nfds_t, off_t,
    pid_t, pollfd, pthread_attr_t, pthread_t, rusage, sigset_t, size_t, sockaddr, socklen_t,
    ssize_t, timespec, timeval, useconds_t,
};

real! {
    pthread_create: fn(*mut pthread_t, *const pthread_attr_t, extern "C" fn(*mut c_void) -> *mut c_void, *mut c_void) -> c_int;
    pthread_join: fn(pthread_t, *mut *mut c_void) -> c_int;
    pthread_detach: fn(pthread_t) -> c_int;
    pthread_exit: fn(*mut c_void) -> ();
    pthread_getattr_np: fn(pthread_t, *mut pthread_attr_t) -> c_int;
    pthread_setname_np: fn(pthread_t, *const c_char) -> c_int;
    pthread_getname_np: fn(pthread_t, *mut c_char, size_t) -> c_int;
    pthread_setaffinity_np: fn(pthread_t, size_t, *const libc::cpu_set_t) -> c_int;
    pthread_getaffinity_np: fn(pthread_t, size_t, *mut libc::cpu_set_t) -> c_int;
    sched_setaffinity: fn(pid_t, size_t, *const libc::cpu_set_t) -> c_int;
    sched_getaffinity: fn(pid_t, size_t, *mut libc::cpu_set_t) -> c_int;
    pthread_setschedparam: fn(pthread_t, c_int, *const libc::sched_param) -> c_int;
    pthread_getschedparam: fn(pthread_t, *mut c_int, *mut libc::sched_param) -> c_int;
    pthread_setschedprio: fn(pthread_t, c_int) -> c_int;
    pthread_getcpuclockid: fn(pthread_t, *mut clockid_t) -> c_int;
    sched_yield: fn() -> c_int;
    pthread_kill: fn(pthread_t, c_int) -> c_int;
    pthread_tryjoin_np: fn(pthread_t, *mut *mut c_void) -> c_int;
    pthread_timedjoin_np: fn(pthread_t, *mut *mut c_void, *const timespec) -> c_int;
    pthread_clockjoin_np: fn(pthread_t, *mut *mut c_void, clockid_t, *const timespec) -> c_int;
    pthread_sigmask: fn(c_int, *const sigset_t, *mut sigset_t) -> c_int;
    sigprocmask: fn(c_int, *const sigset_t, *mut sigset_t) -> c_int;
    pthread_sigqueue: fn(pthread_t, c_int, libc::sigval) -> c_int;
    sigpending: fn(*mut sigset_t) -> c_int;
    sigaction: fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
    sigwait: fn(*const sigset_t, *mut c_int) -> c_int;
    sigtimedwait: fn(*const sigset_t, *mut libc::siginfo_t, *const timespec) -> c_int;
    read: fn(c_int, *mut c_void, size_t) -> ssize_t;
    write: fn(c_int, *const c_void, size_t) -> ssize_t;
    dlopen: fn(*const c_char, c_int) -> *mut c_void;
    pread64: fn(c_int, *mut c_void, size_t, off_t) -> ssize_t;
    pwrite64: fn(c_int, *const c_void, size_t, off_t) -> ssize_t;
    readv: fn(c_int, *const iovec, c_int) -> ssize_t;
    writev: fn(c_int, *const iovec, c_int) -> ssize_t;
    recv: fn(c_int, *mut c_void, size_t, c_int) -> ssize_t;
    recvfrom: fn(c_int, *mut c_void, size_t, c_int, *mut sockaddr, *mut socklen_t) -> ssize_t;
    send: fn(c_int, *const c_void, size_t, c_int) -> ssize_t;
    sendto: fn(c_int, *const c_void, size_t, c_int, *const sockaddr, socklen_t) -> ssize_t;
    recvmsg: fn(c_int, *mut msghdr, c_int) -> ssize_t;
    sendmsg: fn(c_int, *const msghdr, c_int) -> ssize_t;
    accept: fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
    accept4: fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
    connect: fn(c_int, *const sockaddr, socklen_t) -> c_int;
    poll: fn(*mut pollfd, nfds_t, c_int) -> c_int;
    ppoll: fn(*mut pollfd, nfds_t, *const timespec, *const sigset_t) -> c_int;
    select: fn(c_int, *mut fd_set, *mut fd_set, *mut fd_set, *mut timeval) -> c_int;
    epoll_wait: fn(c_int, *mut epoll_event, c_int, c_int) -> c_int;
    epoll_pwait: fn(c_int, *mut epoll_event, c_int, c_int, *const sigset_t) -> c_int;
    fsync: fn(c_int) -> c_int;
    fdatasync: fn(c_int) -> c_int;
    sendfile: fn(c_int, c_int, *mut off_t, size_t) -> ssize_t;
    close: fn(c_int) -> c_int;
    waitpid: fn(pid_t, *mut c_int, c_int) -> pid_t;
    wait4: fn(pid_t, *mut c_int, c_int, *mut rusage) -> pid_t;
    open: fn(*const c_char, c_int, mode_t) -> c_int;
    open64: fn(*const c_char, c_int, mode_t) -> c_int;
    openat: fn(c_int, *const c_char, c_int, mode_t) -> c_int;
    openat64: fn(c_int, *const c_char, c_int, mode_t) -> c_int;
    creat: fn(*const c_char, mode_t) -> c_int;
    creat64: fn(*const c_char, mode_t) -> c_int;
    pread: fn(c_int, *mut c_void, size_t, off_t) -> ssize_t;
    pwrite: fn(c_int, *const c_void, size_t, off_t) -> ssize_t;
    preadv: fn(c_int, *const iovec, c_int, off_t) -> ssize_t;
    preadv64: fn(c_int, *const iovec, c_int, off_t) -> ssize_t;
    pwritev: fn(c_int, *const iovec, c_int, off_t) -> ssize_t;
    pwritev64: fn(c_int, *const iovec, c_int, off_t) -> ssize_t;
    preadv2: fn(c_int, *const iovec, c_int, off_t, c_int) -> ssize_t;
    preadv64v2: fn(c_int, *const iovec, c_int, off_t, c_int) -> ssize_t;
    pwritev2: fn(c_int, *const iovec, c_int, off_t, c_int) -> ssize_t;
    pwritev64v2: fn(c_int, *const iovec, c_int, off_t, c_int) -> ssize_t;
    sendmmsg: fn(c_int, *mut libc::mmsghdr, c_uint, c_int) -> c_int;
    recvmmsg: fn(c_int, *mut libc::mmsghdr, c_uint, c_int, *mut timespec) -> c_int;
    flock: fn(c_int, c_int) -> c_int;
    splice: fn(c_int, *mut libc::loff_t, c_int, *mut libc::loff_t, size_t, c_uint) -> ssize_t;
    tee: fn(c_int, c_int, size_t, c_uint) -> ssize_t;
    vmsplice: fn(c_int, *const iovec, size_t, c_uint) -> ssize_t;
    wait: fn(*mut c_int) -> pid_t;
    waitid: fn(libc::idtype_t, libc::id_t, *mut libc::siginfo_t, c_int) -> c_int;
    epoll_pwait2: fn(c_int, *mut epoll_event, c_int, *const timespec, *const sigset_t) -> c_int;
    stat: fn(*const c_char, *mut libc::stat) -> c_int;
    stat64: fn(*const c_char, *mut libc::stat64) -> c_int;
    lstat: fn(*const c_char, *mut libc::stat) -> c_int;
    lstat64: fn(*const c_char, *mut libc::stat64) -> c_int;
    fstat: fn(c_int, *mut libc::stat) -> c_int;
    fstat64: fn(c_int, *mut libc::stat64) -> c_int;
    fstatat: fn(c_int, *const c_char, *mut libc::stat, c_int) -> c_int;
    fstatat64: fn(c_int, *const c_char, *mut libc::stat64, c_int) -> c_int;
    statx: fn(c_int, *const c_char, c_int, c_uint, *mut libc::statx) -> c_int;
    posix_spawn: fn(*mut pid_t, *const c_char, *const libc::posix_spawn_file_actions_t,
        *const libc::posix_spawnattr_t, *const *mut c_char, *const *mut c_char) -> c_int;
    posix_spawnp: fn(*mut pid_t, *const c_char, *const libc::posix_spawn_file_actions_t,
        *const libc::posix_spawnattr_t, *const *mut c_char, *const *mut c_char) -> c_int;
    system: fn(*const c_char) -> c_int;
    vfork: fn() -> pid_t;
    fcntl: fn(c_int, c_int, libc::c_ulong) -> c_int;
    ioctl: fn(c_int, libc::c_ulong, libc::c_ulong) -> c_int;
    dup: fn(c_int) -> c_int;
    dup2: fn(c_int, c_int) -> c_int;
    dup3: fn(c_int, c_int, c_int) -> c_int;
    close_range: fn(c_uint, c_uint, c_int) -> c_int;
    closefrom: fn(c_int) -> ();
    fcntl64: fn(c_int, c_int, libc::c_ulong) -> c_int;
    pselect: fn(c_int, *mut fd_set, *mut fd_set, *mut fd_set, *const timespec, *const sigset_t) -> c_int;
    nanosleep: fn(*const timespec, *mut timespec) -> c_int;
    clock_nanosleep: fn(clockid_t, c_int, *const timespec, *mut timespec) -> c_int;
    usleep: fn(useconds_t) -> c_int;
    sleep: fn(c_uint) -> c_uint;
    pthread_cancel: fn(pthread_t) -> c_int;
    pthread_testcancel: fn() -> ();
    pthread_setcancelstate: fn(c_int, *mut c_int) -> c_int;
    pthread_setcanceltype: fn(c_int, *mut c_int) -> c_int;
    __pthread_register_cancel: fn(*mut c_void) -> ();
    __pthread_register_cancel_defer: fn(*mut c_void) -> ();
    __pthread_unregister_cancel: fn(*mut c_void) -> ();
    __pthread_unregister_cancel_restore: fn(*mut c_void) -> ();
    __pthread_unwind_next: fn(*mut c_void) -> ();
    _pthread_cleanup_push: fn(*mut c_void, unsafe extern "C" fn(*mut c_void), *mut c_void) -> ();
    _pthread_cleanup_pop: fn(*mut c_void, c_int) -> ();
}

/// Declares `real::name()` for glibc's compatibility symbols, which only have a hidden version
/// (`dlsym` does not find those): looked up with `dlvsym` at `version`.
/// `rust_name = symbol @ "VERSION"` names the function differently from the symbol.
macro_rules! real_versioned {
    ($($name:ident @ $version:literal: fn($($arg:ty),*) -> $ret:ty;)*) => {
        real_versioned!($($name = $name @ $version: fn($($arg),*) -> $ret;)*);
    };
    ($($fn_name:ident = $name:ident @ $version:literal: fn($($arg:ty),*) -> $ret:ty;)*) => {$(
        #[doc = concat!("glibc's `", stringify!($name), "@", $version, "`.")]
        pub(crate) fn $fn_name() -> unsafe extern "C-unwind" fn($($arg),*) -> $ret {
            static SLOT: AtomicUsize = AtomicUsize::new(0);
            let mut p = SLOT.load(Ordering::Relaxed) as *mut c_void;
            if p.is_null() {
                // SAFETY: a versioned lookup with NUL-terminated names; RTLD_NEXT is valid from
                // a shared object's code.
                p = unsafe {
                    libc::dlvsym(
                        libc::RTLD_NEXT,
                        concat!(stringify!($name), "\0").as_ptr().cast(),
                        concat!($version, "\0").as_ptr().cast(),
                    )
                };
                if p.is_null() {
                    missing();
                }
                SLOT.store(p as usize, Ordering::Relaxed);
            }
            // SAFETY: `p` is glibc's definition of the function, whose C signature is the one
            // declared here.
            unsafe {
                std::mem::transmute::<*mut c_void, unsafe extern "C-unwind" fn($($arg),*) -> $ret>(p)
            }
        }
    )*};
}

real_versioned! {
    _pthread_cleanup_push_defer @ "GLIBC_2.2.5":
        fn(*mut c_void, unsafe extern "C" fn(*mut c_void), *mut c_void) -> ();
    _pthread_cleanup_pop_restore @ "GLIBC_2.2.5": fn(*mut c_void, c_int) -> ();
}

real_versioned! {
    fork_without_handlers = _Fork @ "GLIBC_2.34": fn() -> pid_t;
    pthread_kill_esrch = pthread_kill @ "GLIBC_2.2.5": fn(pthread_t, c_int) -> c_int;
    posix_spawn_compat = posix_spawn @ "GLIBC_2.2.5": fn(*mut pid_t, *const c_char,
        *const libc::posix_spawn_file_actions_t, *const libc::posix_spawnattr_t,
        *const *mut c_char, *const *mut c_char) -> c_int;
    posix_spawnp_compat = posix_spawnp @ "GLIBC_2.2.5": fn(*mut pid_t, *const c_char,
        *const libc::posix_spawn_file_actions_t, *const libc::posix_spawnattr_t,
        *const *mut c_char, *const *mut c_char) -> c_int;
}
