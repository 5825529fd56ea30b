//! Known costly call patterns, found in each thread's sequence:
//!
//! - `open(O_TRUNC)`, writes, `close` of the same file: the interface study's squid case (the
//!   truncation frees the file's blocks, the writes allocate them again);
//! - a `stat` of a path right before or after an `open` of the same path (two path lookups and a
//!   race; `fstat` on the descriptor answers the same);
//! - tiny writes (under [`TINY`] bytes) in a row to one descriptor (one `writev` would do);
//! - `fcntl(F_GETFL)` then `fcntl(F_SETFL)` on one descriptor (the flag can be given where the
//!   descriptor is made: `accept4(SOCK_NONBLOCK)`, `O_NONBLOCK`);
//! - a read that fails with `EAGAIN`, a wait, and the read again (the first crossing was wasted);
//! - the same `stat` twice in a row;
//! - a file mapped, written out and unmapped within a few calls (`sendfile` does it in one);
//! - tiny `getrandom` calls in a row;
//! - a small read (a message header) right before another read of the same descriptor (its
//!   body): a buffered read would make one call of the two;
//! - calls that fail (other than `EAGAIN`/`EINTR`), by call: often lookups of files that are
//!   never there.

use std::collections::HashMap;

use crate::call::{Call, is_open, is_read, is_stat, is_wait, is_write, open_flags};
use crate::trace::Trace;

/// Writes smaller than this many bytes are tiny.
pub const TINY: u64 = 64;

/// How far (in calls of the thread) an `open(O_TRUNC)` may be from its `close`.
const TRUNC_WINDOW: usize = 64;

/// One pattern found in the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What was found (a short name).
    pub pattern: String,
    /// How many times.
    pub occurrences: u64,
    /// The calls taking part, over all occurrences.
    pub calls: u64,
    /// Kernel crossings the remedy would save over all occurrences.
    pub saved: u64,
    /// One occurrence, for the reader (a path, a descriptor).
    pub example: String,
    /// The remedy.
    pub remedy: &'static str,
}

/// Every pattern of the list above found in `trace`, most crossings saved first.
pub fn find(trace: &Trace) -> Vec<Finding> {
    let mut acc = Acc::default();
    for t in &trace.threads {
        let c = &t.calls;
        open_trunc_write_close(c, &mut acc);
        for i in 0..c.len() {
            stat_and_open(c, i, &mut acc);
            fcntl_get_set(c, i, &mut acc);
            eagain_retry(c, i, &mut acc);
            repeated_stat(c, i, &mut acc);
            mmap_write_munmap(c, i, &mut acc);
            split_read(c, i, &mut acc);
            failed(&c[i], &mut acc);
        }
        tiny_writes(c, &mut acc);
        tiny_getrandom(c, &mut acc);
    }
    let mut out: Vec<Finding> = acc.0.into_values().collect();
    out.sort_by(|a, b| {
        b.saved
            .cmp(&a.saved)
            .then(b.occurrences.cmp(&a.occurrences))
            .then(a.pattern.cmp(&b.pattern))
    });
    out
}

#[derive(Default)]
struct Acc(HashMap<String, Finding>);

impl Acc {
    fn add(
        &mut self,
        pattern: String,
        calls: u64,
        saved: u64,
        example: impl FnOnce() -> String,
        remedy: &'static str,
    ) {
        let f = self.0.entry(pattern.clone()).or_insert_with(|| Finding {
            pattern,
            occurrences: 0,
            calls: 0,
            saved: 0,
            example: example(),
            remedy,
        });
        f.occurrences += 1;
        f.calls += calls;
        f.saved += saved;
    }
}

/// A path for the reader: the text if known, else its hash.
fn path_of(c: &Call) -> String {
    match (&c.path_text, c.path) {
        (Some(p), _) => p.clone(),
        (None, Some(h)) => format!("path #{h:08x}"),
        (None, None) => "?".into(),
    }
}

