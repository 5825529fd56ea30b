//! (a) The echo server on flexsc-threads: a green thread per connection, blocking-style code on
//! `flexsc_threads::io::{TcpListener, TcpStream}`, whose calls are exception-less.

use std::io;
use std::net::SocketAddr;

use flexsc_threads::io::{TcpListener, TcpStream};
use flexsc_threads::kmod::BackendKind;
use flexsc_threads::{Order, Runtime};

/// Serves on 127.0.0.1 (port chosen by the kernel) until the process exits; `ready` gets the
/// address once it listens. `syscall_cores` applies to the `threads` backend only. `pages`
/// (64 entries each, per carrier) must cover every connection: a green thread blocked in
/// `read` holds its entry, and connection threads all start on the acceptor's carrier.
pub fn serve(
    backend: BackendKind,
    order: Order,
    carriers: usize,
    syscall_cores: Vec<usize>,
    pages: usize,
    stack: usize,
    ready: impl FnOnce(SocketAddr) + Send + 'static,
) -> io::Result<()> {
    let mut b = Runtime::builder()
        .backend(backend)
        .cores(carriers)
        .order(order)
        .pages(pages)
        .stack_size(stack);
    if backend == BackendKind::Threads {
        b = b.syscall_cores(syscall_cores);
    }
    let rt = b.build()?;
    rt.block_on(move || {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        ready(listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept()?;
            flexsc_threads::spawn(move || echo(stream));
        }
    })
}

fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    crate::echo_until_closed(&mut s);
}
