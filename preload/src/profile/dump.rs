//! Writes this process's rings to `DIR/PID.fxp` (the format of
//! [`flexsc_profile::record`]) at exit. Raw system calls only: nothing here goes through the
//! library's own exports (so the dump neither records itself nor posts to syscall pages while
//! the process exits).

use flexsc_profile::record::{dump_name, file_header, record_bytes, thread_header};

use super::ring;

/// Writes the dump into directory `dir` (a NUL-terminated path); one line on stderr if it cannot.
pub(crate) fn write(dir: &[u8]) {
    // SAFETY: getpid has no arguments.
    let pid = unsafe { raw(libc::SYS_getpid, [0; 6]) } as u32;
    let mut out = file_header(pid).to_vec();
    for r in ring::all() {
        let (total, start, end) = r.span();
        if total == 0 {
            continue;
        }
        out.extend(thread_header(r.id, r.green, total, end - start));
        for i in start..end {
            out.extend(record_bytes(r.get(i)));
        }
    }
    let mut path = dir[..dir.len() - 1].to_vec();
    path.push(b'/');
    path.extend(dump_name(pid).bytes());
    path.push(0);
    if let Err(e) = write_file(&path, &out) {
        let msg = format!(
            "libflexsc: cannot write the profile {}: {e}\n",
            String::from_utf8_lossy(&path[..path.len() - 1])
        );
        // SAFETY: our own buffer to stderr.
        unsafe {
            raw(
                libc::SYS_write,
                [2, msg.as_ptr() as u64, msg.len() as u64, 0, 0, 0],
            )
        };
    }
}

/// # Safety
/// As `syscall(2)`.
unsafe fn raw(nr: i64, args: [u64; 6]) -> i64 {
    // SAFETY: the caller's contract.
    unsafe { flexsc_threads::kmod::raw::syscall6(nr as u64, &args) }
}

fn write_file(path: &[u8], data: &[u8]) -> Result<(), std::io::Error> {
    let flags = (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC) as u64;
    let at = libc::AT_FDCWD as u64;
    // SAFETY: `path` is NUL-terminated and lives across the call.
    let fd = unsafe {
        raw(
            libc::SYS_openat,
            [at, path.as_ptr() as u64, flags, 0o644, 0, 0],
        )
    };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd as i32));
    }
    let mut done = 0;
    let mut result = Ok(());
    while done < data.len() {
        let rest = &data[done..];
        // SAFETY: writes from our own buffer.
        let n = unsafe {
            raw(
                libc::SYS_write,
                [fd as u64, rest.as_ptr() as u64, rest.len() as u64, 0, 0, 0],
            )
        };
        match n {
            n if n > 0 => done += n as usize,
            n if n == -i64::from(libc::EINTR) => {}
            n => {
                result = Err(std::io::Error::from_raw_os_error(if n < 0 {
                    -n as i32
                } else {
                    libc::EIO
                }));
                break;
            }
        }
    }
    // SAFETY: closes the descriptor opened above.
    unsafe { raw(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]) };
    result
}
