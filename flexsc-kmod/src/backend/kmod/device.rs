//! `/dev/flexsc`: one open file holds one registration; typed wrappers for its ioctls.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::abi::{self, RegisterArgs, SlotArgs, WaitArgs, WorkerArgs};
use crate::config::KMOD_DEVICE;
use crate::raw;

/// An open `/dev/flexsc` (closed on drop, which ends its registration in the kernel).
#[derive(Debug)]
pub(crate) struct Device {
    fd: OwnedFd,
}

impl Device {
    /// Opens the device (close-on-exec). No device node: `Unsupported`, saying what to do.
    pub(crate) fn open() -> io::Result<Self> {
        match std::fs::File::options()
            .read(true)
            .write(true)
            .open(KMOD_DEVICE)
        {
            Ok(f) => Ok(Self { fd: f.into() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the kmod backend needs {KMOD_DEVICE}: load the flexsc kernel module \
                     (docs/kernel-module.md) or choose FLEXSC_BACKEND=threads"
                ),
            )),
            Err(e) => Err(io::Error::new(e.kind(), format!("open {KMOD_DEVICE}: {e}"))),
        }
    }

    /// `ioctl(fd, cmd, arg)` with the raw instruction (libc's may be interposed by the preload).
    ///
    /// # Safety
    /// `arg` must be what `cmd` expects: a pointer to a live struct of the size encoded in `cmd`
    /// (read and, for `_IOWR`, written by the module), or a plain number.
    unsafe fn ioctl(&self, cmd: u64, arg: u64) -> io::Result<i64> {
        let fd = self.fd.as_raw_fd() as u64;
        // SAFETY: ioctl on our own descriptor; the caller vouches for `arg`.
        let r = unsafe { raw::syscall6(libc::SYS_ioctl as u64, &[fd, cmd, arg, 0, 0, 0]) };
        if r < 0 {
            Err(io::Error::from_raw_os_error(-r as i32))
        } else {
            Ok(r)
        }
    }

    /// flexsc_register: the module pins the pages and controls `args` names.
    ///
    /// # Safety
    /// The memory `args.pages` and `args.controls` name must stay allocated, and used only as
    /// syscall pages and page controls, until this device is closed: the module's syscall
    /// threads write results and completion counts into it until then.
    pub(crate) unsafe fn register(&self, args: &RegisterArgs) -> io::Result<()> {
        // SAFETY: a live RegisterArgs, which the module only reads (the memory it names is the
        // caller's promise).
        unsafe { self.ioctl(abi::IOC_REGISTER, args as *const RegisterArgs as u64) }.map(drop)
    }

    /// Becomes a syscall thread until the registration ends (`Ok`) or a signal needs this
    /// thread in user space (`Interrupted`: call again).
    pub(crate) fn worker(&self, syscall_core: u32) -> io::Result<()> {
        let args = WorkerArgs {
            syscall_core,
            flags: 0,
        };
        // SAFETY: a live WorkerArgs, only read.
        unsafe { self.ioctl(abi::IOC_WORKER, &args as *const WorkerArgs as u64) }.map(drop)
    }

    /// flexsc_wait (see `struct flexsc_wait_args`); `args.seq` is updated.
    pub(crate) fn wait(&self, args: &mut WaitArgs) -> io::Result<()> {
        // SAFETY: a live WaitArgs, read and written back by the module.
        unsafe { self.ioctl(abi::IOC_WAIT, args as *mut WaitArgs as u64) }.map(drop)
    }

    /// Ends the registration: the syscall threads leave, blocked calls are interrupted.
    pub(crate) fn unregister(&self) -> io::Result<()> {
        // SAFETY: no argument.
        unsafe { self.ioctl(abi::IOC_UNREGISTER, 0) }.map(drop)
    }

    /// Wakes a syscall thread if none is active.
    pub(crate) fn kick(&self) -> io::Result<()> {
        // SAFETY: no argument.
        unsafe { self.ioctl(abi::IOC_KICK, 0) }.map(drop)
    }

    /// Wakes the waiters of posting core `core`.
    pub(crate) fn wake(&self, core: usize) -> io::Result<()> {
        // SAFETY: the argument is a number.
        unsafe { self.ioctl(abi::IOC_WAKE, core as u64) }.map(drop)
    }

    /// Interrupts the call of `slot` of posting core `core`, if a syscall thread runs it.
    pub(crate) fn interrupt(&self, core: usize, slot: u32) -> io::Result<()> {
        let args = SlotArgs {
            core: core as u32,
            slot,
        };
        // SAFETY: a live SlotArgs, only read.
        unsafe { self.ioctl(abi::IOC_INTERRUPT, &args as *const SlotArgs as u64) }.map(drop)
    }
}
