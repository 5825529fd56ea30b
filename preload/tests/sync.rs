//! The pthread synchronisation exports, called directly from green threads of a
//! `flexsc_threads::Runtime` and from OS threads at once; glibc's static initializers and sizes
//! checked against a C file compiled at test time; process-shared objects across `fork`. Timing
//! bounds are hang guards, not speed tests.
//!
//! The `sync` module is compiled into this test from its own sources rather than linked from the
//! `flexsc` rlib: linking the rlib brings every export of the preload into the test binary, and
//! there its `pthread_create` and `syscall` take over the test harness's own threads and std's
//! futex calls (`std::thread::spawn` makes green threads of the preload's runtime, and
//! `std::thread::park` waits in the futex table), so the test would test those instead.

#[path = "../src/sync/mod.rs"]
mod sync;

/// The preload's `rt::InLib`, which `sync` enters around its waits so that std's futex calls
/// reach the kernel rather than the `syscall` export: that export is not in this binary, so
/// there is nothing to mark.
mod rt {
    pub(crate) struct InLib;

    impl InLib {
        pub(crate) fn enter() -> Self {
            Self
        }
    }
}

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ffi::{CString, c_int, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flexsc_threads::{Runtime, spawn, yield_now};
use libc::{
    CLOCK_MONOTONIC, CLOCK_REALTIME, EAGAIN, EBUSY, EDEADLK, EINVAL, ENOTSUP, EOVERFLOW, EPERM,
    ETIMEDOUT, clockid_t, pthread_barrier_t, pthread_barrierattr_t, pthread_cond_t,
    pthread_condattr_t, pthread_mutex_t, pthread_mutexattr_t, pthread_once_t, pthread_rwlock_t,
    pthread_rwlockattr_t, pthread_spinlock_t, sem_t, timespec,
};
use sync::*;

const NORMAL: c_int = libc::PTHREAD_MUTEX_NORMAL;
const RECURSIVE: c_int = libc::PTHREAD_MUTEX_RECURSIVE;
const ERRORCHECK: c_int = libc::PTHREAD_MUTEX_ERRORCHECK;
const ADAPTIVE: c_int = 3; // PTHREAD_MUTEX_ADAPTIVE_NP
const PREFER_WRITER_NONRECURSIVE: c_int = 2; // PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP

fn rt() -> Runtime {
    Runtime::builder()
        .cores(2)
        .tls(true)
        .stack_size(256 * 1024)
        .build()
        .unwrap()
}

/// A C object at a stable address, shared by threads that only touch it through the exports
/// (or, for plain data, under a lock the test holds).
struct Obj<T> {
    p: *mut T,
    _owned: Option<Box<UnsafeCell<T>>>,
}

// SAFETY: the objects are made for concurrent use through the exports; plain data is only
// accessed under the test's locks.
unsafe impl<T> Sync for Obj<T> {}
// SAFETY: as above.
unsafe impl<T> Send for Obj<T> {}

/// Types for which all-zero bytes are a valid value: the C objects (plain bytes) and integers.
trait Zeroable {}

macro_rules! zeroable {
    ($($t:ty),*) => { $(impl Zeroable for $t {})* };
}

zeroable!(
    pthread_mutex_t,
    pthread_mutexattr_t,
    pthread_cond_t,
    pthread_condattr_t,
    pthread_rwlock_t,
    pthread_rwlockattr_t,
    pthread_spinlock_t,
    pthread_barrier_t,
    pthread_barrierattr_t,
    sem_t,
    u64
);

impl<T: Zeroable> Obj<T> {
    /// A zeroed object on the heap: glibc's static initializer for mutexes, condition
    /// variables and rwlocks.
    fn zeroed() -> Arc<Self> {
        // SAFETY: `T: Zeroable`: all-zero bytes are a valid `T`.
        let b = Box::new(UnsafeCell::new(unsafe { std::mem::zeroed::<T>() }));
        Arc::new(Self {
            p: b.get(),
            _owned: Some(b),
        })
    }
}

impl<T> Obj<T> {
    /// The object at `p`, which lives for the rest of the test.
    fn at(p: *mut T) -> Arc<Self> {
        Arc::new(Self { p, _owned: None })
    }

    fn p(&self) -> *mut T {
        self.p
    }
}

impl Obj<u64> {
    /// A non-atomic increment, with a switch inside when `yield_inside`: any overlap of two
    /// holders of the lock the caller holds loses an increment.
    fn bump(&self, yield_inside: bool) {
        // SAFETY: the caller holds the lock that guards the counter.
        let v = unsafe { self.p.read_volatile() };
        if yield_inside {
            yield_now();
        }
        // SAFETY: as above.
        unsafe { self.p.write_volatile(v + 1) };
    }

    fn get(&self) -> u64 {
        // SAFETY: read after every writer is done (joined), or under the guarding lock.
        unsafe { self.p.read_volatile() }
    }
}

/// Safe methods for one object type: each calls its export on the object.
macro_rules! methods {
    ($t:ty { $($m:ident => $f:ident($($a:ident: $at:ty),*);)* }) => {
        impl Obj<$t> {
            $(
                fn $m(&self $(, $a: $at)*) -> c_int {
                    // SAFETY: the object is live and initialised (zeroed memory is glibc's
                    // static initializer, or the test called its init); the tests pass valid
                    // pointers.
                    unsafe { $f(self.p() $(, $a)*) }
                }
            )*
        }
    };
}

methods!(pthread_mutex_t {
    init => pthread_mutex_init(attr: *const pthread_mutexattr_t);
    lock => pthread_mutex_lock();
    trylock => pthread_mutex_trylock();
    unlock => pthread_mutex_unlock();
    destroy => pthread_mutex_destroy();
    timedlock => pthread_mutex_timedlock(t: *const timespec);
    clocklock => pthread_mutex_clocklock(c: clockid_t, t: *const timespec);
});

methods!(pthread_cond_t {
    init => pthread_cond_init(attr: *const pthread_condattr_t);
    destroy => pthread_cond_destroy();
    wait => pthread_cond_wait(m: *mut pthread_mutex_t);
    timedwait => pthread_cond_timedwait(m: *mut pthread_mutex_t, t: *const timespec);
    clockwait => pthread_cond_clockwait(m: *mut pthread_mutex_t, c: clockid_t, t: *const timespec);
    signal => pthread_cond_signal();
    broadcast => pthread_cond_broadcast();
});

methods!(pthread_rwlock_t {
    init => pthread_rwlock_init(attr: *const pthread_rwlockattr_t);
    destroy => pthread_rwlock_destroy();
    rdlock => pthread_rwlock_rdlock();
    tryrdlock => pthread_rwlock_tryrdlock();
    timedrdlock => pthread_rwlock_timedrdlock(t: *const timespec);
    clockrdlock => pthread_rwlock_clockrdlock(c: clockid_t, t: *const timespec);
    wrlock => pthread_rwlock_wrlock();
    trywrlock => pthread_rwlock_trywrlock();
    timedwrlock => pthread_rwlock_timedwrlock(t: *const timespec);
    clockwrlock => pthread_rwlock_clockwrlock(c: clockid_t, t: *const timespec);
    unlock => pthread_rwlock_unlock();
});

methods!(pthread_spinlock_t {
    init => pthread_spin_init(pshared: c_int);
    destroy => pthread_spin_destroy();
    lock => pthread_spin_lock();
    trylock => pthread_spin_trylock();
    unlock => pthread_spin_unlock();
});

methods!(pthread_barrier_t {
    init => pthread_barrier_init(attr: *const pthread_barrierattr_t, count: u32);
    destroy => pthread_barrier_destroy();
    wait => pthread_barrier_wait();
});

methods!(sem_t {
    init => sem_init(pshared: c_int, value: u32);
    destroy => sem_destroy();
    wait => sem_wait();
    trywait => sem_trywait();
    timedwait => sem_timedwait(t: *const timespec);
    clockwait => sem_clockwait(c: clockid_t, t: *const timespec);
    post => sem_post();
    getvalue => sem_getvalue(v: *mut c_int);
});

methods!(pthread_mutexattr_t {
    init => pthread_mutexattr_init();
    destroy => pthread_mutexattr_destroy();
    settype => pthread_mutexattr_settype(t: c_int);
    gettype => pthread_mutexattr_gettype(t: *mut c_int);
    setpshared => pthread_mutexattr_setpshared(v: c_int);
    getpshared => pthread_mutexattr_getpshared(v: *mut c_int);
    setrobust => pthread_mutexattr_setrobust(v: c_int);
    getrobust => pthread_mutexattr_getrobust(v: *mut c_int);
    setprotocol => pthread_mutexattr_setprotocol(v: c_int);
    getprotocol => pthread_mutexattr_getprotocol(v: *mut c_int);
});

methods!(pthread_condattr_t {
    init => pthread_condattr_init();
    destroy => pthread_condattr_destroy();
    setclock => pthread_condattr_setclock(c: clockid_t);
    getclock => pthread_condattr_getclock(c: *mut clockid_t);
    setpshared => pthread_condattr_setpshared(v: c_int);
    getpshared => pthread_condattr_getpshared(v: *mut c_int);
});

methods!(pthread_rwlockattr_t {
    init => pthread_rwlockattr_init();
    destroy => pthread_rwlockattr_destroy();
    setpshared => pthread_rwlockattr_setpshared(v: c_int);
    getpshared => pthread_rwlockattr_getpshared(v: *mut c_int);
    setkind => pthread_rwlockattr_setkind_np(v: c_int);
    getkind => pthread_rwlockattr_getkind_np(v: *mut c_int);
});

methods!(pthread_barrierattr_t {
    init => pthread_barrierattr_init();
    destroy => pthread_barrierattr_destroy();
    setpshared => pthread_barrierattr_setpshared(v: c_int);
    getpshared => pthread_barrierattr_getpshared(v: *mut c_int);
});

/// A mutex of type `ty`, process-shared if `pshared`, initialised with an attribute object at
/// `at` (its own heap object if `at` is None).
fn mutex_at(
    ty: c_int,
    pshared: bool,
    at: Option<*mut pthread_mutex_t>,
) -> Arc<Obj<pthread_mutex_t>> {
    let m = at.map_or_else(Obj::zeroed, Obj::at);
    let a = Obj::<pthread_mutexattr_t>::zeroed();
    assert_eq!(a.init(), 0);
    assert_eq!(a.settype(ty), 0);
    if pshared {
        assert_eq!(a.setpshared(libc::PTHREAD_PROCESS_SHARED), 0);
    }
    assert_eq!(m.init(a.p()), 0);
    assert_eq!(a.destroy(), 0);
    m
}

fn mutex(ty: c_int) -> Arc<Obj<pthread_mutex_t>> {
    mutex_at(ty, false, None)
}

/// The absolute time `d` from now on `clock`.
fn after(clock: clockid_t, d: Duration) -> timespec {
    let mut t = timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut t) };
    let nanos = t.tv_nsec + d.subsec_nanos() as i64;
    timespec {
        tv_sec: t.tv_sec + d.as_secs() as i64 + nanos / 1_000_000_000,
        tv_nsec: nanos % 1_000_000_000,
    }
}

