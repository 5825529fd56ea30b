//! Reads `strace` output into per-thread call sequences: with or without `-f` (`[pid N]` or
//! `N ` prefixes), `-t`/`-tt`/`-ttt`/`-r` timestamps and `-T` durations, `-y` descriptor paths,
//! and calls split by another thread's into `<unfinished ...>` and `<... name resumed>` halves.
//!
//! What each descriptor is comes from `-y` when present, else from the calls that made it
//! (`openat`, `socket`, `accept4`, `pipe2`, `epoll_create1`, `dup2`...), per process: threads made
//! with `CLONE_FILES` share their parent's table, `fork`'s children get a copy.

use std::collections::HashMap;

use crate::call::{
    Call, FdKind, Outcome, fcntl_cmd, is_open, is_read, is_stat, is_write, open_flags, path_hash,
    socket_only, takes_fd,
};
use crate::trace::{Thread, Trace};

/// Reads a whole strace output. Lines that are not calls (signals, exits, strace's own messages)
/// are passed over; lines that look like calls but cannot be read are counted in
/// [`Trace::skipped`].
pub fn parse(text: &str) -> Trace {
    let mut p = Parser::default();
    for line in text.lines() {
        p.line(line);
    }
    p.finish()
}

/// A process's descriptor table (what the parser inferred of it).
type FdTable = HashMap<i32, FdKind>;

#[derive(Default)]
struct Parser {
    trace: Trace,
    /// Thread index in `trace.threads` by pid.
    thread_of: HashMap<u32, usize>,
    /// Calls cut by `<unfinished ...>`: the name and the text up to the cut, by pid.
    pending: HashMap<u32, String>,
    /// The descriptor and kind of a `close` cut by `<unfinished ...>` (already forgotten by the
    /// table), by pid.
    closing: HashMap<u32, (i32, FdKind)>,
    /// Descriptor tables, and which one each pid uses.
    tables: Vec<FdTable>,
    table_of: HashMap<u32, usize>,
}

