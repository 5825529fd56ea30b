//! TCP sockets whose calls go through [`crate::syscall`].

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::ToSocketAddrs;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use super::{Fd, cvt, cvt_r};
use crate::syscall;

/// A socket address in the kernel's layout.
#[repr(C)]
union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl RawAddr {
    fn new(addr: &SocketAddr) -> (RawAddr, libc::socklen_t) {
        match addr {
            SocketAddr::V4(a) => (
                RawAddr {
                    v4: libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: a.port().to_be(),
                        sin_addr: libc::in_addr {
                            s_addr: u32::from_ne_bytes(a.ip().octets()),
                        },
                        sin_zero: [0; 8],
                    },
                },
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            SocketAddr::V6(a) => (
                RawAddr {
                    v6: libc::sockaddr_in6 {
                        sin6_family: libc::AF_INET6 as libc::sa_family_t,
                        sin6_port: a.port().to_be(),
                        sin6_flowinfo: a.flowinfo(),
                        sin6_addr: libc::in6_addr {
                            s6_addr: a.ip().octets(),
                        },
                        sin6_scope_id: a.scope_id(),
                    },
                },
                size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ),
        }
    }

    fn as_ptr(&self) -> u64 {
        self as *const RawAddr as u64
    }
}

/// Decodes the address the kernel wrote into `storage` (`len` bytes of it).
fn decode(
    storage: &MaybeUninit<libc::sockaddr_storage>,
    len: libc::socklen_t,
) -> io::Result<SocketAddr> {
    let len = len as usize;
    let p = storage.as_ptr();
    // SAFETY: the kernel wrote at least `ss_family` whenever it reported a length covering it;
    // every case below checks the length covers the structure it reads, and `sockaddr_storage`
    // is large and aligned enough for both.
    unsafe {
        if len < size_of::<libc::sa_family_t>() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid socket address",
            ));
        }
        match (*p).ss_family as libc::c_int {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                let a = &*(p as *const libc::sockaddr_in);
                Ok(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                let a = &*(p as *const libc::sockaddr_in6);
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid socket address",
            )),
        }
    }
}

/// Runs `f` (getsockname, getpeername, accept4: calls that write an address and its length) and
/// decodes the address.
fn with_addr(
    f: impl FnOnce(*mut libc::sockaddr_storage, *mut libc::socklen_t) -> io::Result<i64>,
) -> io::Result<(i64, SocketAddr)> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let r = f(storage.as_mut_ptr(), &mut len)?;
    Ok((r, decode(&storage, len)?))
}

