//! The hybrid rule (paper section 3.3): which of a green thread's calls run directly on its
//! carrier, trapping as usual, instead of being posted exception-less.
//!
//! Posting pays off when the call would wait (the carrier runs other green threads meanwhile)
//! or when it joins a batch. A call that cannot wait gains nothing from the first, and on a
//! carrier with few green threads little from the second: each one costs a post, a submit, a
//! harvest and a switch, and on the `uring` backend a call io_uring has no opcode for (the
//! stat family; `poll` of several fds; `epoll_wait` before Linux 6.15) is a wake-up of a syscall
//! thread and back. The servers
//! of issue 6 make almost all their calls on `O_NONBLOCK` sockets (Apache through APR,
//! MariaDB's vio, memcached's libevent) and wait in `poll`/`epoll_wait` only.
//!
//! `FLEXSC_DIRECT` (`flexsc run --direct`) chooses the classes, a list (separated by `,` or
//! `+`), `all` or `none`; the default is `auto`: `nonblock`, the one class that won in the
//! measurements of docs/results.md ("Server evaluation"), for the programs it pays for, chosen
//! while the program runs:
//!
//! - `nonblock`: the read/write/send/receive/accept/connect family on a descriptor known to be
//!   non-blocking ([`nonblock`](crate::nonblock)), and sends and receives with `MSG_DONTWAIT`;
//!   `nonblock-recv` and `nonblock-send` are its two halves (the receiving calls with accept,
//!   the sending ones with connect). Apache with keep-alive on 2 CPUs does better with these
//!   calls posted (they batch), MariaDB and memcached with them on the carrier;
//! - `auto`: `nonblock` or nothing, switched while the program runs by the tuner
//!   ([`crate::tune`]), which measures the process's CPU time per call under each and keeps the
//!   cheaper (Apache's with keep-alive: posted; MariaDB's and memcached's: on the carrier);
//! - `ready`: `poll`, `ppoll` and the `epoll_wait` family first look with a zero timeout on the
//!   carrier, and are posted only if nothing is ready (a call with a zero timeout never waits and
//!   always runs there); a green thread that found something ready yields its carrier once, so
//!   that others sharing it are not starved by a thread that never has to wait. It halved
//!   memcached's throughput on one CPU (with or without the yield), so it is off by default;
//! - `stat`: `stat`, `fstat`, `newfstatat` and `statx` (a cached lookup; they wait only for a
//!   slow or remote file system). No gain measured on Apache (one `newfstatat` per request), so
//!   off by default.
//!
//! A call run on the carrier counts in the statistics as run there ("thread-bound").

use std::sync::atomic::{AtomicU8, Ordering};

use crate::nonblock;

/// `nonblock-recv` class bit: the receiving half of `nonblock`.
const NB_RECV: u8 = 1;
/// `nonblock-send` class bit: the sending half of `nonblock`.
const NB_SEND: u8 = 8;
/// `nonblock`: both halves.
const NONBLOCK: u8 = NB_RECV | NB_SEND;
/// `ready` class bit.
const READY: u8 = 2;
/// `stat` class bit.
const STAT: u8 = 4;
/// `auto` class bit: `nonblock`, on or off as the tuner ([`crate::tune`]) finds cheaper.
const AUTO: u8 = 16;
/// Every class.
const ALL: u8 = NONBLOCK | READY | STAT;
/// The default (see the module doc).
const DEFAULT: u8 = AUTO;
/// Not read from the environment yet.
const UNREAD: u8 = 0x80;

static CLASSES: AtomicU8 = AtomicU8::new(UNREAD);

/// Parses a `FLEXSC_DIRECT` value: `none`, `all`, or a list of classes separated by `,` or `+`.
pub fn parse(v: &str) -> Result<u8, String> {
    let mut bits = 0;
    for class in v.split([',', '+']).map(str::trim) {
        bits |= match class {
            "none" => 0,
            "all" => ALL,
            "nonblock" => NONBLOCK,
            "auto" => AUTO,
            "nonblock-recv" => NB_RECV,
            "nonblock-send" => NB_SEND,
            "ready" => READY,
            "stat" => STAT,
            other => {
                return Err(format!(
                    "{other:?} is not none, all, auto, nonblock, nonblock-recv, nonblock-send, ready or stat"
                ));
            }
        };
    }
    Ok(bits)
}

