//! OS threads for the library's own work (syscall threads here, carriers in flexsc-threads),
//! created with glibc's own `pthread_create` and joined with its own `pthread_join`.
//!
//! Why not `std::thread`: std calls whatever `pthread_create` the dynamic linker binds, and under
//! the preload that is libflexsc.so's export, which makes green threads; the runtime's carriers
//! and syscall threads must be real kernel threads with glibc TCBs. So the functions are looked
//! up in libc itself (`dlopen("libc.so.6", RTLD_NOLOAD)` then `dlvsym` at the version glibc 2.34
//! gave them), never through the global symbol scope.
//!
//! A thread made here knows it ([`is_internal`]), so interposed functions can tell the library's
//! own threads from the application's. Panics in the thread's function are caught and handed to
//! [`OsThread::join`], as `std::thread` does.
//!
//! One of the crate's `unsafe` modules: raw pthread calls through looked-up function pointers.

use std::any::Any;
use std::cell::Cell;
use std::ffi::{CStr, CString, c_int, c_void};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock};

type Create = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    extern "C" fn(*mut c_void) -> *mut c_void,
    *mut c_void,
) -> c_int;
type Join = unsafe extern "C" fn(libc::pthread_t, *mut *mut c_void) -> c_int;
type Detach = unsafe extern "C" fn(libc::pthread_t) -> c_int;

/// glibc's thread functions.
struct Real {
    create: Create,
    join: Join,
    detach: Detach,
}

fn real() -> &'static Real {
    static REAL: OnceLock<Real> = OnceLock::new();
    REAL.get_or_init(|| {
        // SAFETY: dlopen with RTLD_NOLOAD only returns a handle to libc.so.6 if it is already
        // loaded (it is: we link it); no constructor runs.
        let libc_handle =
            unsafe { libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY) };
        let find = |name: &CStr| -> *mut c_void {
            if libc_handle.is_null() {
                return std::ptr::null_mut();
            }
            // SAFETY: a lookup in libc's handle; the names are NUL-terminated literals.
            let p = unsafe { libc::dlvsym(libc_handle, name.as_ptr(), c"GLIBC_2.34".as_ptr()) };
            if p.is_null() {
                // An older glibc: its only version of the symbol.
                // SAFETY: as above.
                unsafe { libc::dlsym(libc_handle, name.as_ptr()) }
            } else {
                p
            }
        };
        let (c, j, d) = (
            find(c"pthread_create"),
            find(c"pthread_join"),
            find(c"pthread_detach"),
        );
        if c.is_null() || j.is_null() || d.is_null() {
            // No libc handle (a static binary): the linked functions are glibc's.
            return Real {
                create: libc::pthread_create,
                join: libc::pthread_join,
                detach: libc::pthread_detach,
            };
        }
        // SAFETY: the three symbols are glibc's pthread_create, pthread_join and pthread_detach,
        // whose C signatures are the function pointer types we give them.
        unsafe {
            Real {
                create: std::mem::transmute::<*mut c_void, Create>(c),
                join: std::mem::transmute::<*mut c_void, Join>(j),
                detach: std::mem::transmute::<*mut c_void, Detach>(d),
            }
        }
    })
}

thread_local! {
    static INTERNAL: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread was made by [`spawn`] (a carrier or a syscall thread).
pub fn is_internal() -> bool {
    INTERNAL.with(Cell::get)
}

/// Where a thread's panic is left for its joiner.
type PanicSlot = Arc<Mutex<Option<Box<dyn Any + Send>>>>;

/// What the new thread receives.
struct Start {
    name: CString,
    f: Box<dyn FnOnce() + Send>,
    panic: PanicSlot,
}

extern "C" fn start(arg: *mut c_void) -> *mut c_void {
    // SAFETY: `spawn` passed a leaked Box<Start> and nobody else uses it.
    let start = unsafe { Box::from_raw(arg.cast::<Start>()) };
    INTERNAL.with(|c| c.set(true));
    // The kernel's thread name (15 bytes), as std would set it. Best effort.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string, which a CString is.
    unsafe { libc::prctl(libc::PR_SET_NAME, start.name.as_ptr()) };
    let Start { f, panic, .. } = *start;
    if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
        *panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
    }
    std::ptr::null_mut()
}

