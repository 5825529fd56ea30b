//! glibc's symbol versions for the exports, so that a lookup by version finds them: a program's
//! `dlvsym(RTLD_DEFAULT, "pthread_cond_wait", "GLIBC_2.3.2")` (which skips unversioned
//! definitions), and references bound to a version whose behaviour differs from the current one.
//! Also the `__pthread_*` names libc 2.36 still exports (compatibility versions, and
//! `__pthread_key_create` at `GLIBC_2.34`), on the corresponding exports.
//!
//! Every export keeps its unversioned definition, which the dynamic loader binds to a reference
//! of any version, except those whose glibc versions differ: `pthread_kill@GLIBC_2.2.5`
//! returns `ESRCH` for a thread that has exited (2.34's returns 0), the `GLIBC_2.3.3`
//! affinity calls take no size (a 128-byte `cpu_set_t`), and `posix_spawn`/`posix_spawnp` at
//! `GLIBC_2.2.5` run a script without `#!` through the shell. Those have no unversioned definition
//! (the loader would pick either one for an old reference): their current version is the
//! default (`@@`), as in libc.
//!
//! Each version is a thunk that jumps to the export through the PLT (so to the same definition
//! a call by name reaches), renamed by `.symver`. The version nodes are defined by
//! `glibc-versions.map`, which `build.rs` adds to the link of the cdylib; rust-lld (rustc's
//! default linker on x86_64 Linux) merges it with rustc's own anonymous version script. GNU ld
//! refuses that combination ("anonymous version tag cannot be combined with other version
//! tags"): the library does not link with `-fuse-ld=bfd`.
//!
//! The table is glibc 2.36's `nm -D --defined-only libc.so.6` for the names the library exports
//! (GLIBC_PRIVATE left out; `__pthread_cleanup_routine` is glibc's own: it only calls the
//! routine of a C cleanup frame).

/// One thunk per version: `target => name { tag = "VERSION" "@" or "@@", ... }`.
macro_rules! versions {
    ($($target:ident => $name:ident { $($tag:ident = $ver:literal $at:literal),* })*) => {
        std::arch::global_asm!($($(
            concat!(".globl __flexsc_v_", stringify!($name), "_", stringify!($tag)),
            concat!(".type __flexsc_v_", stringify!($name), "_", stringify!($tag), ", @function"),
            concat!("__flexsc_v_", stringify!($name), "_", stringify!($tag), ":"),
            concat!("jmp ", stringify!($target), "@PLT"),
            concat!(
                ".symver __flexsc_v_", stringify!($name), "_", stringify!($tag), ", ",
                stringify!($name), $at, $ver
            ),
        )*)*);
    };
}

