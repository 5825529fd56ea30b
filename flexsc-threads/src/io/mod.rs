//! Blocking-style I/O on green threads: files, pipes and TCP sockets whose every call goes
//! through [`crate::syscall`].
//!
//! The descriptors stay in blocking mode. On a green thread each call is posted exception-less to
//! the carrier's syscall pages and the green thread parks until it completes: a syscall thread (or
//! io_uring) does the waiting, and the carrier runs other green threads meanwhile. On an OS thread
//! the same types work too, trapping as usual.
//!
//! The types mirror their `std` counterparts ([`std::fs::File`], [`std::net::TcpStream`], ...),
//! with the same error behaviour: errors are [`std::io::Error`]s made from the raw errno (so
//! `EAGAIN` on a descriptor made non-blocking is [`std::io::ErrorKind::WouldBlock`], a refused
//! connection is [`std::io::ErrorKind::ConnectionRefused`]), and the default methods of
//! [`std::io::Read`] and [`std::io::Write`] (`read_exact`, `write_all`, ...) apply unchanged.
//!
//! Every descriptor is closed on drop, through [`crate::syscall`] as well.

/// Implements the descriptor traits for a newtype over [`Fd`] (its field `inner`): `AsRawFd`,
/// `IntoRawFd`, `FromRawFd`, `AsFd`, and the conversions to and from `OwnedFd`.
macro_rules! fd_newtype {
    ($t:ty) => {
        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.inner.as_raw_fd()
            }
        }

        impl std::os::fd::IntoRawFd for $t {
            fn into_raw_fd(self) -> std::os::fd::RawFd {
                self.inner.into_raw_fd()
            }
        }

        impl std::os::fd::FromRawFd for $t {
            unsafe fn from_raw_fd(fd: std::os::fd::RawFd) -> Self {
                Self {
                    // SAFETY: forwarded to our caller, who hands us an open fd to own.
                    inner: unsafe { $crate::io::Fd::from_raw_fd(fd) },
                }
            }
        }

        impl std::os::fd::AsFd for $t {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.inner.as_fd()
            }
        }

        impl From<$t> for std::os::fd::OwnedFd {
            fn from(v: $t) -> Self {
                v.inner.into()
            }
        }

        impl From<std::os::fd::OwnedFd> for $t {
            fn from(fd: std::os::fd::OwnedFd) -> Self {
                Self { inner: fd.into() }
            }
        }
    };
}

mod fd;
mod fs;
mod net;
mod pipe;

pub use fd::Fd;
pub use fs::{File, OpenOptions};
pub use net::{Incoming, TcpListener, TcpStream};
pub use pipe::{PipeReader, PipeWriter, pipe};

use std::io;

/// Turns a raw syscall result into a `Result`: a negative value is `-errno`.
fn cvt(r: i64) -> io::Result<i64> {
    if r < 0 {
        Err(io::Error::from_raw_os_error((-r) as i32))
    } else {
        Ok(r)
    }
}

/// Runs `f` until it gives something other than `-EINTR`, then as [`cvt`].
fn cvt_r(mut f: impl FnMut() -> i64) -> io::Result<i64> {
    loop {
        match f() {
            r if r == -(libc::EINTR as i64) => continue,
            r => return cvt(r),
        }
    }
}