impl Parser {
    fn line(&mut self, line: &str) {
        let (pid, rest) = split_pid(line.trim_start());
        let rest = skip_timestamp(rest.trim_start()).trim_start();
        if rest.is_empty()
            || rest.starts_with("---")
            || rest.starts_with("+++")
            || rest.starts_with("strace:")
        {
            return;
        }
        self.thread(pid);
        let text = if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((name, tail)) = resumed.split_once(" resumed>") else {
                self.trace.skipped += 1;
                return;
            };
            match self.pending.remove(&pid) {
                Some(head) => head + tail,
                None => {
                    // The first half is not in the trace (it started before the capture): the
                    // call without its arguments.
                    let ret = matching_paren(tail)
                        .and_then(|close| tail[close + 1..].trim_start().strip_prefix('='));
                    match ret {
                        Some(ret) => self.call(pid, name, &[], ret.trim_start()),
                        None => self.trace.skipped += 1,
                    }
                    return;
                }
            }
        } else if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            if let Some(fd) = head
                .strip_prefix("close(")
                .and_then(fd_arg)
                .map(|(fd, _)| fd)
            {
                // The number is free from here on: another thread's open may return it before
                // this close's `resumed>` line.
                let t = self.table(pid);
                let kind = self.tables[t].remove(&fd).unwrap_or_default();
                self.closing.insert(pid, (fd, kind));
            }
            if let Some(old) = self.pending.insert(pid, head.trim_end().to_string()) {
                // A call that never resumed (the thread died in it): keep it, result unknown.
                self.push_unfinished(pid, &old);
            }
            return;
        } else {
            rest.to_string()
        };
        match split_call(&text) {
            Some((name, args, ret)) => self.call(pid, name, &args, ret),
            None => self.trace.skipped += 1,
        }
    }

    fn push_unfinished(&mut self, pid: u32, head: &str) {
        let Some(open) = head.find('(') else {
            self.trace.skipped += 1;
            return;
        };
        let name = &head[..open];
        let args = split_args(&head[open + 1..]);
        self.call(pid, name, &args, "?");
    }

    fn finish(mut self) -> Trace {
        let mut left: Vec<_> = self.pending.drain().collect();
        left.sort();
        for (pid, head) in left {
            self.push_unfinished(pid, &head);
        }
        self.trace
    }

    fn table(&mut self, pid: u32) -> usize {
        if let Some(&t) = self.table_of.get(&pid) {
            return t;
        }
        self.tables.push(FdTable::new());
        let t = self.tables.len() - 1;
        self.table_of.insert(pid, t);
        t
    }

    fn call(&mut self, pid: u32, name: &str, args: &[String], ret: &str) {
        let (outcome, ret_note) = outcome(ret);
        let mut c = Call::new(name, outcome);
        let t = self.table(pid);
        if takes_fd(name) || (name == "newfstatat" && args.get(1).is_some_and(|p| p == "\"\"")) {
            if let Some((fd, note)) = args.first().and_then(|a| fd_arg(a)) {
                c.fd = Some(fd);
                let closing = match self.closing.remove(&pid) {
                    Some((f, k)) if name == "close" && f == fd => Some(k),
                    _ => None,
                };
                c.kind = note.map_or_else(
                    || {
                        closing
                            .or_else(|| self.tables[t].get(&fd).copied())
                            .unwrap_or_default()
                    },
                    kind_of_note,
                );
                if socket_only(name) {
                    c.kind = FdKind::Socket;
                }
                if name == "close" {
                    // A close split by another thread's line freed the number when it started.
                    if closing.is_none() && c.ok() {
                        self.tables[t].remove(&fd);
                    }
                } else if c.kind != FdKind::Unknown {
                    self.tables[t].insert(fd, c.kind);
                }
            }
        }
        let path_at = match name {
            "open" | "creat" | "stat" | "lstat" | "access" => Some(0),
            _ if is_open(name) || is_stat(name) => Some(1),
            _ => None,
        };
        if let Some(p) = path_at.and_then(|i| args.get(i)).and_then(|a| c_string(a))
            && !p.is_empty()
        {
            c.path = Some(path_hash(&p));
            c.path_text = Some(String::from_utf8_lossy(&p).into_owned());
        }
        if is_open(&c.name) {
            let flags = match name {
                "creat" => Some("O_WRONLY|O_CREAT|O_TRUNC"),
                "open" => args.get(1).map(String::as_str),
                _ => args.get(2).map(String::as_str),
            };
            c.flags = u32::from(flags.map_or(0, symbolic_open_flags));
        } else if name == "fcntl" {
            c.flags = args
                .get(1)
                .and_then(|a| fcntl_cmd(a.trim()))
                .unwrap_or(u32::MAX);
        }
        if name == "mmap"
            && let Some((fd, _)) = args
                .get(4)
                .and_then(|a| fd_arg(a))
                .filter(|(fd, _)| *fd >= 0)
        {
            c.fd = Some(fd);
            c.kind = self.tables[t].get(&fd).copied().unwrap_or_default();
        }
        if matches!(name, "mmap" | "munmap" | "getrandom") {
            c.size = args.get(1).and_then(|a| a.trim().parse().ok());
        } else if is_read(name) || is_write(name) {
            c.size = match name {
                "readv" | "writev" | "preadv" | "pwritev" | "preadv2" | "pwritev2" | "sendmsg"
                | "recvmsg" => args.get(1).map(|a| iov_total(a)),
                _ => args.get(2).and_then(|a| a.trim().parse().ok()),
            };
        }
        self.track(pid, t, &c, args, ret_note);
        let i = self.thread(pid);
        self.trace.threads[i].calls.push(c);
    }

    /// The index of `pid`'s thread, added at its first line.
    fn thread(&mut self, pid: u32) -> usize {
        if let Some(&i) = self.thread_of.get(&pid) {
            return i;
        }
        self.trace.threads.push(Thread {
            name: format!("pid {pid}"),
            ..Thread::default()
        });
        let i = self.trace.threads.len() - 1;
        self.thread_of.insert(pid, i);
        i
    }

    /// What the call did to the descriptor tables.
    fn track(&mut self, pid: u32, t: usize, c: &Call, args: &[String], note: Option<&str>) {
        let Some(ret) = c.value() else { return };
        let fd = i32::try_from(ret).ok();
        let table = &mut self.tables[t];
        let arg_fd = |i: usize| args.get(i).and_then(|a| fd_arg(a)).map(|(fd, _)| fd);
        let made = match c.name.as_str() {
            n if is_open(n) && c.flags & u32::from(open_flags::DIRECTORY) != 0 => Some(FdKind::Dir),
            n if is_open(n) || n == "memfd_create" => Some(FdKind::File),
            "socket" | "accept" | "accept4" => Some(FdKind::Socket),
            "epoll_create" | "epoll_create1" => Some(FdKind::Epoll),
            "eventfd" | "eventfd2" | "timerfd_create" | "signalfd" | "signalfd4"
            | "inotify_init" | "inotify_init1" | "io_uring_setup" | "pidfd_open"
            | "userfaultfd" => Some(FdKind::Anon),
            "dup" => arg_fd(0).map(|f| table.get(&f).copied().unwrap_or_default()),
            "fcntl" if matches!(c.flags, 0 | 1030) => {
                arg_fd(0).map(|f| table.get(&f).copied().unwrap_or_default())
            }
            "dup2" | "dup3" => {
                if let (Some(from), Some(to)) = (arg_fd(0), arg_fd(1)) {
                    let k = table.get(&from).copied().unwrap_or_default();
                    table.insert(to, k);
                }
                None
            }
            "pipe" | "pipe2" | "socketpair" => {
                let (at, kind) = if c.name == "socketpair" {
                    (3, FdKind::Socket)
                } else {
                    (0, FdKind::Pipe)
                };
                if let Some(pair) = args.get(at) {
                    for f in pair.trim_matches(['[', ']']).split(',') {
                        if let Some((f, _)) = fd_arg(f) {
                            table.insert(f, kind);
                        }
                    }
                }
                None
            }
            "clone" | "clone3" | "fork" | "vfork" => {
                if let Ok(child) = u32::try_from(ret) {
                    let shared = args.iter().any(|a| a.contains("CLONE_FILES"));
                    self.adopt(pid, child, shared);
                }
                None
            }
            _ => None,
        };
        if let (Some(f), Some(k)) = (fd, made) {
            let k = note.map_or(k, kind_of_note);
            self.tables[t].insert(f, k);
        }
    }

    /// `child` was made by `parent`: it shares the parent's table or starts with a copy. Its own
    /// lines may already have been read (strace prints them before the parent's `resumed>`): what
    /// was learnt from them is kept.
    fn adopt(&mut self, parent: u32, child: u32, shared: bool) {
        let p = self.table(parent);
        let own = self
            .table_of
            .get(&child)
            .map(|&c| std::mem::take(&mut self.tables[c]));
        let t = if shared {
            p
        } else {
            self.tables.push(self.tables[p].clone());
            self.tables.len() - 1
        };
        if let Some(own) = own {
            self.tables[t].extend(own);
        }
        self.table_of.insert(child, t);
    }
}