/// A time with `tv_nsec` out of range, a second from now.
fn bad_nsec(clock: clockid_t) -> timespec {
    timespec {
        tv_nsec: 1_000_000_000,
        ..after(clock, Duration::from_secs(1))
    }
}

/// Asserts a timed wait took at least `timeout` and returned within a sane window.
fn assert_window(took: Duration, timeout: Duration, what: &str) {
    assert!(took >= timeout, "{what}: woke early after {took:?}");
    assert!(
        took < timeout + Duration::from_secs(2),
        "{what}: took {took:?}"
    );
}

/// The calling thread's errno.
fn errno() -> c_int {
    // SAFETY: the calling thread's own errno.
    unsafe { *libc::__errno_location() }
}

/// Runs `f` on `os` OS threads (checked to be plain OS threads) while `rt` runs `green` green
/// threads of `g` across its carriers; returns when all are done.
fn contend(
    rt: &Runtime,
    green: usize,
    g: impl Fn(usize) + Send + Sync + 'static,
    os: usize,
    f: impl Fn(usize) + Send + Sync + 'static,
) {
    let f = Arc::new(f);
    let oses: Vec<_> = (0..os)
        .map(|i| {
            let f = f.clone();
            std::thread::spawn(move || {
                assert!(flexsc_threads::current_id().is_none(), "not an OS thread");
                f(i)
            })
        })
        .collect();
    let g = Arc::new(g);
    rt.block_on(move || {
        let hs: Vec<_> = (0..green)
            .map(|i| {
                let g = g.clone();
                spawn(move || g(i))
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    for h in oses {
        h.join().unwrap();
    }
}

/// `green` green threads and `os` OS threads each take `m` `iters` times (`os_iters` for the OS
/// threads) and bump a counter under it; asserts no increment was lost. `nested` also takes the
/// (recursive) mutex a second time inside.
fn count_under(
    m: Arc<Obj<pthread_mutex_t>>,
    green: usize,
    iters: usize,
    os: usize,
    os_iters: usize,
    nested: bool,
) {
    let rt = rt();
    let n = Obj::<u64>::zeroed();
    let (mg, ng) = (m.clone(), n.clone());
    let (mo, no) = (m.clone(), n.clone());
    contend(
        &rt,
        green,
        move |t| {
            for i in 0..iters {
                assert_eq!(mg.lock(), 0);
                if nested {
                    assert_eq!(mg.lock(), 0);
                }
                ng.bump((t + i) % 7 == 0);
                if nested {
                    assert_eq!(mg.unlock(), 0);
                }
                assert_eq!(mg.unlock(), 0);
            }
        },
        os,
        move |_| {
            for i in 0..os_iters {
                assert_eq!(mo.lock(), 0);
                no.bump(false);
                if i % 64 == 0 {
                    std::thread::yield_now();
                }
                assert_eq!(mo.unlock(), 0);
            }
        },
    );
    assert_eq!(n.get(), (green * iters + os * os_iters) as u64);
    assert_eq!(m.trylock(), 0, "the mutex was left locked");
    assert_eq!(m.unlock(), 0);
}

#[test]
fn mutex_counts_exactly_under_contention() {
    // Zeroed memory: PTHREAD_MUTEX_INITIALIZER. 200 green threads over 2 carriers and 2 OS
    // threads at once.
    count_under(Obj::zeroed(), 200, 1000, 2, 20_000, false);
}

#[test]
fn every_mutex_type_counts_exactly() {
    count_under(mutex(RECURSIVE), 50, 200, 1, 5_000, true);
    count_under(mutex(ERRORCHECK), 50, 200, 1, 5_000, false);
    count_under(mutex(ADAPTIVE), 50, 200, 1, 5_000, false);
}

/// The recursive and error-checking rules, for the calling thread (green or OS) against
/// `other`, which runs a closure on another thread and returns its result.
fn owner_rules(other: &dyn Fn(Box<dyn FnOnce() -> Vec<c_int> + Send>) -> Vec<c_int>) {
    let r = mutex(RECURSIVE);
    assert_eq!(r.lock(), 0);
    assert_eq!(r.lock(), 0);
    assert_eq!(r.trylock(), 0);
    let r2 = r.clone();
    // Another thread can neither take nor release it.
    assert_eq!(
        other(Box::new(move || vec![r2.trylock(), r2.unlock()])),
        [EBUSY, EPERM]
    );
    for _ in 0..3 {
        assert_eq!(r.unlock(), 0);
    }
    assert_eq!(r.unlock(), EPERM, "unlocked once too often");
    let r2 = r.clone();
    assert_eq!(
        other(Box::new(move || vec![r2.trylock(), r2.unlock()])),
        [0, 0]
    );

    let e = mutex(ERRORCHECK);
    assert_eq!(e.unlock(), EPERM, "unlocking a free error-checking mutex");
    assert_eq!(e.lock(), 0);
    assert_eq!(e.lock(), EDEADLK);
    assert_eq!(e.trylock(), EBUSY);
    let e2 = e.clone();
    assert_eq!(
        other(Box::new(move || vec![e2.trylock(), e2.unlock()])),
        [EBUSY, EPERM]
    );
    assert_eq!(e.unlock(), 0);
    assert_eq!(e.unlock(), EPERM);

    let n = mutex(NORMAL);
    assert_eq!(n.lock(), 0);
    assert_eq!(n.trylock(), EBUSY);
    assert_eq!(n.unlock(), 0);
}

#[test]
fn recursive_and_errorcheck_rules_on_os_threads() {
    owner_rules(&|f| std::thread::spawn(f).join().unwrap());
}

#[test]
fn recursive_and_errorcheck_rules_between_green_threads_of_one_carrier() {
    // One carrier: the owner identity must be the green thread's, not its carrier's.
    let rt = Runtime::builder()
        .cores(1)
        .tls(true)
        .stack_size(256 * 1024)
        .build()
        .unwrap();
    rt.block_on(|| owner_rules(&|f| spawn(f).join().unwrap()));
}

#[test]
fn destroyed_and_null_objects() {
    let m = Obj::<pthread_mutex_t>::zeroed();
    assert_eq!(m.lock(), 0);
    assert_eq!(m.destroy(), EBUSY);
    assert_eq!(m.unlock(), 0);
    assert_eq!(m.destroy(), 0);
    assert_eq!(m.lock(), EINVAL, "a destroyed mutex");
    assert_eq!(m.init(std::ptr::null()), 0);
    assert_eq!(m.lock(), 0);
    assert_eq!(m.unlock(), 0);
    let null = Obj::<pthread_mutex_t>::at(std::ptr::null_mut());
    assert_eq!(null.lock(), EINVAL);
    assert_eq!(
        pthread_mutex_consistent(m.p()),
        EINVAL,
        "no mutex is robust"
    );
    let c = Obj::<pthread_cond_t>::at(std::ptr::null_mut());
    assert_eq!(c.signal(), EINVAL);
    let s = Obj::<sem_t>::at(std::ptr::null_mut());
    assert_eq!(s.post(), -1);
    assert_eq!(errno(), EINVAL);
}

/// Timed lock checks, run from the calling thread while another thread holds `m`.
fn timed_lock_checks(m: &Obj<pthread_mutex_t>) {
    let timeout = Duration::from_millis(100);
    for clock in [CLOCK_REALTIME, CLOCK_MONOTONIC] {
        let t0 = Instant::now();
        let r = if clock == CLOCK_REALTIME {
            m.timedlock(&after(clock, timeout))
        } else {
            m.clocklock(clock, &after(clock, timeout))
        };
        assert_eq!(r, ETIMEDOUT);
        assert_window(t0.elapsed(), timeout, "timedlock");
        assert_eq!(m.clocklock(clock, &bad_nsec(clock)), EINVAL);
    }
    let past = after(CLOCK_REALTIME, Duration::ZERO);
    assert_eq!(m.timedlock(&past), ETIMEDOUT);
    assert_eq!(
        m.clocklock(libc::CLOCK_PROCESS_CPUTIME_ID, &past),
        EINVAL,
        "a CPU clock"
    );
}

#[test]
fn timed_mutex_lock() {
    let m = Obj::<pthread_mutex_t>::zeroed();
    // A free mutex is taken whatever the deadline: POSIX need not check it then.
    assert_eq!(m.timedlock(&bad_nsec(CLOCK_REALTIME)), 0);
    // Held by this OS thread: an OS thread and a green thread time out.
    let m2 = m.clone();
    std::thread::spawn(move || timed_lock_checks(&m2))
        .join()
        .unwrap();
    let rt = rt();
    let m2 = m.clone();
    rt.block_on(move || timed_lock_checks(&m2));
    // Timed locks that get the mutex before their deadline, from an OS and a green thread.
    let m2 = m.clone();
    let os = std::thread::spawn(move || {
        let r = m2.clocklock(
            CLOCK_MONOTONIC,
            &after(CLOCK_MONOTONIC, Duration::from_secs(10)),
        );
        (r, m2.unlock())
    });
    let m2 = m.clone();
    let green = rt.spawn(move || {
        let r = m2.timedlock(&after(CLOCK_REALTIME, Duration::from_secs(10)));
        (r, m2.unlock())
    });
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(m.unlock(), 0);
    assert_eq!(os.join().unwrap(), (0, 0));
    assert_eq!(green.join().unwrap(), (0, 0));
}

#[test]
fn condvar_producer_consumer_checksum() {
    const PRODUCERS: u64 = 20;
    const ITEMS: u64 = 500;
    const GREEN_CONSUMERS: usize = 10;
    const CAP: usize = 8;
    let rt = rt();
    let m = Obj::<pthread_mutex_t>::zeroed();
    let not_empty = Obj::<pthread_cond_t>::zeroed();
    let not_full = Obj::<pthread_cond_t>::zeroed();
    let queue = Obj::<VecDeque<u64>>::at(Box::into_raw(Box::new(VecDeque::new())));
    let sum = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let taken = Arc::new(AtomicUsize::new(0));

    // Consumers stop at a 0; one per consumer is pushed after the producers are done.
    let consume = {
        let (m, not_empty, not_full, queue, sum, taken) = (
            m.clone(),
            not_empty.clone(),
            not_full.clone(),
            queue.clone(),
            sum.clone(),
            taken.clone(),
        );
        move || {
            loop {
                assert_eq!(m.lock(), 0);
                // SAFETY: the queue is only touched under `m`.
                let q = unsafe { &mut *queue.p() };
                while q.is_empty() {
                    assert_eq!(not_empty.wait(m.p()), 0);
                }
                let v = q.pop_front().unwrap();
                assert_eq!(not_full.signal(), 0);
                assert_eq!(m.unlock(), 0);
                if v == 0 {
                    return;
                }
                sum.fetch_add(v, Ordering::Relaxed);
                taken.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let push = {
        let (m, not_empty, not_full, queue) = (
            m.clone(),
            not_empty.clone(),
            not_full.clone(),
            queue.clone(),
        );
        move |v: u64| {
            assert_eq!(m.lock(), 0);
            // SAFETY: the queue is only touched under `m`.
            let q = unsafe { &mut *queue.p() };
            while q.len() == CAP {
                assert_eq!(not_full.wait(m.p()), 0);
            }
            q.push_back(v);
            assert_eq!(not_empty.signal(), 0);
            assert_eq!(m.unlock(), 0);
        }
    };
    let os_consumer = std::thread::spawn(consume.clone());
    let push2 = push.clone();
    rt.block_on(move || {
        let consumers: Vec<_> = (0..GREEN_CONSUMERS)
            .map(|_| spawn(consume.clone()))
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let push = push2.clone();
                spawn(move || {
                    for i in 0..ITEMS {
                        push(p * ITEMS + i + 1);
                    }
                })
            })
            .collect();
        for h in producers {
            h.join().unwrap();
        }
        for _ in 0..=GREEN_CONSUMERS {
            push2(0);
        }
        for h in consumers {
            h.join().unwrap();
        }
    });
    os_consumer.join().unwrap();
    let n = PRODUCERS * ITEMS;
    assert_eq!(taken.load(Ordering::Relaxed) as u64, n);
    assert_eq!(sum.load(Ordering::Relaxed), n * (n + 1) / 2);
    // SAFETY: every thread that used the queue is done; it came from Box::into_raw.
    drop(unsafe { Box::from_raw(queue.p()) });
    assert_eq!(not_empty.destroy(), 0);
    assert_eq!(not_full.destroy(), 0);
}

/// Timed condition waits from the calling thread (green or OS).
fn timed_cond_checks() {
    let timeout = Duration::from_millis(100);
    let m = mutex(ERRORCHECK);
    let c = Obj::<pthread_cond_t>::zeroed();
    assert_eq!(m.lock(), 0);
    // Zeroed: CLOCK_REALTIME.
    let t0 = Instant::now();
    assert_eq!(
        c.timedwait(m.p(), &after(CLOCK_REALTIME, timeout)),
        ETIMEDOUT
    );
    assert_window(t0.elapsed(), timeout, "cond timedwait");
    assert_eq!(
        m.lock(),
        EDEADLK,
        "the mutex is held again after a time-out"
    );
    let t0 = Instant::now();
    assert_eq!(
        c.clockwait(m.p(), CLOCK_MONOTONIC, &after(CLOCK_MONOTONIC, timeout)),
        ETIMEDOUT
    );
    assert_window(t0.elapsed(), timeout, "cond clockwait");
    assert_eq!(c.timedwait(m.p(), &bad_nsec(CLOCK_REALTIME)), EINVAL);
    assert_eq!(
        c.clockwait(
            m.p(),
            libc::CLOCK_THREAD_CPUTIME_ID,
            &after(CLOCK_REALTIME, timeout)
        ),
        EINVAL
    );
    // A monotonic condition variable.
    let a = Obj::<pthread_condattr_t>::zeroed();
    assert_eq!(a.init(), 0);
    assert_eq!(a.setclock(CLOCK_MONOTONIC), 0);
    let mc = Obj::<pthread_cond_t>::zeroed();
    assert_eq!(mc.init(a.p()), 0);
    let t0 = Instant::now();
    assert_eq!(
        mc.timedwait(m.p(), &after(CLOCK_MONOTONIC, timeout)),
        ETIMEDOUT
    );
    assert_window(t0.elapsed(), timeout, "monotonic cond timedwait");
    assert_eq!(m.unlock(), 0);
    // Waiting with a mutex the caller does not hold.
    assert_eq!(c.wait(m.p()), EPERM);
    assert_eq!(mc.destroy(), 0);
    assert_eq!(c.destroy(), 0);
}

#[test]
fn timed_condvar_waits() {
    std::thread::spawn(timed_cond_checks).join().unwrap();
    rt().block_on(timed_cond_checks);
}

/// A broadcast wakes all 31 waiters (green and OS), and destroying the condition variable at
/// once, while they leave their waits, neither fails nor hangs.
#[test]
fn broadcast_wakes_every_waiter_and_destroy_waits_for_them() {
    const WAITERS: usize = 30;
    let rt = rt();
    for round in 0..20 {
        let m = Obj::<pthread_mutex_t>::zeroed();
        let c = Obj::<pthread_cond_t>::zeroed();
        let go = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicUsize::new(0));
        let waiter = {
            let (m, c, go, ready) = (m.clone(), c.clone(), go.clone(), ready.clone());
            move || {
                assert_eq!(m.lock(), 0);
                ready.fetch_add(1, Ordering::SeqCst);
                while !go.load(Ordering::SeqCst) {
                    assert_eq!(c.wait(m.p()), 0);
                }
                assert_eq!(m.unlock(), 0);
            }
        };
        let os = std::thread::spawn(waiter.clone());
        let (m2, c2, go2, ready2) = (m.clone(), c.clone(), go.clone(), ready.clone());
        rt.block_on(move || {
            let hs: Vec<_> = (0..WAITERS).map(|_| spawn(waiter.clone())).collect();
            while ready2.load(Ordering::SeqCst) < WAITERS + 1 {
                yield_now();
            }
            assert_eq!(m2.lock(), 0);
            go2.store(true, Ordering::SeqCst);
            assert_eq!(c2.broadcast(), 0);
            assert_eq!(m2.unlock(), 0);
            // Destroy at once: the woken waiters may still be leaving their waits.
            assert_eq!(c2.destroy(), 0, "round {round}");
            for h in hs {
                h.join().unwrap();
            }
        });
        os.join().unwrap();
    }
}

#[test]
fn rwlock_readers_share_and_writers_exclude() {
    const GREEN: usize = 40;
    const ITERS: usize = 300;
    let rt = rt();
    let rw = Obj::<pthread_rwlock_t>::zeroed();
    // Readers inside, or u32::MAX/2 added while a writer is.
    let inside = Arc::new(AtomicU32::new(0));
    let most_readers = Arc::new(AtomicU32::new(0));
    let writes = Obj::<u64>::zeroed();
    const WRITER: u32 = 1 << 20;
    let work = {
        let (rw, inside, most, writes) = (
            rw.clone(),
            inside.clone(),
            most_readers.clone(),
            writes.clone(),
        );
        move |t: usize| {
            for i in 0..ITERS {
                if (t + i) % 5 == 0 {
                    assert_eq!(rw.wrlock(), 0);
                    assert_eq!(
                        inside.fetch_add(WRITER, Ordering::SeqCst),
                        0,
                        "writer not alone"
                    );
                    writes.bump(i % 2 == 0);
                    assert_eq!(inside.fetch_sub(WRITER, Ordering::SeqCst), WRITER);
                    assert_eq!(rw.unlock(), 0);
                } else {
                    assert_eq!(rw.rdlock(), 0);
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(n < WRITER, "a reader beside a writer");
                    most.fetch_max(n, Ordering::SeqCst);
                    yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                    assert_eq!(rw.unlock(), 0);
                }
            }
        }
    };
    let work2 = work.clone();
    contend(&rt, GREEN, work, 2, move |t| work2(t + GREEN));
    let expected_writes = (0..GREEN + 2)
        .map(|t| (0..ITERS).filter(|i| (t + i) % 5 == 0).count() as u64)
        .sum::<u64>();
    assert_eq!(writes.get(), expected_writes);
    assert!(
        most_readers.load(Ordering::SeqCst) > 1,
        "readers never shared the lock"
    );
    assert_eq!(rw.trywrlock(), 0, "the lock was left held");
    assert_eq!(rw.unlock(), 0);
    assert_eq!(rw.destroy(), 0);
}

#[test]
fn rwlock_rules_and_timeouts() {
    let rw = Obj::<pthread_rwlock_t>::zeroed();
    assert_eq!(rw.unlock(), EPERM, "unlocking a free lock");
    assert_eq!(rw.rdlock(), 0);
    assert_eq!(rw.tryrdlock(), 0, "readers share");
    assert_eq!(rw.trywrlock(), EBUSY);
    assert_eq!(rw.destroy(), EBUSY);
    let timeout = Duration::from_millis(100);
    let t0 = Instant::now();
    assert_eq!(rw.timedwrlock(&after(CLOCK_REALTIME, timeout)), ETIMEDOUT);
    assert_window(t0.elapsed(), timeout, "timedwrlock");
    assert_eq!(
        rw.clockwrlock(CLOCK_MONOTONIC, &bad_nsec(CLOCK_MONOTONIC)),
        EINVAL
    );
    assert_eq!(rw.unlock(), 0);
    assert_eq!(rw.unlock(), 0);

    assert_eq!(rw.wrlock(), 0);
    assert_eq!(rw.wrlock(), EDEADLK);
    assert_eq!(rw.rdlock(), EDEADLK);
    assert_eq!(rw.tryrdlock(), EBUSY);
    let rw2 = rw.clone();
    let t = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = rw2.clockrdlock(CLOCK_MONOTONIC, &after(CLOCK_MONOTONIC, timeout));
        (r, t0.elapsed())
    });
    let (r, took) = t.join().unwrap();
    assert_eq!(r, ETIMEDOUT);
    assert_window(took, timeout, "clockrdlock");
    // A reader that gets the lock when the writer leaves.
    let rw2 = rw.clone();
    let t = std::thread::spawn(move || {
        let r = rw2.timedrdlock(&after(CLOCK_REALTIME, Duration::from_secs(10)));
        (r, rw2.unlock())
    });
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(rw.unlock(), 0);
    assert_eq!(t.join().unwrap(), (0, 0));
    assert_eq!(rw.destroy(), 0);
}

/// With a writer waiting, a new reader gets in only if the kind prefers readers.
fn writer_waiting_admits_reader(rw: Arc<Obj<pthread_rwlock_t>>, prefer_writers: bool) {
    assert_eq!(rw.rdlock(), 0);
    let rw2 = rw.clone();
    let writer = std::thread::spawn(move || {
        assert_eq!(rw2.wrlock(), 0);
        assert_eq!(rw2.unlock(), 0);
    });
    if prefer_writers {
        // Once the writer waits, readers are held back.
        let t0 = Instant::now();
        loop {
            match rw.tryrdlock() {
                EBUSY => break,
                0 => assert_eq!(rw.unlock(), 0),
                e => panic!("tryrdlock: {e}"),
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "the writer never waited"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    } else {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(rw.tryrdlock(), 0, "a reader kept out by a waiting writer");
        assert_eq!(rw.unlock(), 0);
    }
    assert_eq!(rw.unlock(), 0);
    writer.join().unwrap();
}

#[test]
fn rwlock_kinds() {
    writer_waiting_admits_reader(Obj::zeroed(), false);
    let a = Obj::<pthread_rwlockattr_t>::zeroed();
    assert_eq!(a.init(), 0);
    assert_eq!(a.setkind(PREFER_WRITER_NONRECURSIVE), 0);
    let rw = Obj::<pthread_rwlock_t>::zeroed();
    assert_eq!(rw.init(a.p()), 0);
    writer_waiting_admits_reader(rw, true);
}

#[test]
fn spin_lock_counts_exactly() {
    let rt = rt();
    // Zeroed: a free lock (glibc's encoding).
    let l = Obj::<pthread_spinlock_t>::zeroed();
    let n = Obj::<u64>::zeroed();
    let (lg, ng, lo, no) = (l.clone(), n.clone(), l.clone(), n.clone());
    contend(
        &rt,
        50,
        move |t| {
            for i in 0..200 {
                assert_eq!(lg.lock(), 0);
                // A switch inside: the other green threads of this carrier must yield back.
                ng.bump((t + i) % 13 == 0);
                assert_eq!(lg.unlock(), 0);
            }
        },
        2,
        move |_| {
            for _ in 0..5_000 {
                assert_eq!(lo.lock(), 0);
                no.bump(false);
                assert_eq!(lo.unlock(), 0);
            }
        },
    );
    assert_eq!(n.get(), 50 * 200 + 2 * 5_000);
    assert_eq!(l.trylock(), 0);
    assert_eq!(l.trylock(), EBUSY);
    assert_eq!(l.unlock(), 0);
    assert_eq!(l.init(libc::PTHREAD_PROCESS_PRIVATE), 0);
    assert_eq!(l.destroy(), 0);
}

#[test]
fn barrier_has_one_serial_thread_per_round() {
    const GREEN: usize = 15;
    const ROUNDS: usize = 100;
    let rt = rt();
    let b = Obj::<pthread_barrier_t>::zeroed();
    assert_eq!(b.init(std::ptr::null(), 0), EINVAL);
    assert_eq!(b.init(std::ptr::null(), (GREEN + 1) as u32), 0);
    let serial = Arc::new(AtomicUsize::new(0));
    let arrived: Arc<Vec<AtomicUsize>> =
        Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
    let run = {
        let (b, serial, arrived) = (b.clone(), serial.clone(), arrived.clone());
        move |_| {
            for (round, n) in arrived.iter().enumerate() {
                n.fetch_add(1, Ordering::SeqCst);
                match b.wait() {
                    libc::PTHREAD_BARRIER_SERIAL_THREAD => {
                        serial.fetch_add(1, Ordering::SeqCst);
                    }
                    0 => {}
                    e => panic!("barrier wait: {e}"),
                }
                // Nobody passes before everyone of the round arrived.
                assert_eq!(n.load(Ordering::SeqCst), GREEN + 1, "round {round}");
            }
        }
    };
    let run2 = run.clone();
    contend(&rt, GREEN, run, 1, run2);
    assert_eq!(serial.load(Ordering::SeqCst), ROUNDS);
    assert_eq!(b.destroy(), 0);
}

#[test]
fn semaphore_counts() {
    const GREEN: usize = 20;
    const EACH: usize = 500;
    let rt = rt();
    let s = Obj::<sem_t>::zeroed();
    assert_eq!(s.init(0, 0), 0);
    assert_eq!(s.trywait(), -1);
    assert_eq!(errno(), EAGAIN);
    const OS_EACH: usize = 5_000;
    let waits = Arc::new(AtomicUsize::new(0));
    // Green threads post then wait; one OS thread posts while another waits as often: every
    // post is taken exactly once, and nobody can be starved for good.
    let (sg, so, wg, wo) = (s.clone(), s.clone(), waits.clone(), waits.clone());
    contend(
        &rt,
        GREEN,
        move |t| {
            for i in 0..EACH {
                assert_eq!(sg.post(), 0);
                if (t + i) % 3 == 0 {
                    yield_now();
                }
                assert_eq!(sg.wait(), 0);
                wg.fetch_add(1, Ordering::Relaxed);
            }
        },
        2,
        move |os| {
            for _ in 0..OS_EACH {
                if os == 0 {
                    assert_eq!(so.post(), 0);
                } else {
                    assert_eq!(so.wait(), 0);
                    wo.fetch_add(1, Ordering::Relaxed);
                }
            }
        },
    );
    assert_eq!(waits.load(Ordering::Relaxed), GREEN * EACH + OS_EACH);
    let mut v = -1;
    assert_eq!(s.getvalue(&mut v), 0);
    assert_eq!(v, 0);

    let timeout = Duration::from_millis(100);
    for clock in [CLOCK_REALTIME, CLOCK_MONOTONIC] {
        let t0 = Instant::now();
        let r = if clock == CLOCK_REALTIME {
            s.timedwait(&after(clock, timeout))
        } else {
            s.clockwait(clock, &after(clock, timeout))
        };
        assert_eq!((r, errno()), (-1, ETIMEDOUT));
        assert_window(t0.elapsed(), timeout, "sem timed wait");
        assert_eq!(
            (s.clockwait(clock, &bad_nsec(clock)), errno()),
            (-1, EINVAL)
        );
    }
    let negative = timespec {
        tv_sec: -1,
        tv_nsec: 0,
    };
    assert_eq!((s.timedwait(&negative), errno()), (-1, ETIMEDOUT));
    assert_eq!((s.timedwait(std::ptr::null()), errno()), (-1, EINVAL));
    assert_eq!(
        (s.clockwait(libc::CLOCK_BOOTTIME, &negative), errno()),
        (-1, EINVAL)
    );
    assert_eq!(s.post(), 0);
    // A token is taken whatever the deadline.
    assert_eq!(s.timedwait(&bad_nsec(CLOCK_REALTIME)), 0);
    // A deadline too far away for an Instant waits like an untimed wait.
    let far = timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    };
    let s2 = s.clone();
    let poster = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(s2.post(), 0);
    });
    assert_eq!(s.timedwait(&far), 0);
    poster.join().unwrap();

    let max = i32::MAX as u32; // SEM_VALUE_MAX
    assert_eq!((s.init(0, max + 1), errno()), (-1, EINVAL));
    assert_eq!(s.init(0, max), 0);
    assert_eq!((s.post(), errno()), (-1, EOVERFLOW));
    assert_eq!(s.getvalue(&mut v), 0);
    assert_eq!(v as u32, max);
    assert_eq!(s.trywait(), 0);
    assert_eq!(s.destroy(), 0);
}

#[test]
fn a_waiter_may_destroy_the_semaphore_it_was_posted() {
    // glibc bug 12674's pattern: the waiter frees the semaphore as soon as its wait returns,
    // while the poster may still be inside sem_post.
    let rt = rt();
    rt.block_on(|| {
        for _ in 0..2_000 {
            let s = Box::into_raw(Box::new(UnsafeCell::new(
                // SAFETY: a sem_t is plain bytes.
                unsafe { std::mem::zeroed::<sem_t>() },
            )));
            // SAFETY: `s` is a fresh heap object, freed below only after the wait returned.
            let p = unsafe { (*s).get() } as usize;
            // SAFETY: as above.
            assert_eq!(unsafe { sem_init(p as *mut sem_t, 0, 0) }, 0);
            let poster = spawn(move || {
                // SAFETY: the semaphore lives until the waiter has taken this post.
                assert_eq!(unsafe { sem_post(p as *mut sem_t) }, 0)
            });
            // SAFETY: live until freed right after.
            assert_eq!(unsafe { sem_wait(p as *mut sem_t) }, 0);
            // SAFETY: as above.
            assert_eq!(unsafe { sem_destroy(p as *mut sem_t) }, 0);
            // SAFETY: from Box::into_raw above.
            drop(unsafe { Box::from_raw(s) });
            poster.join().unwrap();
        }
    });
}

static ONCE: AtomicU32 = AtomicU32::new(0);
static ONCE_RUNS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn once_init() {
    // Slow, with a switch inside: the other callers must wait for it.
    yield_now();
    std::thread::sleep(Duration::from_millis(20));
    ONCE_RUNS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn once_runs_exactly_once() {
    let rt = rt();
    let call = |_| {
        // SAFETY: a static pthread_once_t (an int, PTHREAD_ONCE_INIT = 0) and a C-ABI function.
        let r = unsafe { pthread_once(ONCE.as_ptr().cast(), Some(once_init)) };
        assert_eq!(r, 0);
        assert_eq!(
            ONCE_RUNS.load(Ordering::SeqCst),
            1,
            "returned before the initializer ran"
        );
    };
    contend(&rt, 100, call, 2, call);
    assert_eq!(ONCE_RUNS.load(Ordering::SeqCst), 1);
    // SAFETY: a null routine is refused before anything is called.
    assert_eq!(unsafe { pthread_once(ONCE.as_ptr().cast(), None) }, EINVAL);
}

#[test]
fn attributes_round_trip_and_unsupported_ones_are_refused() {
    let mut v: c_int = -1;
    let ma = Obj::<pthread_mutexattr_t>::zeroed();
    assert_eq!(ma.init(), 0);
    assert_eq!((ma.gettype(&mut v), v), (0, NORMAL));
    for ty in [RECURSIVE, ERRORCHECK, ADAPTIVE, NORMAL] {
        assert_eq!(ma.settype(ty), 0);
        assert_eq!((ma.gettype(&mut v), v), (0, ty));
    }
    assert_eq!(ma.settype(4), EINVAL);
    assert_eq!(ma.setpshared(libc::PTHREAD_PROCESS_SHARED), 0);
    assert_eq!(
        (ma.getpshared(&mut v), v),
        (0, libc::PTHREAD_PROCESS_SHARED)
    );
    assert_eq!(ma.setpshared(7), EINVAL);
    assert_eq!(ma.setrobust(libc::PTHREAD_MUTEX_STALLED), 0);
    assert_eq!(ma.setrobust(libc::PTHREAD_MUTEX_ROBUST), ENOTSUP);
    assert_eq!(ma.setrobust(9), EINVAL);
    assert_eq!((ma.getrobust(&mut v), v), (0, libc::PTHREAD_MUTEX_STALLED));
    assert_eq!(ma.setprotocol(libc::PTHREAD_PRIO_NONE), 0);
    assert_eq!(ma.setprotocol(libc::PTHREAD_PRIO_INHERIT), ENOTSUP);
    assert_eq!(ma.setprotocol(libc::PTHREAD_PRIO_PROTECT), ENOTSUP);
    assert_eq!((ma.getprotocol(&mut v), v), (0, libc::PTHREAD_PRIO_NONE));
    assert_eq!(ma.destroy(), 0);

    let ca = Obj::<pthread_condattr_t>::zeroed();
    assert_eq!(ca.init(), 0);
    assert_eq!((ca.getclock(&mut v), v), (0, CLOCK_REALTIME));
    assert_eq!(ca.setpshared(libc::PTHREAD_PROCESS_SHARED), 0);
    assert_eq!(ca.setclock(CLOCK_MONOTONIC), 0);
    assert_eq!(ca.setclock(libc::CLOCK_PROCESS_CPUTIME_ID), EINVAL);
    assert_eq!((ca.getclock(&mut v), v), (0, CLOCK_MONOTONIC));
    assert_eq!(
        (ca.getpshared(&mut v), v),
        (0, libc::PTHREAD_PROCESS_SHARED)
    );
    assert_eq!(ca.destroy(), 0);

    let ra = Obj::<pthread_rwlockattr_t>::zeroed();
    assert_eq!(ra.init(), 0);
    assert_eq!((ra.getkind(&mut v), v), (0, 0));
    assert_eq!(ra.setkind(PREFER_WRITER_NONRECURSIVE), 0);
    assert_eq!((ra.getkind(&mut v), v), (0, PREFER_WRITER_NONRECURSIVE));
    assert_eq!(ra.setkind(3), EINVAL);
    assert_eq!(ra.setpshared(libc::PTHREAD_PROCESS_SHARED), 0);
    assert_eq!(
        (ra.getpshared(&mut v), v),
        (0, libc::PTHREAD_PROCESS_SHARED)
    );
    assert_eq!(ra.destroy(), 0);

    let ba = Obj::<pthread_barrierattr_t>::zeroed();
    assert_eq!(ba.init(), 0);
    assert_eq!(
        (ba.getpshared(&mut v), v),
        (0, libc::PTHREAD_PROCESS_PRIVATE)
    );
    assert_eq!(ba.setpshared(libc::PTHREAD_PROCESS_SHARED), 0);
    assert_eq!(
        (ba.getpshared(&mut v), v),
        (0, libc::PTHREAD_PROCESS_SHARED)
    );
    assert_eq!(ba.setpshared(2), EINVAL);
    assert_eq!(ba.destroy(), 0);
}

/// glibc's side of the layouts: its sizes and offsets checked at compile time, objects made by
/// its static initializers, and its sizes, alignments and constants for the Rust side to
/// compare.
const C_SIDE: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <stddef.h>
#include <limits.h>

#define AT(type, field, off) _Static_assert(offsetof(type, field) == off, #type "." #field)
AT(pthread_mutex_t, __data.__lock, 0);
AT(pthread_mutex_t, __data.__count, 4);
AT(pthread_mutex_t, __data.__owner, 8);
AT(pthread_mutex_t, __data.__nusers, 12);
AT(pthread_mutex_t, __data.__kind, 16);
AT(pthread_rwlock_t, __data.__readers, 0);
AT(pthread_rwlock_t, __data.__writers, 4);
AT(pthread_rwlock_t, __data.__pad3, 16);
AT(pthread_rwlock_t, __data.__shared, 28);
AT(pthread_rwlock_t, __data.__flags, 48);

pthread_mutex_t fx_normal = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t fx_recursive = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
pthread_mutex_t fx_errorcheck = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;
pthread_mutex_t fx_adaptive = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
pthread_cond_t fx_cond = PTHREAD_COND_INITIALIZER;
pthread_rwlock_t fx_rwlock = PTHREAD_RWLOCK_INITIALIZER;
pthread_rwlock_t fx_rwlock_writer = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
pthread_once_t fx_once = PTHREAD_ONCE_INIT;

#define LAYOUT(t) sizeof(t), _Alignof(t)
const unsigned long fx_layouts[] = {
    LAYOUT(pthread_mutex_t), LAYOUT(pthread_mutexattr_t), LAYOUT(pthread_cond_t),
    LAYOUT(pthread_condattr_t), LAYOUT(pthread_rwlock_t), LAYOUT(pthread_rwlockattr_t),
    LAYOUT(pthread_barrier_t), LAYOUT(pthread_barrierattr_t), LAYOUT(pthread_spinlock_t),
    LAYOUT(pthread_once_t), LAYOUT(sem_t),
};

const long fx_constants[] = {
    PTHREAD_MUTEX_NORMAL, PTHREAD_MUTEX_RECURSIVE, PTHREAD_MUTEX_ERRORCHECK,
    PTHREAD_MUTEX_ADAPTIVE_NP, PTHREAD_RWLOCK_PREFER_READER_NP,
    PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP, PTHREAD_PROCESS_SHARED,
    PTHREAD_BARRIER_SERIAL_THREAD, PTHREAD_MUTEX_ROBUST, PTHREAD_PRIO_INHERIT, SEM_VALUE_MAX,
};
"#;

/// Compiles `src` with `cc` into a shared object in a fresh temporary directory, dlopens it
/// (never closed) and returns the handle.
fn compile_and_open(src: &str) -> *mut c_void {
    let dir = std::env::temp_dir().join(format!("flexsc-sync-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (c, so) = (dir.join("side.c"), dir.join("libside.so"));
    std::fs::write(&c, src).unwrap();
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-o"])
        .arg(&so)
        .arg(&c)
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = CString::new(so.to_str().unwrap()).unwrap();
    // SAFETY: dlopen of the object just built, which has no constructors of its own.
    let h = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!h.is_null(), "dlopen failed");
    std::fs::remove_dir_all(&dir).unwrap();
    h
}

/// The address of data symbol `name` in `h`.
fn sym<T>(h: *mut c_void, name: &str) -> *mut T {
    let c = CString::new(name).unwrap();
    // SAFETY: a lookup in a handle that stays open.
    let p = unsafe { libc::dlsym(h, c.as_ptr()) };
    assert!(!p.is_null(), "{name} missing");
    p.cast()
}

static C_ONCE_RUNS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn c_once_init() {
    C_ONCE_RUNS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn glibc_static_initializers_and_layouts() {
    let h = compile_and_open(C_SIDE);
    let layouts = sym::<[u64; 22]>(h, "fx_layouts");
    // SAFETY: the C array has 22 elements (11 layouts) and is never written.
    let layouts = unsafe { *layouts };
    macro_rules! layout {
        ($($t:ty),*) => { [$(size_of::<$t>() as u64, align_of::<$t>() as u64),*] };
    }
    let ours = layout!(
        pthread_mutex_t,
        pthread_mutexattr_t,
        pthread_cond_t,
        pthread_condattr_t,
        pthread_rwlock_t,
        pthread_rwlockattr_t,
        pthread_barrier_t,
        pthread_barrierattr_t,
        pthread_spinlock_t,
        pthread_once_t,
        sem_t
    );
    assert_eq!(
        layouts, ours,
        "sizes and alignments: glibc's vs the exports' types"
    );
    let constants = sym::<[i64; 11]>(h, "fx_constants");
    // SAFETY: the C array has 11 elements and is never written.
    let constants = unsafe { *constants };
    assert_eq!(
        constants,
        [
            NORMAL as i64,
            RECURSIVE as i64,
            ERRORCHECK as i64,
            ADAPTIVE as i64,
            0,
            PREFER_WRITER_NONRECURSIVE as i64,
            libc::PTHREAD_PROCESS_SHARED as i64,
            libc::PTHREAD_BARRIER_SERIAL_THREAD as i64,
            libc::PTHREAD_MUTEX_ROBUST as i64,
            libc::PTHREAD_PRIO_INHERIT as i64,
            i32::MAX as i64,
        ]
    );

    let normal = Obj::at(sym::<pthread_mutex_t>(h, "fx_normal"));
    assert_eq!(normal.lock(), 0);
    assert_eq!(normal.trylock(), EBUSY);
    assert_eq!(normal.unlock(), 0);
    let recursive = Obj::at(sym::<pthread_mutex_t>(h, "fx_recursive"));
    assert_eq!(recursive.lock(), 0);
    assert_eq!(
        recursive.lock(),
        0,
        "PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP is recursive"
    );
    assert_eq!(recursive.unlock(), 0);
    assert_eq!(recursive.unlock(), 0);
    assert_eq!(recursive.unlock(), EPERM);
    let errorcheck = Obj::at(sym::<pthread_mutex_t>(h, "fx_errorcheck"));
    assert_eq!(errorcheck.lock(), 0);
    assert_eq!(
        errorcheck.lock(),
        EDEADLK,
        "PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP checks"
    );
    assert_eq!(errorcheck.unlock(), 0);
    assert_eq!(errorcheck.unlock(), EPERM);
    let adaptive = Obj::at(sym::<pthread_mutex_t>(h, "fx_adaptive"));
    count_under(adaptive, 20, 100, 1, 1_000, false);

    let cond = Obj::at(sym::<pthread_cond_t>(h, "fx_cond"));
    assert_eq!(cond.signal(), 0);
    assert_eq!(normal.lock(), 0);
    // PTHREAD_COND_INITIALIZER: deadlines on CLOCK_REALTIME.
    let timeout = Duration::from_millis(50);
    let t0 = Instant::now();
    assert_eq!(
        cond.timedwait(normal.p(), &after(CLOCK_REALTIME, timeout)),
        ETIMEDOUT
    );
    assert_window(t0.elapsed(), timeout, "statically initialised cond");
    assert_eq!(normal.unlock(), 0);

    writer_waiting_admits_reader(Obj::at(sym(h, "fx_rwlock")), false);
    writer_waiting_admits_reader(Obj::at(sym(h, "fx_rwlock_writer")), true);

    let once = sym::<pthread_once_t>(h, "fx_once");
    for _ in 0..3 {
        // SAFETY: a live pthread_once_t and a C-ABI function.
        assert_eq!(unsafe { pthread_once(once, Some(c_once_init)) }, 0);
    }
    assert_eq!(C_ONCE_RUNS.load(Ordering::SeqCst), 1);
}

/// What the parent and a forked child share: one anonymous shared mapping.
#[repr(C)]
struct ForkShared {
    m: pthread_mutex_t,
    n: u64,
    cm: pthread_mutex_t,
    c: pthread_cond_t,
    flag: u32,
    go: sem_t,
    back: sem_t,
}

#[test]
fn process_shared_objects_across_fork() {
    const CHILD_ITERS: usize = 20_000;
    const GREEN: usize = 4;
    const GREEN_ITERS: usize = 2_000;
    const OS_ITERS: usize = 5_000;
    let rt = rt();
    // SAFETY: a fresh anonymous shared mapping (zeroed), unmapped at the end.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size_of::<ForkShared>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    let p = p.cast::<ForkShared>();
    // SAFETY: field addresses inside the mapping, which outlives every use.
    let (m, n, cm, c, flag, go, back) = unsafe {
        (
            &raw mut (*p).m,
            Obj::at(&raw mut (*p).n),
            &raw mut (*p).cm,
            Obj::at(&raw mut (*p).c),
            &raw mut (*p).flag,
            Obj::at(&raw mut (*p).go),
            Obj::at(&raw mut (*p).back),
        )
    };
    // Error-checking: the child's forking thread has the parent thread's pthread_t, and must
    // still be another owner.
    let m = mutex_at(ERRORCHECK, true, Some(m));
    let cm = mutex_at(NORMAL, true, Some(cm));
    let ca = Obj::<pthread_condattr_t>::zeroed();
    assert_eq!(ca.init(), 0);
    assert_eq!(ca.setpshared(libc::PTHREAD_PROCESS_SHARED), 0);
    assert_eq!(c.init(ca.p()), 0);
    assert_eq!(go.init(1, 0), 0);
    assert_eq!(back.init(1, 0), 0);
    // The parent's thread holds the mutex across the fork: the child must wait for it.
    assert_eq!(m.lock(), 0);

    // SAFETY: the child only runs the code below (atomics, raw futex calls, no allocation),
    // then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = (|| {
            for i in 0..CHILD_ITERS {
                if m.lock() != 0 {
                    return false;
                }
                n.bump(i % 100 == 0);
                if m.unlock() != 0 {
                    return false;
                }
            }
            if cm.lock() != 0 {
                return false;
            }
            // SAFETY: the flag is only accessed under `cm`.
            while unsafe { flag.read_volatile() } == 0 {
                if c.wait(cm.p()) != 0 {
                    return false;
                }
            }
            cm.unlock() == 0 && back.post() == 0 && go.wait() == 0
        })();
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }

    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(m.unlock(), 0);
    let (mg, ng, mo, no) = (m.clone(), n.clone(), m.clone(), n.clone());
    contend(
        &rt,
        GREEN,
        move |t| {
            for i in 0..GREEN_ITERS {
                assert_eq!(mg.lock(), 0);
                ng.bump((t + i) % 7 == 0);
                assert_eq!(mg.unlock(), 0);
            }
        },
        1,
        move |_| {
            for _ in 0..OS_ITERS {
                assert_eq!(mo.lock(), 0);
                no.bump(false);
                assert_eq!(mo.unlock(), 0);
            }
        },
    );
    // Hand-shake from a green thread: the child waits on the condition variable, then posts
    // `back`, which the green thread waits for (in the kernel, on a syscall thread).
    let flag = flag as usize;
    rt.block_on(move || {
        assert_eq!(cm.lock(), 0);
        // SAFETY: the flag is only accessed under `cm`.
        unsafe { (flag as *mut u32).write_volatile(1) };
        assert_eq!(c.broadcast(), 0);
        assert_eq!(cm.unlock(), 0);
        assert_eq!(back.wait(), 0);
        assert_eq!(go.post(), 0);
    });
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: status {status:#x}"
    );
    assert_eq!(
        n.get(),
        (CHILD_ITERS + GREEN * GREEN_ITERS + OS_ITERS) as u64
    );
    // SAFETY: nothing uses the mapping any more.
    let unmapped = unsafe { libc::munmap(p.cast(), size_of::<ForkShared>()) };
    assert_eq!(unmapped, 0);
}
