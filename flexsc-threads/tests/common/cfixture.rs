//! A C shared object compiled at test time and dlopened, shared by the TLS block unit tests
//! (`src/tls.rs`) and the runtime's TLS tests (`tests/tls.rs`).
// Each test binary uses its own subset of the fixture.
#![allow(dead_code)]

use std::ffi::{CString, c_int, c_void};
use std::sync::OnceLock;

/// A C shared object compiled at test time and dlopened: code that uses TLS the way
/// applications do (errno, `__thread` arrays, an initialised `static __thread`, an
/// initial-exec variable in the static TLS surplus, glibc's identity and locale).
pub const FIXTURE_C: &str = r#"
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fenv.h>
#include <pthread.h>
#include <resolv.h>
#include <stdint.h>
#include <stdlib.h>

__thread int arr[16];
static __thread int init_val = 42;
static __thread int ie_val __attribute__((tls_model("initial-exec"))) = 7;

void fx_set_errno(int v) { errno = v; }
int fx_get_errno(void) { return errno; }
uintptr_t fx_errno_addr(void) { return (uintptr_t)&errno; }
void fx_fill(int base) { for (int i = 0; i < 16; i++) arr[i] = base + i; }
int fx_sum(void) { int s = 0; for (int i = 0; i < 16; i++) s += arr[i]; return s; }
uintptr_t fx_arr_addr(void) { return (uintptr_t)arr; }
int fx_get_init(void) { return init_val; }
void fx_set_init(int v) { init_val = v; }
int fx_get_ie(void) { return ie_val; }
void fx_set_ie(int v) { ie_val = v; }
uintptr_t fx_self(void) { return (uintptr_t)pthread_self(); }
int fx_isalpha(int c) { return isalpha(c) != 0; }
uintptr_t fx_res_state(void) { return (uintptr_t)__res_state(); }
int fx_stack(uintptr_t *addr, size_t *size) {
pthread_attr_t a;
void *sa;
if (pthread_getattr_np(pthread_self(), &a) != 0) return -1;
pthread_attr_getstack(&a, &sa, size);
pthread_attr_destroy(&a);
*addr = (uintptr_t)sa;
return 0;
}
uintptr_t fx_malloc_free(void) { void *p = malloc(100); free(p); return (uintptr_t)p; }
int fx_setround(int mode) { return fesetround(mode); }
int fx_getround(void) { return fegetround(); }
double fx_div(double a, double b) { return a / b; }

extern int __cxa_thread_atexit_impl(void (*)(void *), void *, void *);
extern void *__dso_handle;
static int dtor_sum;
static void dtor(void *p) { __atomic_fetch_add(&dtor_sum, (int)(intptr_t)p, __ATOMIC_SEQ_CST); }
int fx_register_dtor(int v) { return __cxa_thread_atexit_impl(dtor, (void *)(intptr_t)v, &__dso_handle); }
int fx_dtor_sum(void) { return __atomic_load_n(&dtor_sum, __ATOMIC_SEQ_CST); }
"#;

/// The fixture's functions: plain C function pointers, opaque to the Rust compiler.
pub struct Fx {
    pub set_errno: extern "C" fn(c_int),
    pub get_errno: extern "C" fn() -> c_int,
    pub errno_addr: extern "C" fn() -> usize,
    pub fill: extern "C" fn(c_int),
    pub sum: extern "C" fn() -> c_int,
    pub arr_addr: extern "C" fn() -> usize,
    pub get_init: extern "C" fn() -> c_int,
    pub set_init: extern "C" fn(c_int),
    pub get_ie: extern "C" fn() -> c_int,
    pub set_ie: extern "C" fn(c_int),
    pub self_: extern "C" fn() -> usize,
    pub isalpha: extern "C" fn(c_int) -> c_int,
    pub res_state: extern "C" fn() -> usize,
    pub stack: extern "C" fn(*mut usize, *mut usize) -> c_int,
    pub malloc_free: extern "C" fn() -> usize,
    pub setround: extern "C" fn(c_int) -> c_int,
    pub getround: extern "C" fn() -> c_int,
    pub div: extern "C" fn(f64, f64) -> f64,
    pub register_dtor: extern "C" fn(c_int) -> c_int,
    pub dtor_sum: extern "C" fn() -> c_int,
}

pub const FE_TONEAREST: c_int = 0;
pub const FE_UPWARD: c_int = 0x800;

/// Compiles (once per test binary, into a fresh temporary directory) and dlopens the fixture.
pub fn fx() -> &'static Fx {
    static FX: OnceLock<Fx> = OnceLock::new();
    FX.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("flexsc-tls-fixture-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let (src, so) = (dir.join("fixture.c"), dir.join("libfixture.so"));
        std::fs::write(&src, FIXTURE_C).unwrap();
        let out = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-frounding-math", "-o"])
            .arg(&so)
            .arg(&src)
            .arg("-lm")
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "cc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = CString::new(so.to_str().unwrap()).unwrap();
        // SAFETY: dlopen of the object just built; its constructors are the C runtime's own.
        let h = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!h.is_null(), "dlopen of the fixture failed");
        std::fs::remove_dir_all(&dir).unwrap(); // mapped: the files are no longer needed
        let sym = |name: &str| {
            let c = CString::new(name).unwrap();
            // SAFETY: a lookup in the handle just opened (kept open for the whole run).
            let p = unsafe { libc::dlsym(h, c.as_ptr()) };
            assert!(!p.is_null(), "{name} missing");
            p
        };
        macro_rules! f {
            ($name:literal) => {
                // SAFETY: the fixture defines the symbol with the C signature of the field
                // it is stored in (see FIXTURE_C).
                unsafe { std::mem::transmute_copy::<*mut c_void, _>(&sym($name)) }
            };
        }
        Fx {
            set_errno: f!("fx_set_errno"),
            get_errno: f!("fx_get_errno"),
            errno_addr: f!("fx_errno_addr"),
            fill: f!("fx_fill"),
            sum: f!("fx_sum"),
            arr_addr: f!("fx_arr_addr"),
            get_init: f!("fx_get_init"),
            set_init: f!("fx_set_init"),
            get_ie: f!("fx_get_ie"),
            set_ie: f!("fx_set_ie"),
            self_: f!("fx_self"),
            isalpha: f!("fx_isalpha"),
            res_state: f!("fx_res_state"),
            stack: f!("fx_stack"),
            malloc_free: f!("fx_malloc_free"),
            setround: f!("fx_setround"),
            getround: f!("fx_getround"),
            div: f!("fx_div"),
            register_dtor: f!("fx_register_dtor"),
            dtor_sum: f!("fx_dtor_sum"),
        }
    })
}
