//! The futex-address table on the real runtime: green threads (and OS threads) waiting on and
//! waking futex words, errors, timeouts, bitsets, exact wake counts. Timing bounds are hang
//! guards, not speed tests.
#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flexsc_threads::futex::{self, BITSET_MATCH_ANY, FutexError};
use flexsc_threads::{Runtime, spawn, yield_now};

fn rt(cores: usize) -> Runtime {
    Runtime::builder()
        .cores(cores)
        .stack_size(64 * 1024)
        .build()
        .unwrap()
}

/// Waits until `word` is not 0; how many waits were ended by a wake.
fn wait_while_zero(word: &AtomicU32) -> usize {
    let mut woken = 0;
    while word.load(Ordering::Acquire) == 0 {
        match futex::wait(word, 0, BITSET_MATCH_ANY, None) {
            Ok(()) => woken += 1,
            Err(FutexError::WouldBlock) => {}
            Err(e) => panic!("untimed wait failed: {e}"),
        }
    }
    woken
}

/// Wakes `word` (`n` at a time, with `bitset`) until `total` waiters were woken; every call
/// wakes at most `n`. For waiters that can only leave through a wake (their word never changes).
fn wake_until(word: &AtomicU32, n: u32, bitset: u32, total: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut woken = 0;
    while woken < total {
        let k = futex::wake(word, n, bitset).unwrap();
        assert!(k <= n as usize, "wake({n}) woke {k}");
        woken += k;
        assert!(woken <= total, "woke {woken} of {total} waiters");
        assert!(Instant::now() < deadline, "woke {woken} of {total} waiters");
        yield_now();
    }
}

#[test]
fn errors_and_no_waiters() {
    let w = AtomicU32::new(5);
    let check = |w: &AtomicU32| {
        assert_eq!(
            futex::wait(w, 4, BITSET_MATCH_ANY, None),
            Err(FutexError::WouldBlock)
        );
        // The value is compared before the deadline is looked at, as by the kernel.
        assert_eq!(
            futex::wait(w, 4, BITSET_MATCH_ANY, Some(Instant::now())),
            Err(FutexError::WouldBlock)
        );
        assert_eq!(futex::wait(w, 5, 0, None), Err(FutexError::Invalid));
        assert_eq!(futex::wake(w, 1, 0), Err(FutexError::Invalid));
        let misaligned = (w as *const AtomicU32 as usize + 1) as *const AtomicU32;
        assert_eq!(
            futex::wake(misaligned, 1, BITSET_MATCH_ANY),
            Err(FutexError::Invalid)
        );
        assert_eq!(futex::wake(w, u32::MAX, BITSET_MATCH_ANY), Ok(0));
    };
    check(&w);
    assert_eq!(FutexError::WouldBlock.errno(), libc::EAGAIN);
    assert_eq!(FutexError::TimedOut.errno(), libc::ETIMEDOUT);
    assert_eq!(FutexError::Invalid.errno(), libc::EINVAL);
    let w = Arc::new(w);
    let rt = rt(2);
    rt.block_on(move || check(&w));
}