/// Calls `f` with each address `addr` resolves to until one succeeds; the last error otherwise.
/// (Resolving a host name runs `getaddrinfo` on the calling thread, blocking its carrier.)
fn each_addr<T>(
    addr: impl ToSocketAddrs,
    mut f: impl FnMut(&SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match f(&a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

/// A new `SOCK_STREAM` socket for `addr`'s family.
fn stream_socket(addr: &SocketAddr) -> io::Result<Fd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let epoch = flexsc_kmod::fd_mode::epoch();
    // SAFETY: socket takes integers, no memory.
    let fd = cvt(unsafe {
        syscall(
            libc::SYS_socket,
            &[
                family as u64,
                (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as u64,
                0,
            ],
        )
    })?;
    // SAFETY: socket succeeded: the fd and its description are new and ours alone.
    Ok(unsafe { Fd::new_alone(fd as RawFd, epoch, false) })
}

fn setsockopt_int(
    fd: &Fd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `v`, a live local that outlives
    // the call (a green thread is parked inside `syscall` until it completes).
    cvt(unsafe {
        syscall(
            libc::SYS_setsockopt,
            &[
                fd.raw() as u64,
                level as u64,
                name as u64,
                &v as *const libc::c_int as u64,
                size_of::<libc::c_int>() as u64,
            ],
        )
    })?;
    Ok(())
}

fn getsockopt_int(fd: &Fd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v` and the length into `len`, live
    // locals that outlive the call (a green thread is parked inside `syscall` until it
    // completes).
    cvt(unsafe {
        syscall(
            libc::SYS_getsockopt,
            &[
                fd.raw() as u64,
                level as u64,
                name as u64,
                &mut v as *mut libc::c_int as u64,
                &mut len as *mut libc::socklen_t as u64,
            ],
        )
    })?;
    Ok(v)
}

/// The pending socket error (`SO_ERROR`), cleared by reading it.
fn take_error(fd: &Fd) -> io::Result<Option<io::Error>> {
    let e = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR)?;
    Ok((e != 0).then(|| io::Error::from_raw_os_error(e)))
}

/// getsockname (`peer == false`) or getpeername.
fn sock_addr(fd: &Fd, peer: bool) -> io::Result<SocketAddr> {
    let nr = if peer {
        libc::SYS_getpeername
    } else {
        libc::SYS_getsockname
    };
    with_addr(|storage, len| {
        // SAFETY: the call writes at most `*len` bytes into `storage` and the length into `len`,
        // both owned by `with_addr`, which outlives the call.
        cvt(unsafe { syscall(nr, &[fd.raw() as u64, storage as u64, len as u64]) })
    })
    .map(|(_, a)| a)
}

/// A TCP socket listening for connections, as [`std::net::TcpListener`]; `accept` parks the
/// calling green thread until a connection arrives.
#[derive(Debug)]
pub struct TcpListener {
    inner: Fd,
}

fd_newtype!(TcpListener);

impl TcpListener {
    /// Binds a listening socket to the first of `addr`'s addresses that works (port 0: the
    /// kernel picks one, see [`TcpListener::local_addr`]). Sets `SO_REUSEADDR`, as `std` does; the
    /// backlog is 1024.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        each_addr(addr, |a| {
            let fd = stream_socket(a)?;
            setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
            let (raw, len) = RawAddr::new(a);
            // SAFETY: bind reads `len` bytes of `raw`, a live local that outlives the call.
            cvt(unsafe { syscall(libc::SYS_bind, &[fd.raw() as u64, raw.as_ptr(), len as u64]) })?;
            // SAFETY: listen takes integers, no memory.
            cvt(unsafe { syscall(libc::SYS_listen, &[fd.raw() as u64, 1024]) })?;
            Ok(TcpListener { inner: fd })
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sock_addr(&self.inner, false)
    }

    /// Waits for a connection and returns its stream and the peer's address.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let epoch = flexsc_kmod::fd_mode::epoch();
        let (fd, peer) = with_addr(|storage, len| {
            cvt_r(|| {
                // SAFETY: accept4 writes at most `*len` bytes into `storage` and the length into
                // `len`, both owned by `with_addr`; the green thread is parked inside `syscall`
                // until the call completes, so they outlive it.
                unsafe {
                    syscall(
                        libc::SYS_accept4,
                        &[
                            self.inner.raw() as u64,
                            storage as u64,
                            len as u64,
                            libc::SOCK_CLOEXEC as u64,
                        ],
                    )
                }
            })
        })?;
        // SAFETY: accept4 succeeded: the fd and its description are new and ours alone.
        let inner = unsafe { Fd::new_alone(fd as RawFd, epoch, false) };
        Ok((TcpStream { inner }, peer))
    }

    /// An endless iterator of [`TcpListener::accept`]s (without the peer addresses).
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// A second handle on the same socket.
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener {
            inner: self.inner.try_clone()?,
        })
    }

    /// Sets or clears `O_NONBLOCK`: `accept` with no connection pending then fails with
    /// [`io::ErrorKind::WouldBlock`].
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.set_nonblocking(nonblocking)
    }

    /// The pending socket error (`SO_ERROR`), cleared by reading it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        take_error(&self.inner)
    }
}

/// The iterator of [`TcpListener::incoming`]: each item is an accepted stream or the error.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

/// A connected TCP socket, as [`std::net::TcpStream`]; reads and writes park the calling green
/// thread until they complete. Sends use `MSG_NOSIGNAL`: writing to a reset connection fails
/// with [`io::ErrorKind::BrokenPipe`] and raises no signal.
#[derive(Debug)]
pub struct TcpStream {
    inner: Fd,
}

fd_newtype!(TcpStream);

impl TcpStream {
    /// Specializes the connection ([`crate::specialize`]): its later calls skip what the
    /// backend can skip (with io_uring, the fd-table lookup on each send and receive) until the
    /// context is dropped or the stream closed. On a green thread only.
    pub fn specialize(
        &self,
        hints: flexsc_kmod::specialize::Hints,
    ) -> io::Result<flexsc_kmod::specialize::Context> {
        crate::specialize(self.inner.raw(), hints)
    }

    /// Connects to the first of `addr`'s addresses that accepts (a closed port:
    /// [`io::ErrorKind::ConnectionRefused`]).
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        each_addr(addr, |a| {
            let fd = stream_socket(a)?;
            let (raw, len) = RawAddr::new(a);
            loop {
                // SAFETY: connect reads `len` bytes of `raw`, a live local that outlives the call
                // (the green thread is parked inside `syscall` until it completes).
                let r = unsafe {
                    syscall(
                        libc::SYS_connect,
                        &[fd.raw() as u64, raw.as_ptr(), len as u64],
                    )
                };
                // As `std`: an interrupted connect goes on in the background; trying again
                // waits for it, and EISCONN means it finished.
                match r {
                    r if r == -(libc::EINTR as i64) => continue,
                    r if r == -(libc::EISCONN as i64) => break,
                    r => {
                        cvt(r)?;
                        break;
                    }
                }
            }
            Ok(TcpStream { inner: fd })
        })
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sock_addr(&self.inner, true)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sock_addr(&self.inner, false)
    }

    /// Shuts down the read side, the write side or both (`shutdown(2)`); the peer sees end of
    /// file once the write side is shut.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: shutdown takes integers, no memory.
        cvt(unsafe { syscall(libc::SYS_shutdown, &[self.inner.raw() as u64, how as u64]) })?;
        Ok(())
    }

    /// Sets or clears `TCP_NODELAY` (Nagle's algorithm off when set).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        setsockopt_int(
            &self.inner,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            nodelay.into(),
        )
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(getsockopt_int(&self.inner, libc::IPPROTO_TCP, libc::TCP_NODELAY)? != 0)
    }

    /// Reads without consuming (`MSG_PEEK`): the next read returns the same bytes.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf, libc::MSG_PEEK)
    }

    /// A second handle on the same connection (one green thread may read while another writes).
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream {
            inner: self.inner.try_clone()?,
        })
    }

    /// Sets or clears `O_NONBLOCK`: a read or write that would wait then fails with
    /// [`io::ErrorKind::WouldBlock`].
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.set_nonblocking(nonblocking)
    }

    /// The pending socket error (`SO_ERROR`), cleared by reading it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        take_error(&self.inner)
    }

    fn recv(&self, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
        let len = buf.len().min(MAX_RW);
        let r = cvt_r(|| {
            // SAFETY: `buf` is writable for `len` bytes and borrowed for the whole call: the
            // green thread stays parked inside `syscall` until the kernel is done with it.
            unsafe {
                syscall(
                    libc::SYS_recvfrom,
                    &[
                        self.inner.raw() as u64,
                        buf.as_mut_ptr() as u64,
                        len as u64,
                        flags as u64,
                        0,
                        0,
                    ],
                )
            }
        })?;
        Ok(r as usize)
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len().min(MAX_RW);
        let r = cvt_r(|| {
            // SAFETY: `buf` is readable for `len` bytes and borrowed for the whole call: the
            // green thread stays parked inside `syscall` until the kernel is done with it.
            unsafe {
                syscall(
                    libc::SYS_sendto,
                    &[
                        self.inner.raw() as u64,
                        buf.as_ptr() as u64,
                        len as u64,
                        libc::MSG_NOSIGNAL as u64,
                        0,
                        0,
                    ],
                )
            }
        })?;
        Ok(r as usize)
    }
}

/// As in `fd`: the most one call transfers (`MAX_RW_COUNT`).
const MAX_RW: usize = (i32::MAX as usize) & !4095;

impl io::Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf, 0)
    }
}

impl io::Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf, 0)
    }
}

impl io::Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl From<std::net::TcpStream> for TcpStream {
    fn from(s: std::net::TcpStream) -> Self {
        TcpStream {
            inner: std::os::fd::OwnedFd::from(s).into(),
        }
    }
}

impl From<std::net::TcpListener> for TcpListener {
    fn from(s: std::net::TcpListener) -> Self {
        TcpListener {
            inner: std::os::fd::OwnedFd::from(s).into(),
        }
    }
}