fn classes() -> u8 {
    let c = CLASSES.load(Ordering::Relaxed);
    if c != UNREAD {
        return c;
    }
    let c = match std::env::var("FLEXSC_DIRECT") {
        Err(_) => DEFAULT,
        Ok(v) => parse(&v).unwrap_or_else(|e| {
            let msg = format!("libflexsc: FLEXSC_DIRECT: {e}; the default classes apply\n");
            // SAFETY: writes our own buffer to stderr through glibc's write.
            unsafe { crate::real::write()(2, msg.as_ptr().cast(), msg.len()) };
            DEFAULT
        }),
    };
    CLASSES.store(c, Ordering::Relaxed);
    c
}

/// Where a green thread's call runs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Posted to the carrier's syscall pages.
    Post,
    /// On the carrier, directly.
    Carrier,
    /// First on the carrier with a zero timeout, in the argument at this index (a value, or a
    /// pointer to a timespec); posted as it was if nothing was ready.
    ReadyFirst { arg: usize, pointer: bool },
}

/// The route of call `nr` with `args` on a green thread.
pub(crate) fn route(nr: i64, args: &[u64]) -> Route {
    let c = classes();
    if c == 0 {
        return Route::Post;
    }
    // A half of `nonblock` applies if chosen, or while the tuner finds it cheaper (asked only
    // for the calls it decides, so that no other call pays for its clock).
    let on = |half: u8| c & half != 0 || (c & AUTO != 0 && crate::tune::nonblock_on_carrier());
    let arg = |i: usize| args.get(i).copied().unwrap_or(0);
    let dontwait = |i: usize| arg(i) as libc::c_int & libc::MSG_DONTWAIT != 0;
    let fd = arg(0) as libc::c_int as i64;
    match nr {
        libc::SYS_read
        | libc::SYS_readv
        | libc::SYS_accept
        | libc::SYS_accept4
        | libc::SYS_recvmmsg
            if nonblock::known(fd) && on(NB_RECV) =>
        {
            Route::Carrier
        }
        libc::SYS_write | libc::SYS_writev | libc::SYS_connect | libc::SYS_sendmmsg
            if nonblock::known(fd) && on(NB_SEND) =>
        {
            Route::Carrier
        }
        libc::SYS_recvfrom if (nonblock::known(fd) || dontwait(3)) && on(NB_RECV) => Route::Carrier,
        libc::SYS_sendto if (nonblock::known(fd) || dontwait(3)) && on(NB_SEND) => Route::Carrier,
        libc::SYS_recvmsg if (nonblock::known(fd) || dontwait(2)) && on(NB_RECV) => Route::Carrier,
        libc::SYS_sendmsg if (nonblock::known(fd) || dontwait(2)) && on(NB_SEND) => Route::Carrier,
        libc::SYS_newfstatat | libc::SYS_fstat | libc::SYS_statx if c & STAT != 0 => Route::Carrier,
        libc::SYS_poll if c & READY != 0 => ready_first(arg(2) as libc::c_int == 0, 2, false),
        libc::SYS_epoll_wait | libc::SYS_epoll_pwait if c & READY != 0 => {
            ready_first(arg(3) as libc::c_int == 0, 3, false)
        }
        // The timeout is a pointer: not read here (the posted call reports a bad one).
        libc::SYS_ppoll if c & READY != 0 => ready_first(false, 2, true),
        libc::SYS_epoll_pwait2 if c & READY != 0 => ready_first(false, 3, true),
        _ => Route::Post,
    }
}

fn ready_first(zero: bool, arg: usize, pointer: bool) -> Route {
    if zero {
        Route::Carrier
    } else {
        Route::ReadyFirst { arg, pointer }
    }
}