versions! {
    __poll_chk => __poll_chk { v2_16 = "GLIBC_2.16" "@" }
    __pread64_chk => __pread64_chk { v2_4 = "GLIBC_2.4" "@" }
    __pthread_register_cancel => __pthread_register_cancel { v2_3_3 = "GLIBC_2.3.3" "@", v2_34 = "GLIBC_2.34" "@" }
    __pthread_register_cancel_defer => __pthread_register_cancel_defer { v2_3_3 = "GLIBC_2.3.3" "@", v2_34 = "GLIBC_2.34" "@" }
    __pthread_unregister_cancel => __pthread_unregister_cancel { v2_3_3 = "GLIBC_2.3.3" "@", v2_34 = "GLIBC_2.34" "@" }
    __pthread_unregister_cancel_restore => __pthread_unregister_cancel_restore { v2_3_3 = "GLIBC_2.3.3" "@", v2_34 = "GLIBC_2.34" "@" }
    __pthread_unwind_next => __pthread_unwind_next { v2_3_3 = "GLIBC_2.3.3" "@", v2_34 = "GLIBC_2.34" "@" }
    __read_chk => __read_chk { v2_4 = "GLIBC_2.4" "@" }
    __recv_chk => __recv_chk { v2_4 = "GLIBC_2.4" "@" }
    __recvfrom_chk => __recvfrom_chk { v2_4 = "GLIBC_2.4" "@" }
    _pthread_cleanup_pop => _pthread_cleanup_pop { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    _pthread_cleanup_pop_restore => _pthread_cleanup_pop_restore { v2_2_5 = "GLIBC_2.2.5" "@" }
    _pthread_cleanup_push => _pthread_cleanup_push { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    _pthread_cleanup_push_defer => _pthread_cleanup_push_defer { v2_2_5 = "GLIBC_2.2.5" "@" }
    accept => accept { v2_2_5 = "GLIBC_2.2.5" "@" }
    accept4 => accept4 { v2_10 = "GLIBC_2.10" "@" }
    bsd_signal => bsd_signal { v2_2_5 = "GLIBC_2.2.5" "@" }
    call_once => call_once { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    clock_nanosleep => clock_nanosleep { v2_2_5 = "GLIBC_2.2.5" "@", v2_17 = "GLIBC_2.17" "@" }
    close => close { v2_2_5 = "GLIBC_2.2.5" "@" }
    dup2 => dup2 { v2_2_5 = "GLIBC_2.2.5" "@" }
    dup3 => dup3 { v2_9 = "GLIBC_2.9" "@" }
    cnd_broadcast => cnd_broadcast { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    cnd_destroy => cnd_destroy { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    cnd_init => cnd_init { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    cnd_signal => cnd_signal { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    cnd_timedwait => cnd_timedwait { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    cnd_wait => cnd_wait { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    connect => connect { v2_2_5 = "GLIBC_2.2.5" "@" }
    dlopen => dlopen { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    creat => creat { v2_2_5 = "GLIBC_2.2.5" "@" }
    creat64 => creat64 { v2_2_5 = "GLIBC_2.2.5" "@" }
    epoll_pwait => epoll_pwait { v2_6 = "GLIBC_2.6" "@" }
    epoll_pwait2 => epoll_pwait2 { v2_35 = "GLIBC_2.35" "@" }
    epoll_wait => epoll_wait { v2_3_2 = "GLIBC_2.3.2" "@" }
    fcntl => fcntl { v2_2_5 = "GLIBC_2.2.5" "@" }
    fcntl64 => fcntl64 { v2_28 = "GLIBC_2.28" "@" }
    fdatasync => fdatasync { v2_2_5 = "GLIBC_2.2.5" "@" }
    flock => flock { v2_2_5 = "GLIBC_2.2.5" "@" }
    fsync => fsync { v2_2_5 = "GLIBC_2.2.5" "@" }
    gettid => gettid { v2_30 = "GLIBC_2.30" "@" }
    mmap => mmap { v2_2_5 = "GLIBC_2.2.5" "@" }
    mmap64 => mmap64 { v2_2_5 = "GLIBC_2.2.5" "@" }
    mprotect => mprotect { v2_2_5 = "GLIBC_2.2.5" "@" }
    mremap => mremap { v2_2_5 = "GLIBC_2.2.5" "@" }
    mtx_destroy => mtx_destroy { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    mtx_init => mtx_init { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    mtx_lock => mtx_lock { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    mtx_timedlock => mtx_timedlock { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    mtx_trylock => mtx_trylock { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    mtx_unlock => mtx_unlock { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    munmap => munmap { v2_2_5 = "GLIBC_2.2.5" "@" }
    nanosleep => nanosleep { v2_2_5 = "GLIBC_2.2.5" "@" }
    open => open { v2_2_5 = "GLIBC_2.2.5" "@" }
    open64 => open64 { v2_2_5 = "GLIBC_2.2.5" "@" }
    openat => openat { v2_4 = "GLIBC_2.4" "@" }
    openat64 => openat64 { v2_4 = "GLIBC_2.4" "@" }
    poll => poll { v2_2_5 = "GLIBC_2.2.5" "@" }
    ppoll => ppoll { v2_4 = "GLIBC_2.4" "@" }
    pread => pread { v2_2_5 = "GLIBC_2.2.5" "@" }
    pread64 => pread64 { v2_2_5 = "GLIBC_2.2.5" "@" }
    preadv => preadv { v2_10 = "GLIBC_2.10" "@" }
    preadv2 => preadv2 { v2_26 = "GLIBC_2.26" "@" }
    preadv64 => preadv64 { v2_10 = "GLIBC_2.10" "@" }
    preadv64v2 => preadv64v2 { v2_26 = "GLIBC_2.26" "@" }
    pselect => pselect { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_barrier_destroy => pthread_barrier_destroy { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_barrier_init => pthread_barrier_init { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_barrier_wait => pthread_barrier_wait { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_barrierattr_destroy => pthread_barrierattr_destroy { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_barrierattr_getpshared => pthread_barrierattr_getpshared { v2_3_3 = "GLIBC_2.3.3" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_barrierattr_init => pthread_barrierattr_init { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_barrierattr_setpshared => pthread_barrierattr_setpshared { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_cancel => pthread_cancel { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_clockjoin_np => pthread_clockjoin_np { v2_31 = "GLIBC_2.31" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_cond_broadcast => pthread_cond_broadcast { v2_2_5 = "GLIBC_2.2.5" "@", v2_3_2 = "GLIBC_2.3.2" "@" }
    pthread_cond_clockwait => pthread_cond_clockwait { v2_30 = "GLIBC_2.30" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_cond_destroy => pthread_cond_destroy { v2_2_5 = "GLIBC_2.2.5" "@", v2_3_2 = "GLIBC_2.3.2" "@" }
    pthread_cond_init => pthread_cond_init { v2_2_5 = "GLIBC_2.2.5" "@", v2_3_2 = "GLIBC_2.3.2" "@" }
    pthread_cond_signal => pthread_cond_signal { v2_2_5 = "GLIBC_2.2.5" "@", v2_3_2 = "GLIBC_2.3.2" "@" }
    pthread_cond_timedwait => pthread_cond_timedwait { v2_2_5 = "GLIBC_2.2.5" "@", v2_3_2 = "GLIBC_2.3.2" "@" }
    pthread_cond_wait => pthread_cond_wait { v2_2_5 = "GLIBC_2.2.5" "@", v2_3_2 = "GLIBC_2.3.2" "@" }
    pthread_condattr_destroy => pthread_condattr_destroy { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_condattr_getclock => pthread_condattr_getclock { v2_3_3 = "GLIBC_2.3.3" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_condattr_getpshared => pthread_condattr_getpshared { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_condattr_init => pthread_condattr_init { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_condattr_setclock => pthread_condattr_setclock { v2_3_3 = "GLIBC_2.3.3" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_condattr_setpshared => pthread_condattr_setpshared { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_create => pthread_create { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_detach => pthread_detach { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_exit => pthread_exit { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_getattr_np => pthread_getattr_np { v2_2_5 = "GLIBC_2.2.5" "@", v2_32 = "GLIBC_2.32" "@" }
    pthread_getcpuclockid => pthread_getcpuclockid { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_getname_np => pthread_getname_np { v2_12 = "GLIBC_2.12" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_getschedparam => pthread_getschedparam { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_getspecific => pthread_getspecific { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_join => pthread_join { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_key_create => pthread_key_create { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_key_delete => pthread_key_delete { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_mutex_clocklock => pthread_mutex_clocklock { v2_30 = "GLIBC_2.30" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_mutex_consistent => pthread_mutex_consistent { v2_12 = "GLIBC_2.12" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_mutex_destroy => pthread_mutex_destroy { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_mutex_init => pthread_mutex_init { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_mutex_lock => pthread_mutex_lock { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_mutex_timedlock => pthread_mutex_timedlock { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_mutex_trylock => pthread_mutex_trylock { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_mutex_unlock => pthread_mutex_unlock { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_mutexattr_destroy => pthread_mutexattr_destroy { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_mutexattr_getprotocol => pthread_mutexattr_getprotocol { v2_4 = "GLIBC_2.4" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_mutexattr_getpshared => pthread_mutexattr_getpshared { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_mutexattr_getrobust => pthread_mutexattr_getrobust { v2_12 = "GLIBC_2.12" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_mutexattr_gettype => pthread_mutexattr_gettype { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_mutexattr_init => pthread_mutexattr_init { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_mutexattr_setprotocol => pthread_mutexattr_setprotocol { v2_4 = "GLIBC_2.4" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_mutexattr_setpshared => pthread_mutexattr_setpshared { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_mutexattr_setrobust => pthread_mutexattr_setrobust { v2_12 = "GLIBC_2.12" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_mutexattr_settype => pthread_mutexattr_settype { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_once => pthread_once { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlock_clockrdlock => pthread_rwlock_clockrdlock { v2_30 = "GLIBC_2.30" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlock_clockwrlock => pthread_rwlock_clockwrlock { v2_30 = "GLIBC_2.30" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlock_destroy => pthread_rwlock_destroy { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlock_init => pthread_rwlock_init { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlock_rdlock => pthread_rwlock_rdlock { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlock_timedrdlock => pthread_rwlock_timedrdlock { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlock_timedwrlock => pthread_rwlock_timedwrlock { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlock_tryrdlock => pthread_rwlock_tryrdlock { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlock_trywrlock => pthread_rwlock_trywrlock { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlock_unlock => pthread_rwlock_unlock { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlock_wrlock => pthread_rwlock_wrlock { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlockattr_destroy => pthread_rwlockattr_destroy { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlockattr_getkind_np => pthread_rwlockattr_getkind_np { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlockattr_getpshared => pthread_rwlockattr_getpshared { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlockattr_init => pthread_rwlockattr_init { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlockattr_setkind_np => pthread_rwlockattr_setkind_np { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_rwlockattr_setpshared => pthread_rwlockattr_setpshared { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_setcancelstate => pthread_setcancelstate { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_setcanceltype => pthread_setcanceltype { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_setname_np => pthread_setname_np { v2_12 = "GLIBC_2.12" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_setschedparam => pthread_setschedparam { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_setschedprio => pthread_setschedprio { v2_3_4 = "GLIBC_2.3.4" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_setspecific => pthread_setspecific { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_sigmask => pthread_sigmask { v2_2_5 = "GLIBC_2.2.5" "@", v2_32 = "GLIBC_2.32" "@" }
    pthread_sigqueue => pthread_sigqueue { v2_11 = "GLIBC_2.11" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_spin_destroy => pthread_spin_destroy { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_spin_init => pthread_spin_init { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_spin_lock => pthread_spin_lock { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_spin_trylock => pthread_spin_trylock { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_spin_unlock => pthread_spin_unlock { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_testcancel => pthread_testcancel { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_timedjoin_np => pthread_timedjoin_np { v2_3_3 = "GLIBC_2.3.3" "@", v2_34 = "GLIBC_2.34" "@" }
    pthread_tryjoin_np => pthread_tryjoin_np { v2_3_3 = "GLIBC_2.3.3" "@", v2_34 = "GLIBC_2.34" "@" }
    pwrite => pwrite { v2_2_5 = "GLIBC_2.2.5" "@" }
    pwrite64 => pwrite64 { v2_2_5 = "GLIBC_2.2.5" "@" }
    pwritev => pwritev { v2_10 = "GLIBC_2.10" "@" }
    pwritev2 => pwritev2 { v2_26 = "GLIBC_2.26" "@" }
    pwritev64 => pwritev64 { v2_10 = "GLIBC_2.10" "@" }
    pwritev64v2 => pwritev64v2 { v2_26 = "GLIBC_2.26" "@" }
    read => read { v2_2_5 = "GLIBC_2.2.5" "@" }
    readv => readv { v2_2_5 = "GLIBC_2.2.5" "@" }
    recv => recv { v2_2_5 = "GLIBC_2.2.5" "@" }
    recvfrom => recvfrom { v2_2_5 = "GLIBC_2.2.5" "@" }
    recvmmsg => recvmmsg { v2_12 = "GLIBC_2.12" "@" }
    recvmsg => recvmsg { v2_2_5 = "GLIBC_2.2.5" "@" }
    sched_yield => sched_yield { v2_2_5 = "GLIBC_2.2.5" "@" }
    select => select { v2_2_5 = "GLIBC_2.2.5" "@" }
    sem_clockwait => sem_clockwait { v2_30 = "GLIBC_2.30" "@", v2_34 = "GLIBC_2.34" "@" }
    sem_destroy => sem_destroy { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    sem_getvalue => sem_getvalue { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    sem_init => sem_init { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    sem_post => sem_post { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    sem_timedwait => sem_timedwait { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    sem_trywait => sem_trywait { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    sem_wait => sem_wait { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@" }
    send => send { v2_2_5 = "GLIBC_2.2.5" "@" }
    sendfile => sendfile { v2_2_5 = "GLIBC_2.2.5" "@" }
    sendmmsg => sendmmsg { v2_14 = "GLIBC_2.14" "@" }
    sendmsg => sendmsg { v2_2_5 = "GLIBC_2.2.5" "@" }
    sendto => sendto { v2_2_5 = "GLIBC_2.2.5" "@" }
    sigaction => sigaction { v2_2_5 = "GLIBC_2.2.5" "@" }
    signal => signal { v2_2_5 = "GLIBC_2.2.5" "@" }
    sigpending => sigpending { v2_2_5 = "GLIBC_2.2.5" "@" }
    sigprocmask => sigprocmask { v2_2_5 = "GLIBC_2.2.5" "@" }
    sigtimedwait => sigtimedwait { v2_2_5 = "GLIBC_2.2.5" "@" }
    sigwait => sigwait { v2_2_5 = "GLIBC_2.2.5" "@" }
    sigwaitinfo => sigwaitinfo { v2_2_5 = "GLIBC_2.2.5" "@" }
    sleep => sleep { v2_2_5 = "GLIBC_2.2.5" "@" }
    splice => splice { v2_5 = "GLIBC_2.5" "@" }
    syscall => syscall { v2_2_5 = "GLIBC_2.2.5" "@" }
    tee => tee { v2_5 = "GLIBC_2.5" "@" }
    thrd_create => thrd_create { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    thrd_current => thrd_current { v2_28 = "GLIBC_2.28" "@" }
    thrd_detach => thrd_detach { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    thrd_equal => thrd_equal { v2_28 = "GLIBC_2.28" "@" }
    thrd_exit => thrd_exit { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    thrd_join => thrd_join { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    thrd_sleep => thrd_sleep { v2_28 = "GLIBC_2.28" "@" }
    thrd_yield => thrd_yield { v2_28 = "GLIBC_2.28" "@" }
    tss_create => tss_create { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    tss_delete => tss_delete { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    tss_get => tss_get { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    tss_set => tss_set { v2_28 = "GLIBC_2.28" "@", v2_34 = "GLIBC_2.34" "@" }
    usleep => usleep { v2_2_5 = "GLIBC_2.2.5" "@" }
    vmsplice => vmsplice { v2_5 = "GLIBC_2.5" "@" }
    wait => wait { v2_2_5 = "GLIBC_2.2.5" "@" }
    wait4 => wait4 { v2_2_5 = "GLIBC_2.2.5" "@" }
    waitid => waitid { v2_2_5 = "GLIBC_2.2.5" "@" }
    waitpid => waitpid { v2_2_5 = "GLIBC_2.2.5" "@" }
    write => write { v2_2_5 = "GLIBC_2.2.5" "@" }
    writev => writev { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_getspecific => __pthread_getspecific { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_key_create => __pthread_key_create { v2_2_5 = "GLIBC_2.2.5" "@", v2_34 = "GLIBC_2.34" "@@" }
    pthread_mutex_destroy => __pthread_mutex_destroy { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_mutex_init => __pthread_mutex_init { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_mutex_lock => __pthread_mutex_lock { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_mutex_trylock => __pthread_mutex_trylock { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_mutex_unlock => __pthread_mutex_unlock { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_mutexattr_destroy => __pthread_mutexattr_destroy { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_mutexattr_init => __pthread_mutexattr_init { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_mutexattr_settype => __pthread_mutexattr_settype { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_once => __pthread_once { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_rwlock_destroy => __pthread_rwlock_destroy { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_rwlock_init => __pthread_rwlock_init { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_rwlock_rdlock => __pthread_rwlock_rdlock { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_rwlock_tryrdlock => __pthread_rwlock_tryrdlock { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_rwlock_trywrlock => __pthread_rwlock_trywrlock { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_rwlock_unlock => __pthread_rwlock_unlock { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_rwlock_wrlock => __pthread_rwlock_wrlock { v2_2_5 = "GLIBC_2.2.5" "@" }
    pthread_setspecific => __pthread_setspecific { v2_2_5 = "GLIBC_2.2.5" "@" }
    stat => stat { v2_33 = "GLIBC_2.33" "@" }
    stat64 => stat64 { v2_33 = "GLIBC_2.33" "@" }
    lstat => lstat { v2_33 = "GLIBC_2.33" "@" }
    lstat64 => lstat64 { v2_33 = "GLIBC_2.33" "@" }
    fstat => fstat { v2_33 = "GLIBC_2.33" "@" }
    fstat64 => fstat64 { v2_33 = "GLIBC_2.33" "@" }
    fstatat => fstatat { v2_33 = "GLIBC_2.33" "@" }
    fstatat64 => fstatat64 { v2_33 = "GLIBC_2.33" "@" }
    statx => statx { v2_28 = "GLIBC_2.28" "@" }
    __xstat => __xstat { v2_2_5 = "GLIBC_2.2.5" "@" }
    __xstat64 => __xstat64 { v2_2_5 = "GLIBC_2.2.5" "@" }
    __lxstat => __lxstat { v2_2_5 = "GLIBC_2.2.5" "@" }
    __lxstat64 => __lxstat64 { v2_2_5 = "GLIBC_2.2.5" "@" }
    __fxstat => __fxstat { v2_2_5 = "GLIBC_2.2.5" "@" }
    __fxstat64 => __fxstat64 { v2_2_5 = "GLIBC_2.2.5" "@" }
    __fxstatat => __fxstatat { v2_4 = "GLIBC_2.4" "@" }
    __fxstatat64 => __fxstatat64 { v2_4 = "GLIBC_2.4" "@" }
    system => system { v2_2_5 = "GLIBC_2.2.5" "@" }
    _Fork => _Fork { v2_34 = "GLIBC_2.34" "@" }
    vfork => vfork { v2_2_5 = "GLIBC_2.2.5" "@" }
    __flexsc_posix_spawn => posix_spawn { v2_15 = "GLIBC_2.15" "@@" }
    __flexsc_posix_spawn_compat => posix_spawn { v2_2_5 = "GLIBC_2.2.5" "@" }
    __flexsc_posix_spawnp => posix_spawnp { v2_15 = "GLIBC_2.15" "@@" }
    __flexsc_posix_spawnp_compat => posix_spawnp { v2_2_5 = "GLIBC_2.2.5" "@" }
    __flexsc_pthread_kill => pthread_kill { v2_34 = "GLIBC_2.34" "@@" }
    __flexsc_pthread_kill_esrch => pthread_kill { v2_2_5 = "GLIBC_2.2.5" "@" }
    __flexsc_pthread_setaffinity_np => pthread_setaffinity_np { v2_3_4 = "GLIBC_2.3.4" "@", v2_34 = "GLIBC_2.34" "@@" }
    __flexsc_pthread_setaffinity_old => pthread_setaffinity_np { v2_3_3 = "GLIBC_2.3.3" "@" }
    __flexsc_pthread_getaffinity_np => pthread_getaffinity_np { v2_3_4 = "GLIBC_2.3.4" "@", v2_32 = "GLIBC_2.32" "@@" }
    __flexsc_pthread_getaffinity_old => pthread_getaffinity_np { v2_3_3 = "GLIBC_2.3.3" "@" }
    __flexsc_sched_setaffinity => sched_setaffinity { v2_3_4 = "GLIBC_2.3.4" "@@" }
    __flexsc_sched_setaffinity_old => sched_setaffinity { v2_3_3 = "GLIBC_2.3.3" "@" }
    __flexsc_sched_getaffinity => sched_getaffinity { v2_3_4 = "GLIBC_2.3.4" "@@" }
    __flexsc_sched_getaffinity_old => sched_getaffinity { v2_3_3 = "GLIBC_2.3.3" "@" }
}
