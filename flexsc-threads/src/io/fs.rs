//! Files whose calls go through [`crate::syscall`].

use std::ffi::CString;
use std::io::{self, SeekFrom};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{Fd, cvt, cvt_r};
use crate::syscall;

/// An open file, as [`std::fs::File`], whose every call (open, read, write, seek, sync, close)
/// goes through [`crate::syscall`]: on a green thread it parks while the call runs.
#[derive(Debug)]
pub struct File {
    inner: Fd,
}

fd_newtype!(File);

impl File {
    /// Opens `path` for reading.
    pub fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path)
    }

    /// Opens `path` for writing, creating it if missing and truncating it otherwise.
    pub fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    /// Creates `path` for reading and writing; fails with
    /// [`io::ErrorKind::AlreadyExists`] if it exists.
    pub fn create_new(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
    }

    /// An empty set of options (see [`OpenOptions`]).
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Reads into `buf` at `offset` (`pread64`) without moving the file position; returns the
    /// bytes read (0: `offset` is at or past the end).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    /// Writes `buf` at `offset` (`pwrite64`) without moving the file position; returns the bytes
    /// written. (With `O_APPEND`, Linux appends regardless of `offset`.)
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.inner.write_at(buf, offset)
    }

    /// Flushes data and metadata to the device (`fsync`).
    pub fn sync_all(&self) -> io::Result<()> {
        // SAFETY: fsync takes an fd and no memory.
        cvt_r(|| unsafe { syscall(libc::SYS_fsync, &[self.inner.raw() as u64]) })?;
        Ok(())
    }

    /// Flushes data, and only the metadata needed to read it back (`fdatasync`).
    pub fn sync_data(&self) -> io::Result<()> {
        // SAFETY: fdatasync takes an fd and no memory.
        cvt_r(|| unsafe { syscall(libc::SYS_fdatasync, &[self.inner.raw() as u64]) })?;
        Ok(())
    }

    /// Truncates or extends the file to `size` bytes (`ftruncate`).
    pub fn set_len(&self, size: u64) -> io::Result<()> {
        let size = i64::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file size is too large"))?;
        // SAFETY: ftruncate takes an fd and a length, no memory.
        cvt_r(|| unsafe { syscall(libc::SYS_ftruncate, &[self.inner.raw() as u64, size as u64]) })?;
        Ok(())
    }

    /// A second handle on the same open file (sharing its position).
    pub fn try_clone(&self) -> io::Result<File> {
        Ok(File {
            inner: self.inner.try_clone()?,
        })
    }

    fn seek_raw(&self, pos: SeekFrom) -> io::Result<u64> {
        let (off, whence) = match pos {
            // As `std`: an offset above i64::MAX wraps and is refused by the kernel.
            SeekFrom::Start(n) => (n as i64, libc::SEEK_SET),
            SeekFrom::End(n) => (n, libc::SEEK_END),
            SeekFrom::Current(n) => (n, libc::SEEK_CUR),
        };
        // SAFETY: lseek takes an fd, an offset and a whence, no memory.
        let r = cvt(unsafe {
            syscall(
                libc::SYS_lseek,
                &[self.inner.raw() as u64, off as u64, whence as u64],
            )
        })?;
        Ok(r as u64)
    }
}

impl io::Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl io::Read for &File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl io::Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Write for &File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Seek for File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.seek_raw(pos)
    }
}

impl io::Seek for &File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.seek_raw(pos)
    }
}

impl std::os::unix::fs::FileExt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.inner.write_at(buf, offset)
    }
}

impl From<std::fs::File> for File {
    fn from(f: std::fs::File) -> Self {
        File {
            inner: std::os::fd::OwnedFd::from(f).into(),
        }
    }
}

impl From<File> for std::fs::File {
    fn from(f: File) -> Self {
        std::os::fd::OwnedFd::from(f).into()
    }
}

