//! The recording format: what libflexsc's recorder keeps per call (a fixed 16-byte [`Record`])
//! and the file it dumps per process, which `flexsc profile` reads back into a [`Trace`].
//!
//! A file is, little-endian: the 8-byte [`MAGIC`], the process id (u32) and 4 reserved bytes; then
//! per thread a 32-byte header (its id (u64), [`GREEN`] in flags (u32), 4 reserved bytes, the calls
//! it made in all (u64), the records that follow (u64)) and its records, oldest first.

use crate::call::{Call, FdKind, Outcome, errno_name, is_open, is_stat};
use crate::trace::{Thread, Trace};

/// The variable that turns libflexsc's recorder on: the directory it dumps into.
pub const DIR_VAR: &str = "FLEXSC_PROFILE";
/// The variable of the recorder's ring size (records per thread, rounded up to a power of two).
pub const RING_VAR: &str = "FLEXSC_PROFILE_RING";
/// The name of the dump of process `pid` in that directory.
pub fn dump_name(pid: u32) -> String {
    format!("{pid}.fxp")
}

/// The first bytes of a recording.
pub const MAGIC: [u8; 8] = *b"FXSCPRF1";
/// A thread header's flag: the thread was a green thread (else an OS thread).
pub const GREEN: u32 = 1;
/// [`Record::fd`] of a call that takes no descriptor.
pub const NO_FD: i32 = i32::MIN;
/// The size of the file header.
pub const FILE_HEADER: usize = 16;
/// The size of a thread header.
pub const THREAD_HEADER: usize = 32;
/// The size of a record.
pub const RECORD: usize = 16;

/// One call, as recorded: the number, the selected arguments, the result class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The system call number.
    pub nr: u16,
    /// The descriptor's [`FdKind`] as a byte.
    pub kind: u8,
    /// For the `open` family: [`open_flags`](crate::call::open_flags) bits.
    pub flags: u8,
    /// The raw result, clamped to i32 (negative: minus the error number).
    pub ret: i32,
    /// The descriptor, or [`NO_FD`].
    pub fd: i32,
    /// The `open`/`stat` families: the path's hash; `fcntl`: the command; reads and writes: the
    /// bytes asked for (clamped to u32).
    pub arg: u32,
}

impl Record {
    /// The record as two words (how the recorder stores it).
    pub fn to_words(self) -> [u64; 2] {
        [
            u64::from(self.nr)
                | u64::from(self.kind) << 16
                | u64::from(self.flags) << 24
                | u64::from(self.ret as u32) << 32,
            u64::from(self.fd as u32) | u64::from(self.arg) << 32,
        ]
    }

    /// The record stored as `w`.
    pub fn from_words(w: [u64; 2]) -> Self {
        Self {
            nr: w[0] as u16,
            kind: (w[0] >> 16) as u8,
            flags: (w[0] >> 24) as u8,
            ret: (w[0] >> 32) as u32 as i32,
            fd: w[1] as u32 as i32,
            arg: (w[1] >> 32) as u32,
        }
    }

    /// The call this record describes; `name_of` names system call numbers.
    pub fn call(&self, name_of: &dyn Fn(i64) -> Option<&'static str>) -> Call {
        let name = name_of(i64::from(self.nr))
            .map_or_else(|| format!("syscall_{}", self.nr), str::to_string);
        let outcome = if self.ret < 0 {
            Outcome::Err(errno_name(-self.ret))
        } else {
            Outcome::Ok(i64::from(self.ret))
        };
        let mut c = Call::new(&name, outcome);
        if self.fd != NO_FD {
            c.fd = Some(self.fd);
            c.kind = FdKind::from_u8(self.kind);
        }
        // A path's hash is never 0 in practice; 0 means no path (null or empty).
        let path = (self.arg != 0).then_some(self.arg);
        if is_open(&name) {
            c.flags = u32::from(self.flags);
            c.path = path;
        } else if is_stat(&name) {
            c.path = path;
        } else if name == "fcntl" {
            c.flags = self.arg;
        } else if c.fd.is_some() {
            c.size = Some(u64::from(self.arg));
        }
        c
    }
}

/// The file header of process `pid`.
pub fn file_header(pid: u32) -> [u8; FILE_HEADER] {
    let mut h = [0; FILE_HEADER];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&pid.to_le_bytes());
    h
}

