//! The module's ioctl interface, as `include/flexsc_ioctl.h` declares it (`tests/abi_ioctl.rs`
//! checks every size, offset and number against the header).

/// `struct flexsc_register_args`: flexsc_register.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegisterArgs {
    /// Must equal the module's entry size (64).
    pub entry_size: u32,
    /// Must equal the module's page size (4096).
    pub page_size: u32,
    /// Must equal the module's entries per page (64).
    pub entries_per_page: u32,
    /// Must equal the size of the module's page control (64).
    pub control_size: u32,
    /// Address of the first of `cores * pages_per_core` contiguous syscall pages.
    pub pages: u64,
    /// Address of the first of as many page controls.
    pub controls: u64,
    /// Address of `nr_syscall_cpus` `u32` CPU numbers (the static syscall-core list), or 0.
    pub syscall_cpus: u64,
    /// Posting cores.
    pub cores: u32,
    /// Syscall pages per posting core.
    pub pages_per_core: u32,
    /// Length of the syscall-core list (0: one unpinned syscall core).
    pub nr_syscall_cpus: u32,
    /// Zero.
    pub flags: u32,
}

/// `struct flexsc_worker_args`: which syscall core the calling thread serves.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerArgs {
    /// Index into the syscall-core list.
    pub syscall_core: u32,
    /// Zero.
    pub flags: u32,
}

/// `struct flexsc_wait_args`: flexsc_wait.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitArgs {
    /// The posting core.
    pub core: u32,
    /// In: the completion count last seen; out: the count now.
    pub seq: u32,
    /// Longest sleep in nanoseconds (negative: no limit).
    pub timeout_ns: i64,
}

/// `struct flexsc_slot_args`: one entry of one posting core.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotArgs {
    /// The posting core.
    pub core: u32,
    /// The entry's slot (page * 64 + index).
    pub slot: u32,
}

/// `FLEXSC_MAX_PAGES`: most syscall pages one registration may pin.
pub const MAX_PAGES: usize = 4096;
/// `FLEXSC_MAX_SYSCALL_CPUS`: longest syscall-core list.
pub const MAX_SYSCALL_CPUS: usize = 256;

const IOC_MAGIC: u64 = 0xF5;

/// Linux's `_IOC(dir, type, nr, size)` on x86_64.
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (IOC_MAGIC << 8) | nr
}
const NONE: u64 = 0;
const WRITE: u64 = 1;
const READ: u64 = 2;

/// `FLEXSC_IOC_REGISTER`.
pub const IOC_REGISTER: u64 = ioc(WRITE, 1, size_of::<RegisterArgs>());
/// `FLEXSC_IOC_WORKER`.
pub const IOC_WORKER: u64 = ioc(WRITE, 2, size_of::<WorkerArgs>());
/// `FLEXSC_IOC_WAIT`.
pub const IOC_WAIT: u64 = ioc(READ | WRITE, 3, size_of::<WaitArgs>());
/// `FLEXSC_IOC_UNREGISTER`.
pub const IOC_UNREGISTER: u64 = ioc(NONE, 4, 0);
/// `FLEXSC_IOC_KICK`.
pub const IOC_KICK: u64 = ioc(NONE, 5, 0);
/// `FLEXSC_IOC_WAKE` (the argument is the posting core).
pub const IOC_WAKE: u64 = ioc(NONE, 6, 0);
/// `FLEXSC_IOC_INTERRUPT`.
pub const IOC_INTERRUPT: u64 = ioc(WRITE, 7, size_of::<SlotArgs>());
