//! The runtime under the preload: started by the first `pthread_create` (so daemons fork before
//! it exists), configured by the `FLEXSC_*` variables (`flexsc run` sets them), never stopped
//! (its statistics print at exit with `FLEXSC_STATS`).
//!
//! If it cannot start (an unknown glibc layout, no io_uring, a bad variable), the program keeps
//! running on glibc's own threads and one line says why: slower, never wrong.

use std::sync::OnceLock;

use flexsc_threads::Runtime;

/// `None`: the runtime could not start (reported once); the program runs natively.
static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();

/// The runtime, started on first use; `None` if it could not start.
pub(crate) fn get() -> Option<&'static Runtime> {
    RUNTIME
        .get_or_init(|| match build() {
            Ok(rt) => Some(rt),
            Err(e) => {
                let msg = format!("libflexsc: running on native threads: {e}\n");
                // SAFETY: writes our own buffer to stderr through glibc's write.
                unsafe { crate::real::write()(2, msg.as_ptr().cast(), msg.len()) };
                None
            }
        })
        .as_ref()
}

/// The runtime if it has started (and not otherwise).
pub(crate) fn started() -> Option<&'static Runtime> {
    RUNTIME.get().and_then(Option::as_ref)
}

fn build() -> std::io::Result<Runtime> {
    // A green thread's pthread_t is its own TCB: per-green-thread TLS is not optional here.
    if std::env::var_os("FLEXSC_TLS").is_some_and(|v| v == "0") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "FLEXSC_TLS=0 is not supported under the preload (pthread_self needs a TCB per thread)",
        ));
    }
    let mut b = Runtime::builder().tls(true);
    if std::env::var_os("FLEXSC_BACKEND").is_none() {
        // Servers block many calls at once: io_uring holds them without a thread each.
        b = b.backend(flexsc_threads::kmod::BackendKind::Uring);
    }
    b.build()
}

/// Whether the caller is one of the runtime's green threads.
pub(crate) fn on_green_thread() -> bool {
    started().is_some() && flexsc_threads::current_id().is_some()
}
