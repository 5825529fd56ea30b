//! Thread-specific data: `pthread_key_create`, `pthread_key_delete`, `pthread_getspecific`,
//! `pthread_setspecific`, with destructors that run when a thread ends, green threads included
//! (glibc's own run from its thread-exit path, which green threads never take).
//!
//! A key is a slot in a global table whose sequence number is odd while the key exists; a
//! thread's values live in a per-thread array that records, for each value, the sequence number
//! it was set under, so a deleted (and maybe re-created) key reads as unset. The array is freed,
//! after running destructors the way POSIX asks (up to `PTHREAD_DESTRUCTOR_ITERATIONS` rounds),
//! by a callback registered with `__cxa_thread_atexit_impl`: glibc calls it at a native thread's
//! exit, and the runtime at a green thread's end. The main thread's destructors do not run at
//! `exit` (as with glibc).

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_int, pthread_key_t};

/// PTHREAD_KEYS_MAX.
const KEYS: usize = 1024;
/// PTHREAD_DESTRUCTOR_ITERATIONS.
const ROUNDS: usize = 4;

type Destructor = unsafe extern "C" fn(*mut c_void);

/// One key: `seq` odd while it exists; its destructor (0: none).
struct Key {
    seq: AtomicUsize,
    dtor: AtomicUsize,
}

static TABLE: [Key; KEYS] = [const {
    Key {
        seq: AtomicUsize::new(0),
        dtor: AtomicUsize::new(0),
    }
}; KEYS];

/// A thread's values: (sequence number, value) per key.
type Values = Vec<(usize, *mut c_void)>;

thread_local! {
    /// The calling thread's values (null until its first `pthread_setspecific`).
    static VALUES: Cell<*mut Values> = const { Cell::new(std::ptr::null_mut()) };
}

unsafe extern "C" {
    fn __cxa_thread_atexit_impl(
        f: unsafe extern "C" fn(*mut c_void),
        obj: *mut c_void,
        dso: *mut c_void,
    ) -> c_int;
    static __dso_handle: u8;
}

/// `pthread_key_create`.
///
/// # Safety
/// As `pthread_key_create(3)`: `key` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_key_create(
    key: *mut pthread_key_t,
    dtor: Option<Destructor>,
) -> c_int {
    for (i, k) in TABLE.iter().enumerate() {
        let seq = k.seq.load(Ordering::Relaxed);
        if seq % 2 == 0
            && k.seq
                .compare_exchange(seq, seq + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            k.dtor
                .store(dtor.map_or(0, |f| f as usize), Ordering::Release);
            // SAFETY: the caller's contract.
            unsafe { *key = i as pthread_key_t };
            return 0;
        }
    }
    libc::EAGAIN
}

/// The key's current sequence number, if it exists.
fn live(key: pthread_key_t) -> Option<usize> {
    let seq = TABLE.get(key as usize)?.seq.load(Ordering::Acquire);
    (seq % 2 == 1).then_some(seq)
}

/// `pthread_key_delete`: the key's values become unreachable; no destructor runs (POSIX).
#[unsafe(no_mangle)]
pub extern "C" fn pthread_key_delete(key: pthread_key_t) -> c_int {
    match live(key) {
        Some(seq) => {
            let k = &TABLE[key as usize];
            k.dtor.store(0, Ordering::Relaxed);
            match k
                .seq
                .compare_exchange(seq, seq + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => 0,
                Err(_) => libc::EINVAL,
            }
        }
        None => libc::EINVAL,
    }
}

/// `pthread_getspecific`.
#[unsafe(no_mangle)]
pub extern "C" fn pthread_getspecific(key: pthread_key_t) -> *mut c_void {
    let (Some(seq), values) = (live(key), VALUES.with(Cell::get)) else {
        return std::ptr::null_mut();
    };
    if values.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: the calling thread's own array, alive until its exit callback frees it.
    match unsafe { (&(*values)).get(key as usize) } {
        Some(&(s, v)) if s == seq => v,
        _ => std::ptr::null_mut(),
    }
}

/// `pthread_setspecific`.
#[unsafe(no_mangle)]
pub extern "C" fn pthread_setspecific(key: pthread_key_t, value: *const c_void) -> c_int {
    let Some(seq) = live(key) else {
        return libc::EINVAL;
    };
    let values = match VALUES.with(Cell::get) {
        p if !p.is_null() => p,
        _ => {
            let p = Box::into_raw(Box::new(Values::new()));
            // SAFETY: registers `release` for this thread's exit with our own object; the DSO
            // handle keeps this library loaded until then.
            let r = unsafe {
                __cxa_thread_atexit_impl(
                    release,
                    p.cast(),
                    (&raw const __dso_handle).cast_mut().cast(),
                )
            };
            if r != 0 {
                // SAFETY: not registered: ours to free.
                drop(unsafe { Box::from_raw(p) });
                return libc::ENOMEM;
            }
            VALUES.with(|c| c.set(p));
            p
        }
    };
    // SAFETY: the calling thread's own array (no other thread touches it).
    let v = unsafe { &mut *values };
    if v.len() <= key as usize {
        v.resize(key as usize + 1, (0, std::ptr::null_mut()));
    }
    v[key as usize] = (seq, value.cast_mut());
    0
}

/// Runs the thread's destructors, then frees its array (the thread is ending).
unsafe extern "C" fn release(p: *mut c_void) {
    let values = p.cast::<Values>();
    if !crate::main_thread::skip_key_destructors() {
        for _ in 0..ROUNDS {
            let mut ran = false;
            for (key, k) in TABLE.iter().enumerate() {
                // SAFETY: our array; a destructor may set values again (handled next round), so
                // it is re-borrowed for each key.
                let Some(&(seq, value)) = (unsafe { (&(*values)).get(key) }) else {
                    break;
                };
                let dtor = k.dtor.load(Ordering::Acquire);
                if value.is_null() || dtor == 0 || live(key as pthread_key_t) != Some(seq) {
                    continue;
                }
                // SAFETY: as above.
                unsafe { (&mut (*values))[key].1 = std::ptr::null_mut() };
                // SAFETY: a destructor registered by pthread_key_create with this C signature.
                unsafe { std::mem::transmute::<usize, Destructor>(dtor)(value) };
                ran = true;
            }
            if !ran {
                break;
            }
        }
    }
    VALUES.with(|c| c.set(std::ptr::null_mut()));
    // SAFETY: made by Box::into_raw in pthread_setspecific and released once, here.
    drop(unsafe { Box::from_raw(values) });
}