/// A thread made by [`spawn`]; join it, or dropping it detaches it.
#[derive(Debug)]
pub struct OsThread {
    id: libc::pthread_t,
    panic: PanicSlot,
    joined: bool,
}

/// Starts `f` on a new kernel thread named `name` (the first 15 bytes show in `/proc`), with a
/// stack of `stack_size` bytes (0: glibc's default, RLIMIT_STACK).
pub fn spawn(
    name: &str,
    stack_size: usize,
    f: impl FnOnce() + Send + 'static,
) -> io::Result<OsThread> {
    let name: String = name.chars().filter(|&c| c != '\0').take(15).collect();
    let panic: PanicSlot = Arc::new(Mutex::new(None));
    let arg = Box::into_raw(Box::new(Start {
        name: CString::new(name).expect("NULs filtered out"),
        f: Box::new(f),
        panic: panic.clone(),
    }));
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: initialises the attribute object we own, then sets its stack size; destroyed
    // below on every path.
    let attr_ok = unsafe { libc::pthread_attr_init(attr.as_mut_ptr()) } == 0;
    if attr_ok && stack_size > 0 {
        // SAFETY: `attr` was initialised above.
        let r = unsafe { libc::pthread_attr_setstacksize(attr.as_mut_ptr(), stack_size) };
        if r != 0 {
            // SAFETY: as above.
            unsafe { libc::pthread_attr_destroy(attr.as_mut_ptr()) };
            // SAFETY: the Box was not handed to any thread.
            drop(unsafe { Box::from_raw(arg) });
            return Err(io::Error::from_raw_os_error(r));
        }
    }
    let mut id: libc::pthread_t = 0;
    let attr_ptr = if attr_ok {
        attr.as_ptr()
    } else {
        std::ptr::null()
    };
    // SAFETY: glibc's pthread_create with an initialised (or null) attribute; `start` takes
    // ownership of `arg` on success.
    let r = unsafe { (real().create)(&mut id, attr_ptr, start, arg.cast()) };
    if attr_ok {
        // SAFETY: initialised above and no longer needed once the thread exists.
        unsafe { libc::pthread_attr_destroy(attr.as_mut_ptr()) };
    }
    if r != 0 {
        // SAFETY: pthread_create failed, so no thread took `arg`.
        drop(unsafe { Box::from_raw(arg) });
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(OsThread {
        id,
        panic,
        joined: false,
    })
}

impl OsThread {
    /// Waits for the thread to end; its panic, if it panicked.
    pub fn join(mut self) -> Result<(), Box<dyn Any + Send>> {
        self.joined = true;
        // SAFETY: a thread we created, joined once (`joined` guards Drop's detach).
        let r = unsafe { (real().join)(self.id, std::ptr::null_mut()) };
        assert_eq!(r, 0, "pthread_join of our own thread failed");
        match self.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(p) => Err(p),
            None => Ok(()),
        }
    }

    /// Whether the thread has finished (its function returned or panicked).
    pub fn is_finished(&self) -> bool {
        // The panic slot's Arc is shared with the thread until its Start is dropped, which is
        // the last thing it does.
        Arc::strong_count(&self.panic) == 1
    }
}

impl Drop for OsThread {
    fn drop(&mut self) {
        if !self.joined {
            // SAFETY: a thread we created and never joined: detach it so its resources go when
            // it ends.
            unsafe { (real().detach)(self.id) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn runs_joins_names_and_marks_its_threads() {
        assert!(!is_internal());
        let ran = Arc::new(AtomicBool::new(false));
        let r2 = ran.clone();
        let t = spawn("flexsc-test-thread-long-name", 64 * 1024, move || {
            assert!(is_internal());
            let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
            assert_eq!(comm.trim(), "flexsc-test-thr");
            r2.store(true, Ordering::SeqCst);
        })
        .unwrap();
        t.join().unwrap();
        assert!(ran.load(Ordering::SeqCst));
    }

    #[test]
    fn a_panic_reaches_the_joiner() {
        let t = spawn("panicker", 0, || panic!("boom")).unwrap();
        let p = t.join().unwrap_err();
        assert_eq!(p.downcast_ref::<&str>(), Some(&"boom"));
    }

    #[test]
    fn finished_threads_say_so() {
        let t = spawn("quick", 0, || ()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !t.is_finished() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::yield_now();
        }
        t.join().unwrap();
    }
}
