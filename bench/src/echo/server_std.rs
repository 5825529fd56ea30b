//! (b) The echo server on `std`: an OS thread per connection, `std::net`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Serves on 127.0.0.1 (port chosen by the kernel) until the process exits.
pub fn serve(stack: usize, ready: impl FnOnce(SocketAddr)) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    ready(listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept()?;
        // A connection whose thread cannot start is dropped: the client counts it as failed.
        if let Err(e) = std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || echo(stream))
        {
            eprintln!("echo server (std): spawn: {e}");
        }
    }
}

fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    crate::echo_until_closed(&mut s);
}