fn open_trunc_write_close(c: &[Call], acc: &mut Acc) {
    for (i, open) in c.iter().enumerate() {
        if !is_open(&open.name) || open.flags & u32::from(open_flags::TRUNC) == 0 {
            continue;
        }
        let Some(fd) = open.value().and_then(|v| i32::try_from(v).ok()) else {
            continue;
        };
        let mut writes = 0;
        for later in c.iter().skip(i + 1).take(TRUNC_WINDOW) {
            if later.fd != Some(fd) {
                continue;
            }
            if is_write(&later.name) {
                writes += 1;
            } else if later.name == "close" {
                if writes > 0 {
                    acc.add(
                        "open(O_TRUNC) + write + close".into(),
                        writes + 2,
                        writes + 1,
                        || path_of(open),
                        "open without O_TRUNC, write, ftruncate to the new length (the study's \
                         squid fix); or the whole sequence as one multi-call",
                    );
                }
                break;
            } else {
                break;
            }
        }
    }
}

fn stat_and_open(c: &[Call], i: usize, acc: &mut Acc) {
    let Some(next) = c.get(i + 1) else { return };
    let here = &c[i];
    let (stat, open, order) = if is_stat(&here.name) && is_open(&next.name) {
        (here, next, "stat then open")
    } else if is_open(&here.name) && is_stat(&next.name) {
        (next, here, "open then stat")
    } else {
        return;
    };
    if stat.path.is_some() && stat.path == open.path {
        acc.add(
            format!("{order} of the same path"),
            2,
            1,
            || path_of(open),
            "open, then fstat the descriptor (one path lookup, no race between them); as a \
             multi-call, one crossing",
        );
    }
}

fn fcntl_get_set(c: &[Call], i: usize, acc: &mut Acc) {
    const F_GETFL: u32 = 3;
    const F_SETFL: u32 = 4;
    let Some(next) = c.get(i + 1) else { return };
    let here = &c[i];
    if here.name != "fcntl"
        || next.name != "fcntl"
        || here.flags != F_GETFL
        || next.flags != F_SETFL
    {
        return;
    }
    let Some(fd) = here.fd.filter(|&fd| next.fd == Some(fd)) else {
        return;
    };
    // Made by this thread just before: the flag could have been given there.
    let fresh = c[i.saturating_sub(3)..i].iter().any(|m| {
        m.value() == Some(i64::from(fd))
            && (is_open(&m.name) || matches!(m.name.as_str(), "accept" | "accept4" | "socket"))
    });
    let (pattern, saved, remedy) = if fresh {
        (
            "new descriptor, then fcntl F_GETFL + F_SETFL",
            2,
            "give the flag where the descriptor is made (accept4(SOCK_NONBLOCK), O_NONBLOCK, \
             SOCK_NONBLOCK): both calls go",
        )
    } else {
        (
            "fcntl F_GETFL + F_SETFL on one descriptor",
            1,
            "remember the flags instead of reading them back, or one multi-call",
        )
    };
    acc.add(
        pattern.into(),
        2,
        saved,
        || format!("fd {fd} ({})", here.kind.name()),
        remedy,
    );
}

fn eagain_retry(c: &[Call], i: usize, acc: &mut Acc) {
    let here = &c[i];
    if !is_read(&here.name) || here.outcome != crate::call::Outcome::Err("EAGAIN".into()) {
        return;
    }
    let Some(fd) = here.fd else { return };
    let window = &c[i + 1..(i + 4).min(c.len())];
    let waited = window.iter().position(|w| is_wait(&w.name));
    let Some(w) = waited else { return };
    if window[w + 1..]
        .iter()
        .any(|r| is_read(&r.name) && r.fd == Some(fd))
    {
        acc.add(
            "read = EAGAIN, wait, read again".into(),
            3,
            1,
            || format!("{} on fd {fd}", here.name),
            "wait first when data is unlikely to be there yet (a request's first read), or let \
             the wait and the read be one multi-call",
        );
    }
}

fn repeated_stat(c: &[Call], i: usize, acc: &mut Acc) {
    let Some(next) = c.get(i + 1) else { return };
    let here = &c[i];
    if is_stat(&here.name)
        && here.name == next.name
        && here.path.is_some()
        && here.path == next.path
    {
        acc.add(
            "the same stat twice in a row".into(),
            2,
            1,
            || path_of(here),
            "keep the first answer",
        );
    }
}