/// A thread header: thread `id`, green or not, `total` calls made, `count` records following.
pub fn thread_header(id: u64, green: bool, total: u64, count: u64) -> [u8; THREAD_HEADER] {
    let mut h = [0; THREAD_HEADER];
    h[..8].copy_from_slice(&id.to_le_bytes());
    h[8..12].copy_from_slice(&(if green { GREEN } else { 0 }).to_le_bytes());
    h[16..24].copy_from_slice(&total.to_le_bytes());
    h[24..32].copy_from_slice(&count.to_le_bytes());
    h
}

/// A record's bytes in the file.
pub fn record_bytes(r: Record) -> [u8; RECORD] {
    let [a, b] = r.to_words();
    let mut out = [0; RECORD];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads one process's recording; `name_of` names system call numbers. A file that is not a
/// recording, or is cut short, is an error saying where.
pub fn decode(
    bytes: &[u8],
    name_of: &dyn Fn(i64) -> Option<&'static str>,
) -> Result<Trace, String> {
    if bytes.len() < FILE_HEADER || bytes[..8] != MAGIC {
        return Err("not a flexsc profile recording (bad magic)".into());
    }
    let pid = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let mut at = FILE_HEADER;
    let mut trace = Trace::default();
    while at < bytes.len() {
        if bytes.len() - at < THREAD_HEADER {
            return Err(format!("truncated thread header at byte {at}"));
        }
        let id = u64_at(bytes, at);
        let green =
            u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes")) & GREEN != 0;
        let total = u64_at(bytes, at + 16);
        let count = u64_at(bytes, at + 24);
        at += THREAD_HEADER;
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(RECORD))
            .filter(|&len| len <= bytes.len() - at)
            .ok_or_else(|| format!("thread {id}: {count} records do not fit in the file"))?;
        if count > total {
            return Err(format!(
                "thread {id}: {count} records but only {total} calls"
            ));
        }
        let calls = bytes[at..at + len]
            .chunks_exact(RECORD)
            .map(|r| Record::from_words([u64_at(r, 0), u64_at(r, 8)]).call(name_of))
            .collect();
        at += len;
        trace.threads.push(Thread {
            name: format!("pid {pid} {} {id}", if green { "green" } else { "os" }),
            lost: total - count,
            calls,
        });
    }
    Ok(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(nr: i64) -> Option<&'static str> {
        match nr {
            0 => Some("read"),
            257 => Some("openat"),
            72 => Some("fcntl"),
            _ => None,
        }
    }

    #[test]
    fn records_round_trip() {
        let r = Record {
            nr: 257,
            kind: 1,
            flags: 0x45,
            ret: -11,
            fd: NO_FD,
            arg: 0xdead_beef,
        };
        assert_eq!(Record::from_words(r.to_words()), r);
    }

    #[test]
    fn a_file_decodes_into_threads() {
        let mut f = file_header(42).to_vec();
        f.extend(thread_header(7, true, 3, 2));
        let read = Record {
            nr: 0,
            kind: FdKind::Socket as u8,
            ret: -11,
            fd: 5,
            arg: 100,
            ..Record::default()
        };
        let open = Record {
            nr: 257,
            flags: crate::call::open_flags::from_linux(0o1 | 0o1000),
            ret: 6,
            fd: NO_FD,
            arg: 99,
            ..Record::default()
        };
        f.extend(record_bytes(read));
        f.extend(record_bytes(open));
        let t = decode(&f, &names).unwrap();
        assert_eq!(t.threads.len(), 1);
        assert_eq!(t.threads[0].name, "pid 42 green 7");
        assert_eq!(t.threads[0].lost, 1);
        let labels: Vec<_> = t.threads[0].calls.iter().map(Call::label).collect();
        assert_eq!(
            labels,
            ["read(socket) = EAGAIN", "openat(O_WRONLY|O_TRUNC)"]
        );
        assert_eq!(t.threads[0].calls[0].size, Some(100));
        assert_eq!(t.threads[0].calls[1].path, Some(99));
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(decode(b"nope", &names).is_err());
        let mut f = file_header(1).to_vec();
        f.extend(thread_header(1, false, 5, 5));
        f.extend([0u8; 20]);
        assert!(decode(&f, &names).unwrap_err().contains("do not fit"));
        let mut g = file_header(1).to_vec();
        g.extend([0u8; 10]);
        assert!(decode(&g, &names).unwrap_err().contains("truncated"));
    }
}