#[test]
fn timeouts_on_green_and_os_threads() {
    let timed_wait = || {
        let w = AtomicU32::new(0);
        let timeout = Duration::from_millis(50);
        let start = Instant::now();
        let r = futex::wait(&w, 0, BITSET_MATCH_ANY, Some(start + timeout));
        let took = start.elapsed();
        assert_eq!(r, Err(FutexError::TimedOut));
        assert!(took >= timeout, "woke early after {took:?}");
        assert!(took < timeout + Duration::from_secs(2), "took {took:?}");
        // Already past.
        assert_eq!(
            futex::wait(&w, 0, BITSET_MATCH_ANY, Some(Instant::now())),
            Err(FutexError::TimedOut)
        );
    };
    timed_wait();
    let rt = rt(2);
    // Several green threads time out at once, none blocking its carrier.
    rt.block_on(move || {
        let hs: Vec<_> = (0..8).map(|_| spawn(timed_wait)).collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    // A timed-out waiter left nothing behind: a wake finds nobody.
    let w = AtomicU32::new(0);
    assert_eq!(
        futex::wait(&w, 0, BITSET_MATCH_ANY, Some(Instant::now())),
        Err(FutexError::TimedOut)
    );
    assert_eq!(futex::wake(&w, u32::MAX, BITSET_MATCH_ANY), Ok(0));
}

/// One carrier: a green thread waiting on a futex must give the carrier to the green thread that
/// will wake it.
#[test]
fn waiting_green_thread_does_not_block_its_carrier() {
    let rt = rt(1);
    let woken = rt.block_on(|| {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = w.clone();
        let waiter = spawn(move || wait_while_zero(&w2));
        // Let the waiter park first (most of the time).
        for _ in 0..10 {
            yield_now();
        }
        w.store(1, Ordering::Release);
        let n = futex::wake(&*w, 1, BITSET_MATCH_ANY).unwrap();
        assert_eq!(waiter.join().unwrap(), n);
        n
    });
    assert!(woken <= 1);
}

/// A token passed around a ring of green threads, each parked on its own word until its
/// predecessor sets it and wakes it.
#[test]
fn token_ring_of_green_threads() {
    const THREADS: usize = 100;
    const ROUNDS: u32 = 50;
    let rt = rt(2);
    rt.block_on(|| {
        let words: Arc<Vec<AtomicU32>> =
            Arc::new((0..THREADS).map(|_| AtomicU32::new(0)).collect());
        let hs: Vec<_> = (0..THREADS)
            .map(|i| {
                let words = words.clone();
                spawn(move || {
                    let (me, next) = (&words[i], &words[(i + 1) % THREADS]);
                    for round in 1..=ROUNDS {
                        // My turn comes when my word reaches `round`.
                        loop {
                            let v = me.load(Ordering::Acquire);
                            if v >= round {
                                assert_eq!(v, round, "thread {i} skipped a round");
                                break;
                            }
                            match futex::wait(me, v, BITSET_MATCH_ANY, None) {
                                Ok(()) | Err(FutexError::WouldBlock) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                        // Thread 0 starts each round; the others hand it on within the round.
                        let to = if i + 1 == THREADS { round + 1 } else { round };
                        if to <= ROUNDS {
                            next.store(to, Ordering::Release);
                            futex::wake(next, 1, BITSET_MATCH_ANY).unwrap();
                        }
                    }
                })
            })
            .collect();
        words[0].store(1, Ordering::Release);
        futex::wake(&words[0], 1, BITSET_MATCH_ANY).unwrap();
        for h in hs {
            h.join().unwrap();
        }
        for w in words.iter() {
            assert_eq!(w.load(Ordering::Relaxed), ROUNDS);
        }
    });
}

/// Many waiters of one word, released together: the wake's count is exactly the number of waits
/// it ended.
#[test]
fn wake_all_count_is_exact() {
    const WAITERS: usize = 200;
    let rt = rt(2);
    rt.block_on(|| {
        let w = Arc::new(AtomicU32::new(0));
        let arrived = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..WAITERS)
            .map(|_| {
                let (w, arrived) = (w.clone(), arrived.clone());
                spawn(move || {
                    arrived.fetch_add(1, Ordering::Relaxed);
                    wait_while_zero(&w)
                })
            })
            .collect();
        while arrived.load(Ordering::Relaxed) < WAITERS {
            yield_now();
        }
        w.store(1, Ordering::Release);
        let n = futex::wake(&*w, u32::MAX, BITSET_MATCH_ANY).unwrap();
        let woken: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(n, woken);
        assert!(n <= WAITERS);
    });
}

/// Waiters that only a wake can release (their word never changes): `wake(n)` releases at most
/// n at a time, and exactly as many in all as there are waiters.
#[test]
fn wake_n_releases_at_most_n() {
    const WAITERS: usize = 60;
    let rt = rt(2);
    rt.block_on(|| {
        let w = Arc::new(AtomicU32::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..WAITERS)
            .map(|_| {
                let (w, done) = (w.clone(), done.clone());
                spawn(move || {
                    assert_eq!(futex::wait(&w, 0, BITSET_MATCH_ANY, None), Ok(()));
                    done.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        wake_until(&w, 7, BITSET_MATCH_ANY, WAITERS);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(done.load(Ordering::Relaxed), WAITERS);
        assert_eq!(futex::wake(&*w, u32::MAX, BITSET_MATCH_ANY), Ok(0));
    });
}

/// Wakes pick waiters by address and bitset: wakes of bitset 0b01 release only the 0b01 waiters
/// of their word, never the 0b10 ones nor the waiters of another word.
#[test]
fn bitsets_and_addresses_filter_wakes() {
    const EACH: usize = 20;
    let rt = rt(2);
    rt.block_on(|| {
        let w = Arc::new(AtomicU32::new(0));
        let other = Arc::new(AtomicU32::new(0));
        let done = Arc::new([
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        ]);
        let mut hs = Vec::new();
        for (group, bitset) in [(0, 0b01), (1, 0b10), (2, BITSET_MATCH_ANY)] {
            for _ in 0..EACH {
                let word = if group == 2 { other.clone() } else { w.clone() };
                let done = done.clone();
                hs.push(spawn(move || {
                    assert_eq!(futex::wait(&word, 0, bitset, None), Ok(()));
                    done[group].fetch_add(1, Ordering::Relaxed);
                }));
            }
        }
        wake_until(&w, u32::MAX, 0b01, EACH);
        assert_eq!(
            done[1].load(Ordering::Relaxed),
            0,
            "a 0b01 wake released 0b10 waiters"
        );
        assert_eq!(
            done[2].load(Ordering::Relaxed),
            0,
            "a wake released another word's waiters"
        );
        // Bits in common are enough: 0b11 releases the 0b10 waiters.
        wake_until(&w, u32::MAX, 0b11, EACH);
        assert_eq!(
            done[2].load(Ordering::Relaxed),
            0,
            "a wake released another word's waiters"
        );
        wake_until(&other, 5, BITSET_MATCH_ANY, EACH);
        for h in hs {
            h.join().unwrap();
        }
        for d in done.iter() {
            assert_eq!(d.load(Ordering::Relaxed), EACH);
        }
    });
}

/// OS threads and green threads on one word: each side wakes the other.
#[test]
fn os_and_green_threads_share_a_word() {
    let rt = rt(2);
    let to_os = Arc::new(AtomicU32::new(0));
    let to_green = Arc::new(AtomicU32::new(0));
    let (a, b) = (to_os.clone(), to_green.clone());
    let os = std::thread::spawn(move || {
        wait_while_zero(&a);
        b.store(1, Ordering::Release);
        futex::wake(&*b, u32::MAX, BITSET_MATCH_ANY).unwrap();
    });
    let (a, b) = (to_os.clone(), to_green.clone());
    rt.block_on(move || {
        let green = spawn(move || wait_while_zero(&b));
        a.store(1, Ordering::Release);
        futex::wake(&*a, u32::MAX, BITSET_MATCH_ANY).unwrap();
        green.join().unwrap();
    });
    os.join().unwrap();
}
