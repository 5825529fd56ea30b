//! Anonymous pipes whose reads and writes go through [`crate::syscall`].

use std::io;
use std::os::fd::RawFd;

use super::{Fd, cvt};
use crate::syscall;

/// Makes a pipe (`pipe2` with `O_CLOEXEC`): bytes written to the [`PipeWriter`] are read from the
/// [`PipeReader`]. Both ends are blocking; a green thread waiting on one parks, and its carrier
/// runs others.
///
/// Writing when every reader is gone fails with [`io::ErrorKind::BrokenPipe`] (Rust programs
/// ignore `SIGPIPE`; one that restores it is killed, as with `std`).
pub fn pipe() -> io::Result<(PipeReader, PipeWriter)> {
    let mut fds: [libc::c_int; 2] = [-1; 2];
    let epoch = flexsc_kmod::fd_mode::epoch();
    // SAFETY: pipe2 writes two ints into `fds`, a live local that outlives the call (the green
    // thread is parked inside `syscall` until it completes).
    cvt(unsafe {
        syscall(
            libc::SYS_pipe2,
            &[fds.as_mut_ptr() as u64, libc::O_CLOEXEC as u64],
        )
    })?;
    // SAFETY: pipe2 succeeded: both fds and their descriptions are new and ours alone.
    let (r, w) = unsafe {
        (
            Fd::new_alone(fds[0] as RawFd, epoch, false),
            Fd::new_alone(fds[1] as RawFd, epoch, false),
        )
    };
    Ok((PipeReader { inner: r }, PipeWriter { inner: w }))
}

/// The read end of a [`pipe`].
#[derive(Debug)]
pub struct PipeReader {
    inner: Fd,
}

/// The write end of a [`pipe`].
#[derive(Debug)]
pub struct PipeWriter {
    inner: Fd,
}

fd_newtype!(PipeReader);
fd_newtype!(PipeWriter);

impl PipeReader {
    /// A second handle on the same read end.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            inner: self.inner.try_clone()?,
        })
    }

    /// Sets or clears `O_NONBLOCK`: a read finding the pipe empty then fails with
    /// [`io::ErrorKind::WouldBlock`].
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.set_nonblocking(nonblocking)
    }
}

impl PipeWriter {
    /// A second handle on the same write end (the reader sees end of file once all are gone).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            inner: self.inner.try_clone()?,
        })
    }

    /// Sets or clears `O_NONBLOCK`: a write finding the pipe full then fails with
    /// [`io::ErrorKind::WouldBlock`].
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.set_nonblocking(nonblocking)
    }
}

impl io::Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl io::Read for &PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl io::Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Write for &PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
