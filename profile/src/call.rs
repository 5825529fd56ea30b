//! One system call as the profiler sees it: its name and the few arguments that matter for
//! clustering (the syscall graph's "select arguments"): the kind of file descriptor it works on,
//! the open flags, the path (as a hash, for "the same path"), the size asked for, and the outcome.

use std::fmt;

/// What a file descriptor refers to, as far as the profiler could tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum FdKind {
    /// Not known (the descriptor was made by a call the profiler did not see).
    #[default]
    Unknown = 0,
    /// A regular file (or anything with a path that is not one of the kinds below).
    File = 1,
    /// A directory.
    Dir = 2,
    /// A socket.
    Socket = 3,
    /// A pipe or FIFO.
    Pipe = 4,
    /// An epoll instance.
    Epoll = 5,
    /// An eventfd, timerfd, signalfd or other anonymous inode.
    Anon = 6,
    /// A character device (a terminal, `/dev/null`).
    Chr = 7,
}

impl FdKind {
    /// The kind stored as `b` (in a recording); `Unknown` for a value no kind has.
    pub fn from_u8(b: u8) -> Self {
        match b {
            1 => Self::File,
            2 => Self::Dir,
            3 => Self::Socket,
            4 => Self::Pipe,
            5 => Self::Epoll,
            6 => Self::Anon,
            7 => Self::Chr,
            _ => Self::Unknown,
        }
    }

    /// The short name used in node labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "fd",
            Self::File => "file",
            Self::Dir => "dir",
            Self::Socket => "socket",
            Self::Pipe => "pipe",
            Self::Epoll => "epoll",
            Self::Anon => "anon",
            Self::Chr => "chr",
        }
    }
}

/// The open flags the profiler keeps (its own bits, the same from strace and from a recording).
pub mod open_flags {
    /// `O_TRUNC`.
    pub const TRUNC: u8 = 1;
    /// `O_CREAT`.
    pub const CREAT: u8 = 1 << 1;
    /// `O_WRONLY`.
    pub const WRONLY: u8 = 1 << 2;
    /// `O_RDWR`.
    pub const RDWR: u8 = 1 << 3;
    /// `O_APPEND`.
    pub const APPEND: u8 = 1 << 4;
    /// `O_DIRECTORY`.
    pub const DIRECTORY: u8 = 1 << 5;
    /// `O_NONBLOCK`.
    pub const NONBLOCK: u8 = 1 << 6;

    /// Linux's values of the flags above, in the same order (x86_64).
    pub const LINUX: [(u8, i32); 7] = [
        (TRUNC, 0o1000),
        (CREAT, 0o100),
        (WRONLY, 0o1),
        (RDWR, 0o2),
        (APPEND, 0o2000),
        (DIRECTORY, 0o200000),
        (NONBLOCK, 0o4000),
    ];

    /// The profiler's bits of Linux open flags `f`.
    pub fn from_linux(f: i32) -> u8 {
        LINUX
            .iter()
            .filter(|(_, l)| f & l == *l)
            .fold(0, |acc, (b, _)| acc | b)
    }

    /// `O_RDONLY|O_CREAT...` spelling of the bits, in the label's order.
    pub fn spell(bits: u8) -> String {
        let mut s = String::from(if bits & WRONLY != 0 {
            "O_WRONLY"
        } else if bits & RDWR != 0 {
            "O_RDWR"
        } else {
            "O_RDONLY"
        });
        for (b, name) in [
            (CREAT, "O_CREAT"),
            (TRUNC, "O_TRUNC"),
            (APPEND, "O_APPEND"),
            (DIRECTORY, "O_DIRECTORY"),
        ] {
            if bits & b != 0 {
                s.push('|');
                s.push_str(name);
            }
        }
        s
    }
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It returned this value (not an error).
    Ok(i64),
    /// It failed with this error (its symbolic name, `EAGAIN`).
    Err(String),
    /// Unknown: it never returned (`exit_group`, `= ?`) or the trace was cut.
    Unknown,
}

/// One system call of a thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The call's name as `<asm/unistd_64.h>` spells it (`openat`, `newfstatat`).
    pub name: String,
    /// The file descriptor it works on, if it takes one.
    pub fd: Option<i32>,
    /// What that descriptor is.
    pub kind: FdKind,
    /// For the `open` and `stat` families: a hash of the path ([`path_hash`]).
    pub path: Option<u32>,
    /// The path itself, when the source has it (strace does, a recording does not).
    pub path_text: Option<String>,
    /// For the `open` family, the flags ([`open_flags`] bits); for `fcntl`, the command.
    pub flags: u32,
    /// For reads and writes: the bytes asked for.
    pub size: Option<u64>,
    /// The result.
    pub outcome: Outcome,
}

