//! The sync primitives under contention: green threads on every carrier, plus plain OS threads
//! contending on the same objects. Timing bounds are hang guards, not speed tests.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flexsc_threads::sync::{
    Barrier, Condvar, Mutex, MutexKind, Once, RawMutex, RwLock, Semaphore, Spin,
};
use flexsc_threads::{Runtime, spawn, yield_now};

fn rt() -> Runtime {
    Runtime::builder()
        .cores(2)
        .stack_size(64 * 1024)
        .build()
        .unwrap()
}

/// Asserts a timed wait took at least `timeout` and returned within a sane window.
fn assert_window(took: Duration, timeout: Duration, what: &str) {
    assert!(took >= timeout, "{what}: woke early after {took:?}");
    assert!(
        took < timeout + Duration::from_secs(2),
        "{what}: took {took:?}"
    );
}

#[test]
fn mutex_counts_exactly_under_contention() {
    const THREADS: usize = 1000;
    const ITERS: usize = 100;
    const OS_ITERS: usize = 20_000;
    let rt = rt();
    let m = Arc::new(Mutex::new(0usize));
    let os = {
        let m = m.clone();
        std::thread::spawn(move || {
            for i in 0..OS_ITERS {
                let mut g = m.lock();
                let v = *g;
                if i % 50 == 0 {
                    std::thread::yield_now();
                }
                *g = v + 1;
            }
        })
    };
    let mg = m.clone();
    rt.block_on(move || {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let m = mg.clone();
                spawn(move || {
                    for i in 0..ITERS {
                        let mut g = m.lock();
                        // A non-atomic read-modify-write with a switch inside: any overlap of
                        // two holders loses an increment.
                        let v = *g;
                        if (t + i) % 7 == 0 {
                            yield_now();
                        }
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    os.join().unwrap();
    assert_eq!(*m.lock(), THREADS * ITERS + OS_ITERS);
    assert!(!m.is_locked());
}

#[test]
fn mutex_try_lock_and_timeout() {
    let rt = rt();
    let m = Arc::new(Mutex::new(()));
    let g = m.lock();
    assert!(m.try_lock().is_none());
    // Green thread waiting for a mutex held by an OS thread (this one).
    let m2 = m.clone();
    let took = rt.block_on(move || {
        let t = Instant::now();
        assert!(m2.lock_timeout(Duration::from_millis(100)).is_none());
        t.elapsed()
    });
    assert_window(took, Duration::from_millis(100), "green lock_timeout");
    drop(g);
    // OS thread waiting for a mutex held by a green thread.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let m3 = m.clone();
    let h = rt.spawn(move || {
        let _g = m3.lock();
        held_tx.send(()).unwrap();
        // Hold it without blocking the carrier.
        while done_rx.try_recv().is_err() {
            flexsc_threads::sleep(Duration::from_millis(5));
        }
    });
    held_rx.recv().unwrap();
    let t = Instant::now();
    assert!(m.lock_timeout(Duration::from_millis(100)).is_none());
    assert_window(t.elapsed(), Duration::from_millis(100), "OS lock_timeout");
    done_tx.send(()).unwrap();
    h.join().unwrap();
    // A timed lock that succeeds once the holder leaves.
    assert!(m.lock_timeout(Duration::from_secs(5)).is_some());
}

#[test]
fn condvar_producers_and_consumers() {
    const PRODUCERS: usize = 4;
    const CONSUMERS: usize = 4;
    const ITEMS: u64 = 2000;
    const CAP: usize = 8;
    struct Q {
        items: VecDeque<u64>,
        producers_left: usize,
    }
    struct Shared {
        q: Mutex<Q>,
        not_empty: Condvar,
        not_full: Condvar,
    }
    fn produce(s: &Shared, base: u64) -> u64 {
        let mut sum = 0;
        for i in 0..ITEMS {
            let v = base * 1_000_000 + i;
            let mut g = s.not_full.wait_while(s.q.lock(), |q| q.items.len() >= CAP);
            g.items.push_back(v);
            drop(g);
            s.not_empty.notify_one();
            sum += v;
        }
        let mut g = s.q.lock();
        g.producers_left -= 1;
        if g.producers_left == 0 {
            s.not_empty.notify_all();
        }
        sum
    }
    fn consume(s: &Shared) -> (u64, u64) {
        let (mut sum, mut n) = (0, 0);
        loop {
            let mut g = s
                .not_empty
                .wait_while(s.q.lock(), |q| q.items.is_empty() && q.producers_left > 0);
            match g.items.pop_front() {
                Some(v) => {
                    drop(g);
                    s.not_full.notify_one();
                    sum += v;
                    n += 1;
                }
                None => return (sum, n),
            }
        }
    }
    let rt = rt();
    // Green producers and consumers, plus one OS producer and one OS consumer.
    let s = Arc::new(Shared {
        q: Mutex::new(Q {
            items: VecDeque::new(),
            producers_left: PRODUCERS + 1,
        }),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
    });
    let os_prod = {
        let s = s.clone();
        std::thread::spawn(move || produce(&s, 99))
    };
    let os_cons = {
        let s = s.clone();
        std::thread::spawn(move || consume(&s))
    };
    let sg = s.clone();
    let (produced, consumed, n) = rt.block_on(move || {
        let ps: Vec<_> = (0..PRODUCERS as u64)
            .map(|p| {
                let s = sg.clone();
                spawn(move || produce(&s, p))
            })
            .collect();
        let cs: Vec<_> = (0..CONSUMERS)
            .map(|_| {
                let s = sg.clone();
                spawn(move || consume(&s))
            })
            .collect();
        let produced: u64 = ps.into_iter().map(|h| h.join().unwrap()).sum();
        let (mut sum, mut n) = (0, 0);
        for h in cs {
            let (s, k) = h.join().unwrap();
            sum += s;
            n += k;
        }
        (produced, sum, n)
    });
    let produced = produced + os_prod.join().unwrap();
    let (os_sum, os_n) = os_cons.join().unwrap();
    assert_eq!(consumed + os_sum, produced);
    assert_eq!(n + os_n, (PRODUCERS as u64 + 1) * ITEMS);
    assert!(s.q.lock().items.is_empty());
}

#[test]
fn condvar_timed_waits() {
    let rt = rt();
    let m = Arc::new(Mutex::new(false));
    let cv = Arc::new(Condvar::new());
    let (m2, cv2) = (m.clone(), cv.clone());
    rt.block_on(move || {
        // Nobody notifies: times out.
        let t = Instant::now();
        let (g, r) = cv2.wait_timeout(m2.lock(), Duration::from_millis(100));
        assert!(r.timed_out());
        assert_window(
            t.elapsed(),
            Duration::from_millis(100),
            "green wait_timeout",
        );
        drop(g);
        // Notified by an OS thread well before the deadline: not timed out.
        let (m3, cv3) = (m2.clone(), cv2.clone());
        let os = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            *m3.lock() = true;
            cv3.notify_all();
        });
        let (g, r) = cv2.wait_timeout_while(m2.lock(), Duration::from_secs(10), |flag| !*flag);
        assert!(!r.timed_out());
        assert!(*g);
        drop(g);
        // (Joining an OS thread blocks the carrier briefly: it has already notified.)
        os.join().unwrap();
    });
    // An OS thread's timed wait.
    let t = Instant::now();
    let (_g, r) = cv.wait_deadline(m.lock(), Instant::now() + Duration::from_millis(100));
    assert!(r.timed_out());
    assert_window(t.elapsed(), Duration::from_millis(100), "OS wait_deadline");
}

/// notify_one reaches one of many waiters even when the others are timing out at the same time.
#[test]
fn condvar_notify_one_is_not_lost_to_timeouts() {
    let rt = rt();
    rt.block_on(|| {
        for round in 0..50u64 {
            let s = Arc::new((Mutex::new(0u32), Condvar::new()));
            let woken = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = (0..8u64)
                .map(|i| {
                    let (s, woken) = (s.clone(), woken.clone());
                    spawn(move || {
                        let (m, cv) = &*s;
                        let mut g = m.lock();
                        // Half wait briefly, half until the token arrives.
                        let deadline = Instant::now() + Duration::from_millis(1 + (i + round) % 3);
                        loop {
                            if *g > 0 {
                                *g -= 1;
                                woken.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                            if i % 2 == 0 {
                                let (g2, r) = cv.wait_deadline(g, deadline);
                                g = g2;
                                if r.timed_out() && *g == 0 {
                                    return;
                                }
                            } else {
                                g = cv.wait(g);
                            }
                        }
                    })
                })
                .collect();
            flexsc_threads::sleep(Duration::from_millis(1));
            // Four tokens for the four untimed waiters (timed ones may take some: then more).
            for _ in 0..4 {
                *s.0.lock() += 1;
                s.1.notify_one();
            }
            // Keep topping up until every untimed waiter has its token.
            let t = Instant::now();
            while hs.iter().filter(|h| !h.is_finished()).count() > 0 {
                if *s.0.lock() == 0 && woken.load(Ordering::Relaxed) < 8 {
                    let live = hs.iter().filter(|h| !h.is_finished()).count();
                    if live > 0 && *s.0.lock() == 0 {
                        *s.0.lock() += 1;
                        s.1.notify_one();
                    }
                }
                assert!(
                    t.elapsed() < Duration::from_secs(5),
                    "a notification was lost"
                );
                flexsc_threads::sleep(Duration::from_millis(1));
            }
            for h in hs {
                h.join().unwrap();
            }
        }
    });
}

#[test]
fn raw_mutex_recursive_and_errorcheck() {
    let rt = rt();
    let rec = Arc::new(RawMutex::new(MutexKind::Recursive));
    let chk = Arc::new(RawMutex::new(MutexKind::ErrorCheck));
    let (r2, c2) = (rec.clone(), chk.clone());
    rt.block_on(move || {
        // Recursive: the owner relocks and unlocks as often.
        for _ in 0..3 {
            r2.lock().unwrap();
        }
        assert_eq!(r2.try_lock(), Ok(()));
        // Others see it held, green or OS.
        let r3 = r2.clone();
        assert_eq!(
            spawn(move || r3.try_lock()).join().unwrap(),
            Err(libc::EBUSY)
        );
        let r3 = r2.clone();
        assert_eq!(spawn(move || r3.unlock()).join().unwrap(), Err(libc::EPERM));
        let r3 = r2.clone();
        assert_eq!(
            std::thread::spawn(move || r3.try_lock()).join().unwrap(),
            Err(libc::EBUSY)
        );
        for _ in 0..4 {
            r2.unlock().unwrap();
        }
        assert!(!r2.is_locked());
        assert_eq!(r2.unlock(), Err(libc::EPERM));

        // Error-check: relock is EDEADLK, foreign or double unlock EPERM.
        c2.lock().unwrap();
        assert_eq!(c2.lock(), Err(libc::EDEADLK));
        assert_eq!(c2.try_lock(), Err(libc::EDEADLK));
        let c3 = c2.clone();
        assert_eq!(spawn(move || c3.unlock()).join().unwrap(), Err(libc::EPERM));
        let c3 = c2.clone();
        let t = Instant::now();
        assert_eq!(
            spawn(move || c3.lock_timeout(Duration::from_millis(100)))
                .join()
                .unwrap(),
            Err(libc::ETIMEDOUT)
        );
        assert_window(t.elapsed(), Duration::from_millis(100), "raw lock_timeout");
        c2.unlock().unwrap();
        assert_eq!(c2.unlock(), Err(libc::EPERM));
    });
    // The same rules for an OS thread.
    chk.lock().unwrap();
    assert_eq!(chk.lock(), Err(libc::EDEADLK));
    let c3 = chk.clone();
    assert_eq!(rt.block_on(move || c3.unlock()), Err(libc::EPERM));
    chk.unlock().unwrap();
    // A normal mutex: not checked.
    let n = RawMutex::new(MutexKind::Normal);
    n.lock().unwrap();
    assert_eq!(n.try_lock(), Err(libc::EBUSY));
    n.unlock().unwrap();
}

#[test]
fn condvar_wait_raw_restores_recursion() {
    let rt = rt();
    let m = Arc::new(RawMutex::new(MutexKind::Recursive));
    let cv = Arc::new(Condvar::new());
    let flag = Arc::new(AtomicBool::new(false));
    let (m2, cv2, f2) = (m.clone(), cv.clone(), flag.clone());
    rt.block_on(move || {
        m2.lock().unwrap();
        m2.lock().unwrap();
        let (m3, cv3, f3) = (m2.clone(), cv2.clone(), f2.clone());
        let h = spawn(move || {
            // Gets the mutex only because the waiter released both levels.
            m3.lock().unwrap();
            f3.store(true, Ordering::Relaxed);
            cv3.notify_one();
            m3.unlock().unwrap();
        });
        while !f2.load(Ordering::Relaxed) {
            let deadline = Instant::now() + Duration::from_secs(5);
            assert_eq!(cv2.wait_raw(&m2, Some(deadline)), Ok(false));
        }
        // Depth 2 restored: two unlocks, then not held.
        m2.unlock().unwrap();
        assert!(m2.is_locked());
        m2.unlock().unwrap();
        assert!(!m2.is_locked());
        h.join().unwrap();
        // Waiting on a checked mutex one does not hold.
        assert_eq!(cv2.wait_raw(&m2, None), Err(libc::EPERM));
    });
}

#[test]
fn rwlock_readers_share_writers_exclude() {
    let rt = rt();
    let l = Arc::new(RwLock::new(0u64));
    // Readers concurrent: 4 readers meet at a barrier while all hold the read lock.
    let l2 = l.clone();
    rt.block_on(move || {
        let b = Arc::new(Barrier::new(4));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (l, b) = (l2.clone(), b.clone());
                spawn(move || {
                    let g = l.read();
                    b.wait();
                    *g
                })
            })
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap(), 0);
        }
    });
    // Writers exclusive, readers never see a writer, under green and OS contention.
    let readers = Arc::new(AtomicUsize::new(0));
    let writers = Arc::new(AtomicUsize::new(0));
    let work = |l: &RwLock<u64>, readers: &AtomicUsize, writers: &AtomicUsize, i: usize| {
        if i % 4 == 0 {
            let mut g = l.write();
            assert_eq!(writers.fetch_add(1, Ordering::SeqCst), 0);
            assert_eq!(readers.load(Ordering::SeqCst), 0);
            let v = *g;
            yield_now();
            *g = v + 1;
            writers.fetch_sub(1, Ordering::SeqCst);
        } else {
            let _g = l.read();
            readers.fetch_add(1, Ordering::SeqCst);
            assert_eq!(writers.load(Ordering::SeqCst), 0);
            yield_now();
            readers.fetch_sub(1, Ordering::SeqCst);
        }
    };
    let os = {
        let (l, r, w) = (l.clone(), readers.clone(), writers.clone());
        std::thread::spawn(move || {
            for i in 0..2000 {
                work(&l, &r, &w, i);
            }
        })
    };
    let (l2, r2, w2) = (l.clone(), readers.clone(), writers.clone());
    rt.block_on(move || {
        let hs: Vec<_> = (0..200)
            .map(|t| {
                let (l, r, w) = (l2.clone(), r2.clone(), w2.clone());
                spawn(move || {
                    for i in 0..40 {
                        work(&l, &r, &w, t + i);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    os.join().unwrap();
    assert_eq!(*l.read(), 200 * 10 + 500);
    assert!(l.try_write().is_some());
}

#[test]
fn rwlock_writer_is_not_starved_by_readers() {
    let rt = rt();
    let took = rt.block_on(|| {
        let l = Arc::new(RwLock::new(()));
        let stop = Arc::new(AtomicBool::new(false));
        // Overlapping readers: at every moment some reader holds the lock.
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (l, stop) = (l.clone(), stop.clone());
                spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _g = l.read();
                        yield_now();
                        yield_now();
                    }
                })
            })
            .collect();
        // Let the readers get going. (Yields, not `sleep`: the carriers' queues never empty
        // while readers yield, and timers fire only when a carrier runs out of work.)
        for _ in 0..200 {
            yield_now();
        }
        let t = Instant::now();
        let g = l.write();
        let took = t.elapsed();
        drop(g);
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().unwrap();
        }
        took
    });
    assert!(took < Duration::from_secs(2), "writer waited {took:?}");
}

#[test]
fn barrier_generations() {
    const N: usize = 8;
    const ROUNDS: usize = 50;
    let rt = rt();
    let b = Arc::new(Barrier::new(N));
    let arrived: Arc<Vec<AtomicUsize>> =
        Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
    let leaders = Arc::new(AtomicUsize::new(0));
    let round = move |b: &Barrier, arrived: &[AtomicUsize], leaders: &AtomicUsize| {
        for (r, a) in arrived.iter().enumerate() {
            a.fetch_add(1, Ordering::SeqCst);
            if b.wait().is_leader() {
                leaders.fetch_add(1, Ordering::SeqCst);
            }
            // Nobody leaves a round before everyone has arrived at it.
            assert_eq!(a.load(Ordering::SeqCst), N, "round {r}");
            if r % 3 == 0 {
                yield_now();
            }
        }
    };
    // N-1 green participants and one OS thread.
    let os = {
        let (b, a, l) = (b.clone(), arrived.clone(), leaders.clone());
        std::thread::spawn(move || round(&b, &a, &l))
    };
    let (b2, a2, l2) = (b.clone(), arrived.clone(), leaders.clone());
    rt.block_on(move || {
        let hs: Vec<_> = (0..N - 1)
            .map(|_| {
                let (b, a, l) = (b2.clone(), a2.clone(), l2.clone());
                spawn(move || round(&b, &a, &l))
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    os.join().unwrap();
    assert_eq!(leaders.load(Ordering::SeqCst), ROUNDS);
}

#[test]
fn once_runs_exactly_once() {
    let rt = rt();
    for _ in 0..5 {
        let once = Arc::new(Once::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let value = Arc::new(AtomicUsize::new(0));
        let body = |once: &Once, runs: &AtomicUsize, value: &AtomicUsize| {
            once.call_once(|| {
                runs.fetch_add(1, Ordering::SeqCst);
                // Switch while running so other racers park on it.
                for _ in 0..5 {
                    yield_now();
                }
                value.store(42, Ordering::Relaxed);
            });
            // Whatever the initializer did is visible once call_once returns.
            assert_eq!(value.load(Ordering::Relaxed), 42);
            assert!(once.is_completed());
        };
        let os = {
            let (o, r, v) = (once.clone(), runs.clone(), value.clone());
            std::thread::spawn(move || body(&o, &r, &v))
        };
        let (o2, r2, v2) = (once.clone(), runs.clone(), value.clone());
        rt.block_on(move || {
            let hs: Vec<_> = (0..100)
                .map(|_| {
                    let (o, r, v) = (o2.clone(), r2.clone(), v2.clone());
                    spawn(move || body(&o, &r, &v))
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
        os.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn once_reruns_after_a_panicking_initializer() {
    let rt = rt();
    let once = Arc::new(Once::new());
    let o = once.clone();
    assert!(
        rt.spawn(move || o.call_once(|| panic!("init failed")))
            .join()
            .is_err()
    );
    assert!(!once.is_completed());
    let ran = Arc::new(AtomicBool::new(false));
    let (o, r) = (once.clone(), ran.clone());
    rt.block_on(move || o.call_once(|| r.store(true, Ordering::Relaxed)));
    assert!(ran.load(Ordering::Relaxed) && once.is_completed());
}

#[test]
fn semaphore_never_exceeds_its_count() {
    const PERMITS: usize = 3;
    let rt = rt();
    let sem = Arc::new(Semaphore::new(PERMITS));
    let inside = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let body = |sem: &Semaphore, inside: &AtomicUsize, max: &AtomicUsize, i: usize| {
        sem.acquire();
        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(n <= PERMITS, "{n} holders");
        max.fetch_max(n, Ordering::SeqCst);
        if i % 2 == 0 {
            yield_now();
        }
        inside.fetch_sub(1, Ordering::SeqCst);
        sem.release(1);
    };
    let os = {
        let (s, i, m) = (sem.clone(), inside.clone(), max.clone());
        std::thread::spawn(move || {
            for k in 0..2000 {
                body(&s, &i, &m, k);
            }
        })
    };
    let (s2, i2, m2) = (sem.clone(), inside.clone(), max.clone());
    rt.block_on(move || {
        let hs: Vec<_> = (0..300)
            .map(|t| {
                let (s, i, m) = (s2.clone(), i2.clone(), m2.clone());
                spawn(move || {
                    for k in 0..20 {
                        body(&s, &i, &m, t + k);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    os.join().unwrap();
    assert_eq!(sem.available(), PERMITS);

    // Timed acquire with nothing available, then release(n) waking several waiters.
    let sem = Arc::new(Semaphore::new(0));
    let s2 = sem.clone();
    rt.block_on(move || {
        let t = Instant::now();
        assert!(!s2.try_acquire());
        assert!(!s2.acquire_timeout(Duration::from_millis(100)));
        assert_window(t.elapsed(), Duration::from_millis(100), "acquire_timeout");
        let hs: Vec<_> = (0..5)
            .map(|_| {
                let s = s2.clone();
                spawn(move || s.acquire_timeout(Duration::from_secs(10)))
            })
            .collect();
        flexsc_threads::sleep(Duration::from_millis(10));
        s2.release(5);
        for h in hs {
            assert!(h.join().unwrap());
        }
        assert_eq!(s2.available(), 0);
    });
    let t = Instant::now();
    assert!(!sem.acquire_timeout(Duration::from_millis(100)));
    assert_window(
        t.elapsed(),
        Duration::from_millis(100),
        "OS acquire_timeout",
    );
}

#[test]
fn spin_lock_counts_exactly() {
    let rt = rt();
    let s = Arc::new(Spin::new(0usize));
    let os = {
        let s = s.clone();
        std::thread::spawn(move || {
            for _ in 0..10_000 {
                *s.lock() += 1;
            }
        })
    };
    let s2 = s.clone();
    rt.block_on(move || {
        let hs: Vec<_> = (0..200)
            .map(|t| {
                let s = s2.clone();
                spawn(move || {
                    for i in 0..50 {
                        let mut g = s.lock();
                        let v = *g;
                        // Yielding while holding a spin lock: waiters must yield too, or
                        // a waiter on the holder's carrier would spin forever.
                        if (t + i) % 5 == 0 {
                            yield_now();
                        }
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    os.join().unwrap();
    assert_eq!(*s.lock(), 200 * 50 + 10_000);
}