/// `[pid 123] rest` or `123 rest` (strace -f): the pid (0 without one) and the rest.
fn split_pid(line: &str) -> (u32, &str) {
    if let Some(r) = line.strip_prefix("[pid")
        && let Some((pid, rest)) = r.split_once(']')
        && let Ok(pid) = pid.trim().parse()
    {
        return (pid, rest);
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0
        && line[digits..].starts_with([' ', '\t'])
        && let Ok(pid) = line[..digits].parse()
    {
        return (pid, &line[digits..]);
    }
    (0, line)
}

/// Drops a leading timestamp (`12:34:56`, `12:34:56.123456`, `1700000000.123456`, `-r`'s
/// `0.000123`).
fn skip_timestamp(s: &str) -> &str {
    let n = s
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b':' || *b == b'.')
        .count();
    let stamp = &s[..n];
    if n > 0 && s[n..].starts_with([' ', '\t']) && stamp.contains([':', '.']) {
        &s[n..]
    } else {
        s
    }
}

/// `name(args) = ret ...` into the name, the arguments (top-level, as text) and what follows `=`.
fn split_call(text: &str) -> Option<(&str, Vec<String>, &str)> {
    let open = text.find('(')?;
    let name = &text[..open];
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let close = open + 1 + matching_paren(&text[open + 1..])?;
    let after = text[close + 1..].trim_start();
    let ret = after.strip_prefix('=')?.trim_start();
    Some((name, split_args(&text[open + 1..close]), ret))
}