/// How to open a [`File`], as [`std::fs::OpenOptions`] (with the same rules: e.g. `create`
/// without `write` or `append` is [`io::ErrorKind::InvalidInput`]).
#[derive(Clone, Debug)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
    custom_flags: i32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// Everything off; mode 0o666 (before the umask).
    pub fn new() -> Self {
        Self {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o666,
            custom_flags: 0,
        }
    }

    /// Open for reading.
    pub fn read(&mut self, on: bool) -> &mut Self {
        self.read = on;
        self
    }

    /// Open for writing.
    pub fn write(&mut self, on: bool) -> &mut Self {
        self.write = on;
        self
    }

    /// Open for appending (implies writing): every write goes to the end.
    pub fn append(&mut self, on: bool) -> &mut Self {
        self.append = on;
        self
    }

    /// Truncate an existing file to 0 bytes (needs `write`).
    pub fn truncate(&mut self, on: bool) -> &mut Self {
        self.truncate = on;
        self
    }

    /// Create the file if missing (needs `write` or `append`).
    pub fn create(&mut self, on: bool) -> &mut Self {
        self.create = on;
        self
    }

    /// Create the file, failing if it exists (needs `write` or `append`; overrides `create` and
    /// `truncate`).
    pub fn create_new(&mut self, on: bool) -> &mut Self {
        self.create_new = on;
        self
    }

    /// The permission bits a created file gets (before the umask).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Extra `open(2)` flags (the access mode bits are ignored; `O_CLOEXEC` is always set).
    pub fn custom_flags(&mut self, flags: i32) -> &mut Self {
        self.custom_flags = flags;
        self
    }

    /// Opens `path` with these options (`openat` relative to the working directory).
    pub fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let path = CString::new(path.as_ref().as_os_str().as_bytes()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "file name contained an unexpected NUL byte",
            )
        })?;
        let epoch = flexsc_kmod::fd_mode::epoch();
        let flags = libc::O_CLOEXEC
            | self.access_mode()?
            | self.creation_mode()?
            | (self.custom_flags & !libc::O_ACCMODE);
        let fd = cvt_r(|| {
            // SAFETY: `path` is a NUL-terminated string that outlives the call: the green thread
            // stays parked inside `syscall` until the open has completed.
            unsafe {
                syscall(
                    libc::SYS_openat,
                    &[
                        libc::AT_FDCWD as u64,
                        path.as_ptr() as u64,
                        flags as u64,
                        self.mode as u64,
                    ],
                )
            }
        })?;
        // SAFETY: openat succeeded: the fd and its description are new and ours alone.
        let inner = unsafe { Fd::new_alone(fd as RawFd, epoch, flags & libc::O_NONBLOCK != 0) };
        Ok(File { inner })
    }

    fn access_mode(&self) -> io::Result<libc::c_int> {
        match (self.read, self.write, self.append) {
            (true, false, false) => Ok(libc::O_RDONLY),
            (false, true, false) => Ok(libc::O_WRONLY),
            (true, true, false) => Ok(libc::O_RDWR),
            (false, _, true) => Ok(libc::O_WRONLY | libc::O_APPEND),
            (true, _, true) => Ok(libc::O_RDWR | libc::O_APPEND),
            (false, false, false) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "must specify at least one of read, write, or append access",
            )),
        }
    }

    fn creation_mode(&self) -> io::Result<libc::c_int> {
        match (self.write, self.append) {
            (true, false) => {}
            (false, false) => {
                if self.truncate || self.create || self.create_new {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "creating or truncating a file requires write or append access",
                    ));
                }
            }
            (_, true) => {
                if self.truncate && !self.create_new {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "creating or truncating a file requires write or append access",
                    ));
                }
            }
        }
        Ok(match (self.create, self.truncate, self.create_new) {
            (false, false, false) => 0,
            (true, false, false) => libc::O_CREAT,
            (false, true, false) => libc::O_TRUNC,
            (true, true, false) => libc::O_CREAT | libc::O_TRUNC,
            (_, _, true) => libc::O_CREAT | libc::O_EXCL,
        })
    }
}