impl Call {
    /// A call with only a name and an outcome.
    pub fn new(name: &str, outcome: Outcome) -> Self {
        Self {
            name: name.to_string(),
            fd: None,
            kind: FdKind::Unknown,
            path: None,
            path_text: None,
            flags: 0,
            size: None,
            outcome,
        }
    }

    /// The node of the syscall graph this call is: its name with the selected arguments (the fd's
    /// kind, the open flags, the fcntl command) and the error it failed with, e.g.
    /// `read(socket)`, `openat(O_WRONLY|O_CREAT|O_TRUNC)`, `read(socket) = EAGAIN`.
    pub fn label(&self) -> String {
        let mut s = self.name.clone();
        let args = if is_open(&self.name) {
            Some(open_flags::spell(self.flags as u8))
        } else if self.name == "fcntl" {
            Some(format!("{}, {}", self.kind.name(), fcntl_name(self.flags)))
        } else {
            self.fd.map(|_| self.kind.name().to_string())
        };
        if let Some(a) = args {
            s.push('(');
            s.push_str(&a);
            s.push(')');
        }
        if let Outcome::Err(e) = &self.outcome {
            s.push_str(" = ");
            s.push_str(e);
        }
        s
    }

    /// Whether it returned successfully.
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok(_))
    }

    /// The value it returned, if it succeeded.
    pub fn value(&self) -> Option<i64> {
        match self.outcome {
            Outcome::Ok(v) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// Whether `name` opens a path into a descriptor.
pub fn is_open(name: &str) -> bool {
    matches!(name, "open" | "openat" | "openat2" | "creat")
}

/// Whether `name` looks a path up for its attributes.
pub fn is_stat(name: &str) -> bool {
    matches!(
        name,
        "stat"
            | "lstat"
            | "newfstatat"
            | "fstatat64"
            | "statx"
            | "access"
            | "faccessat"
            | "faccessat2"
    )
}

/// Whether `name` writes bytes to its descriptor.
pub fn is_write(name: &str) -> bool {
    matches!(
        name,
        "write" | "writev" | "pwrite64" | "pwritev" | "pwritev2" | "send" | "sendto" | "sendmsg"
    )
}

/// Whether `name` reads bytes from its descriptor.
pub fn is_read(name: &str) -> bool {
    matches!(
        name,
        "read" | "readv" | "pread64" | "preadv" | "preadv2" | "recv" | "recvfrom" | "recvmsg"
    )
}

/// Whether `name` waits for descriptors to become ready.
pub fn is_wait(name: &str) -> bool {
    matches!(
        name,
        "poll" | "ppoll" | "select" | "pselect6" | "epoll_wait" | "epoll_pwait" | "epoll_pwait2"
    )
}

/// Calls whose first argument is a file descriptor.
pub fn takes_fd(name: &str) -> bool {
    is_read(name)
        || is_write(name)
        || matches!(
            name,
            "close"
                | "fstat"
                | "fcntl"
                | "fsync"
                | "fdatasync"
                | "ftruncate"
                | "fallocate"
                | "fadvise64"
                | "flock"
                | "lseek"
                | "getdents64"
                | "ioctl"
                | "accept"
                | "accept4"
                | "connect"
                | "bind"
                | "listen"
                | "shutdown"
                | "getsockopt"
                | "setsockopt"
                | "getsockname"
                | "getpeername"
                | "recvmmsg"
                | "sendmmsg"
                | "sendfile"
                | "splice"
                | "tee"
                | "vmsplice"
                | "epoll_ctl"
                | "epoll_wait"
                | "epoll_pwait"
                | "epoll_pwait2"
                | "syncfs"
                | "fchmod"
                | "fchown"
                | "fgetxattr"
                | "fsetxattr"
        )
}

/// Calls that only work on sockets (so their descriptor is one).
pub fn socket_only(name: &str) -> bool {
    matches!(
        name,
        "send"
            | "sendto"
            | "sendmsg"
            | "sendmmsg"
            | "recv"
            | "recvfrom"
            | "recvmsg"
            | "recvmmsg"
            | "accept"
            | "accept4"
            | "connect"
            | "bind"
            | "listen"
            | "shutdown"
            | "getsockopt"
            | "setsockopt"
            | "getsockname"
            | "getpeername"
    )
}

/// `fcntl` commands the labels name (Linux x86_64 values).
const FCNTL_CMDS: [(u32, &str); 12] = [
    (0, "F_DUPFD"),
    (1, "F_GETFD"),
    (2, "F_SETFD"),
    (3, "F_GETFL"),
    (4, "F_SETFL"),
    (5, "F_GETLK"),
    (6, "F_SETLK"),
    (7, "F_SETLKW"),
    (1030, "F_DUPFD_CLOEXEC"),
    (36, "F_OFD_GETLK"),
    (37, "F_OFD_SETLK"),
    (38, "F_OFD_SETLKW"),
];

/// The name of `fcntl` command `cmd` (`F_GETFL`), or its number.
pub fn fcntl_name(cmd: u32) -> String {
    FCNTL_CMDS
        .iter()
        .find(|(c, _)| *c == cmd)
        .map_or_else(|| cmd.to_string(), |(_, n)| n.to_string())
}

/// The number of `fcntl` command `name`, if it is one the labels know.
pub fn fcntl_cmd(name: &str) -> Option<u32> {
    FCNTL_CMDS.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
}

/// The 32-bit FNV-1a hash of a path: what a recording keeps of it (the recorder hashes the bytes
/// the program passed, strace's parser the unescaped string).
pub fn path_hash(path: &[u8]) -> u32 {
    path.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Linux's error numbers by name (x86_64), for turning a recording's numbers into strace's names.
const ERRNOS: [(i32, &str); 40] = [
    (1, "EPERM"),
    (2, "ENOENT"),
    (3, "ESRCH"),
    (4, "EINTR"),
    (5, "EIO"),
    (6, "ENXIO"),
    (7, "E2BIG"),
    (9, "EBADF"),
    (10, "ECHILD"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (16, "EBUSY"),
    (17, "EEXIST"),
    (20, "ENOTDIR"),
    (21, "EISDIR"),
    (22, "EINVAL"),
    (24, "EMFILE"),
    (25, "ENOTTY"),
    (27, "EFBIG"),
    (28, "ENOSPC"),
    (29, "ESPIPE"),
    (32, "EPIPE"),
    (36, "ENAMETOOLONG"),
    (38, "ENOSYS"),
    (39, "ENOTEMPTY"),
    (40, "ELOOP"),
    (61, "ENODATA"),
    (88, "ENOTSOCK"),
    (95, "EOPNOTSUPP"),
    (98, "EADDRINUSE"),
    (103, "ECONNABORTED"),
    (104, "ECONNRESET"),
    (107, "ENOTCONN"),
    (110, "ETIMEDOUT"),
    (111, "ECONNREFUSED"),
    (114, "EALREADY"),
    (115, "EINPROGRESS"),
    (512, "ERESTARTSYS"),
];

/// The symbolic name of error number `e` (`EAGAIN`), or `E<number>` for one not in the table.
pub fn errno_name(e: i32) -> String {
    ERRNOS
        .iter()
        .find(|(n, _)| *n == e)
        .map_or_else(|| format!("E{e}"), |(_, name)| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_carry_the_selected_arguments() {
        let mut c = Call::new("read", Outcome::Ok(3));
        c.fd = Some(4);
        c.kind = FdKind::Socket;
        assert_eq!(c.label(), "read(socket)");
        c.outcome = Outcome::Err("EAGAIN".into());
        assert_eq!(c.label(), "read(socket) = EAGAIN");
        let mut o = Call::new("openat", Outcome::Ok(3));
        o.flags = u32::from(open_flags::from_linux(0o1 | 0o100 | 0o1000));
        assert_eq!(o.label(), "openat(O_WRONLY|O_CREAT|O_TRUNC)");
        let mut f = Call::new("fcntl", Outcome::Ok(0));
        f.fd = Some(3);
        f.kind = FdKind::Socket;
        f.flags = 4;
        assert_eq!(f.label(), "fcntl(socket, F_SETFL)");
        assert_eq!(Call::new("getpid", Outcome::Ok(1)).label(), "getpid");
    }

    #[test]
    fn errno_names_and_hash() {
        assert_eq!(errno_name(11), "EAGAIN");
        assert_eq!(errno_name(4095), "E4095");
        // FNV-1a's published test vector.
        assert_eq!(path_hash(b"a"), 0xe40c_292c);
        assert_eq!(fcntl_cmd("F_SETFL"), Some(4));
        assert_eq!(fcntl_name(999), "999");
    }
}