/// The index of the `)` closing an argument list that starts at `s`'s first byte.
fn matching_paren(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        if quoted {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => quoted = true,
            b'(' | b'[' | b'{' => depth += 1,
            b')' if depth == 0 => return Some(i),
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Splits an argument list at its top-level commas.
fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut escaped = false;
    for ch in s.chars() {
        if quoted {
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            cur.push(ch);
            continue;
        }
        match ch {
            '"' => quoted = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The outcome after `=`, and a `-y` note on a returned descriptor (`3</etc/passwd>`).
fn outcome(ret: &str) -> (Outcome, Option<&str>) {
    let mut words = ret.split_whitespace();
    let Some(first) = words.next() else {
        return (Outcome::Unknown, None);
    };
    let (value, note) = match first.find('<') {
        Some(i) => (&first[..i], note_of(&first[i..])),
        None => (first, None),
    };
    if value == "?" {
        return match words.next() {
            Some(e) if e.starts_with('E') => (Outcome::Err(e.to_string()), None),
            _ => (Outcome::Unknown, None),
        };
    }
    let n = match value.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    };
    match n {
        Some(n) if n < 0 => match words.next() {
            Some(e) if e.starts_with('E') => (Outcome::Err(e.to_string()), None),
            _ => (Outcome::Ok(n), None),
        },
        Some(n) => (Outcome::Ok(n), note),
        None => (Outcome::Unknown, None),
    }
}

/// The text of a `-y` note `<...>` (which may contain `>` itself, as in
/// `<TCP:[1.2.3.4:80->5.6.7.8:9]>`): up to its last `>`.
fn note_of(word: &str) -> Option<&str> {
    let s = word.strip_prefix('<')?;
    Some(s.rfind('>').map_or(s, |e| &s[..e]))
}

/// A descriptor argument: its number and the `-y` note (`3</etc/passwd>`).
fn fd_arg(a: &str) -> Option<(i32, Option<&str>)> {
    let a = a.trim();
    let digits = a
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'-')
        .count();
    let fd = a[..digits].parse().ok()?;
    let note = a[digits..]
        .strip_prefix('<')
        .map(|n| n.strip_suffix('>').unwrap_or(n));
    Some((fd, note))
}

/// What a `-y` note says the descriptor is.
fn kind_of_note(note: &str) -> FdKind {
    const SOCKETS: [&str; 8] = [
        "TCP:",
        "TCPv6:",
        "UDP:",
        "UDPv6:",
        "UNIX:",
        "UNIX-STREAM:",
        "NETLINK:",
        "socket:",
    ];
    if SOCKETS.iter().any(|p| note.starts_with(p)) {
        FdKind::Socket
    } else if note.starts_with("pipe:") {
        FdKind::Pipe
    } else if note.starts_with("anon_inode:[eventpoll]") {
        FdKind::Epoll
    } else if note.starts_with("anon_inode:") {
        FdKind::Anon
    } else if note.starts_with("/dev/") {
        FdKind::Chr
    } else {
        FdKind::File
    }
}

/// strace's spelling of open flags (`O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC`) as profiler bits.
fn symbolic_open_flags(s: &str) -> u8 {
    s.split('|')
        .map(|f| match f.trim() {
            "O_TRUNC" => open_flags::TRUNC,
            "O_CREAT" => open_flags::CREAT,
            "O_WRONLY" => open_flags::WRONLY,
            "O_RDWR" => open_flags::RDWR,
            "O_APPEND" => open_flags::APPEND,
            "O_DIRECTORY" => open_flags::DIRECTORY,
            "O_NONBLOCK" => open_flags::NONBLOCK,
            _ => 0,
        })
        .fold(0, |a, b| a | b)
}

/// The sum of the `iov_len=N` of an iovec array (or msghdr) argument.
fn iov_total(a: &str) -> u64 {
    a.split("iov_len=")
        .skip(1)
        .filter_map(|s| {
            let n: String = s.chars().take_while(char::is_ascii_digit).collect();
            n.parse::<u64>().ok()
        })
        .sum()
}

/// The bytes of a C string literal as strace prints it (`"/etc/x\n"`), escapes undone; None if
/// the argument is not one (`NULL`, a pointer).
fn c_string(a: &str) -> Option<Vec<u8>> {
    let body = a.trim().strip_prefix('"')?;
    let body = body.strip_suffix("...").unwrap_or(body);
    let body = body.strip_suffix('"')?;
    let mut out = Vec::with_capacity(body.len());
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let e = bytes[i + 1];
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(0x0b),
            b'f' => out.push(0x0c),
            b'x' => {
                let hex: Vec<u8> = bytes[i..]
                    .iter()
                    .take(2)
                    .copied()
                    .take_while(u8::is_ascii_hexdigit)
                    .collect();
                i += hex.len();
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                let mut n = 1;
                while n < 3 && i < bytes.len() && (b'0'..=b'7').contains(&bytes[i]) {
                    v = v * 8 + u32::from(bytes[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_timestamps() {
        assert_eq!(split_pid("[pid  42] read("), (42, " read("));
        assert_eq!(split_pid("42    read("), (42, "    read("));
        assert_eq!(split_pid("read("), (0, "read("));
        assert_eq!(skip_timestamp("12:34:56.123456 read("), " read(");
        assert_eq!(skip_timestamp("1700000000.5 read("), " read(");
        assert_eq!(skip_timestamp("read(3"), "read(3");
    }

    #[test]
    fn arguments_with_nesting_and_quotes() {
        let (name, args, ret) =
            split_call(r#"writev(3, [{iov_base="a,)b", iov_len=4}, {iov_base="\"", iov_len=1}], 2) = 5 <0.000010>"#)
                .unwrap();
        assert_eq!(name, "writev");
        assert_eq!(args.len(), 3);
        assert_eq!(iov_total(&args[1]), 5);
        assert_eq!(outcome(ret).0, Outcome::Ok(5));
    }

    #[test]
    fn outcomes() {
        assert_eq!(
            outcome("-1 ENOENT (No such file or directory)").0,
            Outcome::Err("ENOENT".into())
        );
        assert_eq!(outcome("0x7f0000000000").0, Outcome::Ok(0x7f00_0000_0000));
        assert_eq!(outcome("?").0, Outcome::Unknown);
        assert_eq!(
            outcome("? ERESTARTSYS (To be restarted)").0,
            Outcome::Err("ERESTARTSYS".into())
        );
        let (o, note) = outcome("3</etc/passwd>");
        assert_eq!(o, Outcome::Ok(3));
        assert_eq!(note, Some("/etc/passwd"));
    }

    #[test]
    fn c_strings() {
        assert_eq!(c_string(r#""/a\nb\x41\101\"""#).unwrap(), b"/a\nbAA\"");
        assert_eq!(c_string(r#""abc"..."#).unwrap(), b"abc");
        assert!(c_string("NULL").is_none());
    }
}