fn failed(c: &Call, acc: &mut Acc) {
    let crate::call::Outcome::Err(e) = &c.outcome else {
        return;
    };
    if matches!(e.as_str(), "EAGAIN" | "EINTR" | "ERESTARTSYS" | "ETIMEDOUT") {
        return;
    }
    acc.add(
        format!("failing {}", c.label()),
        1,
        1,
        || match (&c.path_text, c.path) {
            (None, None) => c.fd.map_or_else(String::new, |fd| format!("fd {fd}")),
            _ => path_of(c),
        },
        "a call that fails every time is a wasted crossing: check whether it is needed (a \
         lookup of a file that is never there: .htaccess, a locale)",
    );
}

fn tiny_writes(c: &[Call], acc: &mut Acc) {
    tiny_runs(
        c,
        acc,
        |x| is_write(&x.name) && x.fd.is_some(),
        &format!("tiny writes (< {TINY} B) in a row"),
        "gather them into one writev (or buffer in user space)",
    );
}

fn tiny_getrandom(c: &[Call], acc: &mut Acc) {
    tiny_runs(
        c,
        acc,
        |x| x.name == "getrandom",
        &format!("tiny getrandom (< {TINY} B) in a row"),
        "ask for all the bytes at once (or seed a user-space generator once)",
    );
}

/// Runs of two or more calls matching `is` on one descriptor (or none), each under [`TINY`]
/// bytes: one call could do the run's work.
fn tiny_runs(
    c: &[Call],
    acc: &mut Acc,
    is: impl Fn(&Call) -> bool,
    what: &str,
    remedy: &'static str,
) {
    let tiny = |x: &Call| {
        is(x)
            && x.size
                .or_else(|| x.value().map(|v| v as u64))
                .is_some_and(|n| n < TINY)
    };
    let mut i = 0;
    while i < c.len() {
        if !tiny(&c[i]) {
            i += 1;
            continue;
        }
        let fd = c[i].fd;
        let run = c[i..].iter().take_while(|x| tiny(x) && x.fd == fd).count() as u64;
        if run >= 2 {
            let first = &c[i];
            acc.add(
                what.to_string(),
                run,
                run - 1,
                || match fd {
                    Some(fd) => format!("{} to fd {fd} ({})", first.name, first.kind.name()),
                    None => first.name.clone(),
                },
                remedy,
            );
        }
        i += run as usize;
    }
}

/// A read of under [`TINY`] bytes, then another read of the same descriptor right away: a header,
/// then the body it announced.
fn split_read(c: &[Call], i: usize, acc: &mut Acc) {
    let Some(next) = c.get(i + 1) else { return };
    let here = &c[i];
    let small = here.size.is_some_and(|n| n < TINY) && here.ok();
    if is_read(&here.name)
        && is_read(&next.name)
        && small
        && here.fd.is_some()
        && next.fd == here.fd
    {
        acc.add(
            format!("small read (< {TINY} B), then a read of the same descriptor"),
            2,
            1,
            || {
                format!(
                    "{} of {} B on fd {} ({})",
                    here.name,
                    here.size.unwrap_or(0),
                    here.fd.unwrap_or(-1),
                    here.kind.name()
                )
            },
            "read into a user-space buffer (as much as is there) and take the header and the \
             body from it; or a compound call whose second read takes its length from the \
             first's data",
        );
    }
}

/// A file mapped, written out and unmapped within a few calls: a mapping per use.
fn mmap_write_munmap(c: &[Call], i: usize, acc: &mut Acc) {
    let m = &c[i];
    if m.name != "mmap" || m.fd.is_none() || !m.ok() {
        return;
    }
    let window = &c[i + 1..(i + 5).min(c.len())];
    let Some(u) = window
        .iter()
        .position(|u| u.name == "munmap" && u.size.is_some() && u.size == m.size)
    else {
        return;
    };
    if window[..u].iter().any(|w| is_write(&w.name)) {
        acc.add(
            "mmap, write, munmap of a file".into(),
            u as u64 + 2,
            1,
            || format!("{} bytes of fd {}", m.size.unwrap_or(0), m.fd.unwrap_or(-1)),
            "sendfile (Apache: EnableSendfile On), or pread into a buffer: no mapping to make \
             and tear down (and no TLB shootdown) per use",
        );
    }
}
