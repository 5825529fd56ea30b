//! The strace parser's edge cases: output formats, split calls, descriptor kinds across `-y`,
//! `dup2`, `pipe2`, threads and forked children, and lines it cannot read.

use flexsc_profile::strace::parse;
use flexsc_profile::{FdKind, Outcome};

fn labels(text: &str) -> Vec<Vec<String>> {
    parse(text)
        .threads
        .iter()
        .map(|t| t.calls.iter().map(|c| c.label()).collect())
        .collect()
}

#[test]
fn every_prefix_and_timestamp_format() {
    for line in [
        "read(0, \"\", 10) = 0",
        "[pid  7] read(0, \"\", 10) = 0",
        "7  read(0, \"\", 10) = 0",
        "7 12:00:01 read(0, \"\", 10) = 0",
        "7 12:00:01.123456 read(0, \"\", 10) = 0 <0.000004>",
        "[pid 7] 1700000000.123456 read(0, \"\", 10) = 0",
        "     0.000123 read(0, \"\", 10) = 0",
    ] {
        let t = parse(line);
        assert_eq!(t.skipped, 0, "{line}");
        assert_eq!(t.threads.len(), 1, "{line}");
        let c = &t.threads[0].calls[0];
        assert_eq!(
            (c.name.as_str(), c.fd, c.size),
            ("read", Some(0), Some(10)),
            "{line}"
        );
        assert_eq!(c.outcome, Outcome::Ok(0), "{line}");
    }
}

#[test]
fn unfinished_and_resumed_pairs() {
    let t = parse(
        "[pid 2] futex(0x1, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>\n\
         [pid 3] getpid() = 3\n\
         [pid 2] <... futex resumed>) = 0\n\
         [pid 3] read(4,  <unfinished ...>\n\
         [pid 2] <... write resumed>, 3) = 3\n\
         [pid 3] <... read resumed>\"abc\", 3) = 3\n\
         [pid 4] nanosleep({tv_sec=1, tv_nsec=0},  <unfinished ...>\n\
         [pid 4] +++ killed by SIGKILL +++\n",
    );
    let names: Vec<Vec<(&str, Outcome)>> = t
        .threads
        .iter()
        .map(|t| {
            t.calls
                .iter()
                .map(|c| (c.name.as_str(), c.outcome.clone()))
                .collect()
        })
        .collect();
    assert_eq!(
        names,
        [
            // The half whose start was not captured is kept (the capture began mid-call).
            vec![("futex", Outcome::Ok(0)), ("write", Outcome::Ok(3))],
            vec![("getpid", Outcome::Ok(3)), ("read", Outcome::Ok(3))],
            // Never resumed: kept, its result unknown.
            vec![("nanosleep", Outcome::Unknown)],
        ]
    );
    let read = &t.threads[1].calls[1];
    assert_eq!((read.fd, read.size), (Some(4), Some(3)));
}

#[test]
fn results_of_every_shape() {
    let t = parse(
        "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 3, 0) = 0x7f1234560000\n\
         openat(AT_FDCWD, \"/nope\", O_RDONLY) = -1 ENOENT (No such file or directory)\n\
         exit_group(0) = ?\n\
         read(3, 0x1, 1) = ? ERESTARTSYS (To be restarted if SA_RESTART is set)\n\
         restart_syscall(<... resuming interrupted read ...>) = 0\n\
         poll([{fd=3, events=POLLIN}], 1, 0) = 0 (Timeout)\n",
    );
    let o: Vec<Outcome> = t.threads[0]
        .calls
        .iter()
        .map(|c| c.outcome.clone())
        .collect();
    assert_eq!(
        o,
        [
            Outcome::Ok(0x7f12_3456_0000),
            Outcome::Err("ENOENT".into()),
            Outcome::Unknown,
            Outcome::Err("ERESTARTSYS".into()),
            Outcome::Ok(0),
            Outcome::Ok(0),
        ]
    );
    assert_eq!(t.threads[0].calls[1].path_text.as_deref(), Some("/nope"));
}

#[test]
fn descriptor_kinds_from_y_annotations() {
    let l = labels(
        "read(3</etc/passwd>, \"x\", 1) = 1\n\
         recvfrom(5<TCP:[127.0.0.1:80->127.0.0.1:5555]>, \"x\", 1, 0, NULL, NULL) = 1\n\
         write(6<pipe:[1234]>, \"x\", 1) = 1\n\
         write(1</dev/pts/0<char 136:0>>, \"x\", 1) = 1\n\
         epoll_wait(7<anon_inode:[eventpoll]>, [], 8, 0) = 0\n\
         read(8<anon_inode:[eventfd]>, \"x\", 8) = 8\n\
         openat(AT_FDCWD</>, \"/etc\", O_RDONLY|O_DIRECTORY) = 9</etc>\n\
         getdents64(9</etc>, 0x1, 32768) = 0\n",
    );
    assert_eq!(
        l[0],
        [
            "read(file)",
            "recvfrom(socket)",
            "write(pipe)",
            "write(chr)",
            "epoll_wait(epoll)",
            "read(anon)",
            "openat(O_RDONLY|O_DIRECTORY)",
            "getdents64(file)",
        ]
    );
}

#[test]
fn descriptor_kinds_inferred_without_y() {
    let l = labels(
        "socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 3\n\
         write(3, \"x\", 1) = 1\n\
         pipe2([4, 5], O_CLOEXEC) = 0\n\
         read(4, \"x\", 1) = 1\n\
         dup2(3, 5) = 5\n\
         write(5, \"x\", 1) = 1\n\
         close(3) = 0\n\
         write(3, \"x\", 1) = -1 EBADF (Bad file descriptor)\n\
         openat(AT_FDCWD, \"/etc\", O_RDONLY|O_DIRECTORY) = 3\n\
         fcntl(3, F_DUPFD_CLOEXEC, 10) = 10\n\
         getdents64(10, 0x1, 32768) = 0\n\
         epoll_create1(EPOLL_CLOEXEC) = 11\n\
         epoll_wait(11, [], 8, 0) = 0\n\
         read(99, \"x\", 1) = 1\n",
    );
    assert_eq!(
        l[0],
        [
            "socket",
            "write(socket)",
            "pipe2",
            "read(pipe)",
            "dup2",
            "write(socket)",
            "close(socket)",
            "write(fd) = EBADF",
            "openat(O_RDONLY|O_DIRECTORY)",
            "fcntl(dir, F_DUPFD_CLOEXEC)",
            "getdents64(dir)",
            "epoll_create1",
            "epoll_wait(epoll)",
            "read(fd)",
        ]
    );
}

#[test]
fn threads_share_the_table_and_forked_children_copy_it() {
    let t = parse(
        "10 socket(AF_INET, SOCK_STREAM, 0) = 3\n\
         10 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD) = 20\n\
         10 clone3({flags=CLONE_VM|CLONE_FILES|CLONE_THREAD, exit_signal=0}, 88) = 11\n\
         20 close(3) = 0\n\
         11 write(3, \"x\", 1) = 1\n\
         10 openat(AT_FDCWD, \"/f\", O_RDONLY) = 4\n\
         20 read(4, \"x\", 1) = 1\n\
         11 read(4, \"x\", 1) = 1\n",
    );
    let by_pid: Vec<(String, Vec<String>)> = t
        .threads
        .iter()
        .map(|t| (t.name.clone(), t.calls.iter().map(|c| c.label()).collect()))
        .collect();
    assert_eq!(
        by_pid,
        [
            (
                "pid 10".into(),
                vec![
                    "socket".into(),
                    "clone".into(),
                    "clone3".into(),
                    "openat(O_RDONLY)".into()
                ]
            ),
            // The child has a copy: it knows fd 3; fd 4 opened in the parent later is not its.
            (
                "pid 20".into(),
                vec!["close(socket)".into(), "read(fd)".into()]
            ),
            // The thread shares the parent's table: the child's close did not touch it.
            (
                "pid 11".into(),
                vec!["write(socket)".into(), "read(file)".into()]
            ),
        ]
    );
}

#[test]
fn a_child_seen_before_its_clone_returns_is_adopted() {
    let t = parse(
        "1 openat(AT_FDCWD, \"/f\", O_RDONLY) = 3\n\
         1 clone3({flags=CLONE_VM|CLONE_FILES|CLONE_THREAD}, 88 <unfinished ...>\n\
         2 socket(AF_UNIX, SOCK_STREAM, 0) = 4\n\
         1 <... clone3 resumed>) = 2\n\
         1 write(4, \"x\", 1) = 1\n\
         2 read(3, \"x\", 1) = 1\n",
    );
    assert_eq!(t.threads[0].calls[2].kind, FdKind::Socket);
    assert_eq!(t.threads[1].calls[1].kind, FdKind::File);
}

#[test]
fn a_close_frees_its_number_when_it_starts() {
    // Thread 2's open returns 3 before thread 1's close(3) says it resumed: the 3 thread 2 writes
    // to is its file, not the closed socket.
    let t = parse(
        "1 socket(AF_INET, SOCK_STREAM, 0) = 3\n\
         1 clone3({flags=CLONE_VM|CLONE_FILES|CLONE_THREAD}, 88) = 2\n\
         1 close(3 <unfinished ...>\n\
         2 openat(AT_FDCWD, \"/f\", O_WRONLY) = 3\n\
         1 <... close resumed>) = 0\n\
         2 write(3, \"x\", 1) = 1\n",
    );
    assert_eq!(t.threads[0].calls[2].label(), "close(socket)");
    assert_eq!(t.threads[1].calls[1].label(), "write(file)");
}

#[test]
fn noise_is_passed_over_and_garbage_counted() {
    let t = parse(
        "strace: Process 42 attached\n\
         --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED} ---\n\
         +++ exited with 0 +++\n\
         \n\
         this is not a call\n\
         read(3, unterminated\n\
         <... nothing here\n\
         (1) = 2\n\
         getpid() = 42\n",
    );
    assert_eq!(t.skipped, 4);
    assert_eq!(t.calls(), 1);
}

#[test]
fn paths_with_escapes_and_open_flags() {
    let t = parse(
        "openat(AT_FDCWD, \"/tmp/a b\\n\\\"q\\\"\", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 3\n\
         open(\"/x\", O_RDWR|O_APPEND) = 4\n\
         creat(\"/y\", 0644) = 5\n\
         stat(\"/x\", {st_mode=S_IFREG|0644, st_size=0, ...}) = 0\n\
         statx(AT_FDCWD, \"/x\", AT_STATX_SYNC_AS_STAT, STATX_ALL, {stx_mask=STATX_ALL}) = 0\n",
    );
    let c = &t.threads[0].calls;
    assert_eq!(c[0].path_text.as_deref(), Some("/tmp/a b\n\"q\""));
    assert_eq!(c[0].label(), "openat(O_WRONLY|O_CREAT|O_TRUNC)");
    assert_eq!(c[1].label(), "open(O_RDWR|O_APPEND)");
    assert_eq!(c[2].label(), "creat(O_WRONLY|O_CREAT|O_TRUNC)");
    assert_eq!(c[3].path, c[1].path);
    assert_eq!(c[4].path, c[1].path);
    assert_ne!(c[0].path, c[1].path);
}

#[test]
fn mappings_and_getrandom() {
    let t = parse(
        "openat(AT_FDCWD, \"/f\", O_RDONLY) = 3\n\
         mmap(NULL, 4096, PROT_READ, MAP_SHARED, 3, 0) = 0x7f0000000000\n\
         mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000100000\n\
         munmap(0x7f0000000000, 4096) = 0\n\
         getrandom(\"\\x01\\x02\", 2, GRND_NONBLOCK) = 2\n",
    );
    let c = &t.threads[0].calls;
    assert_eq!(
        (c[1].label(), c[1].size),
        ("mmap(file)".to_string(), Some(4096))
    );
    assert_eq!((c[2].label(), c[2].size), ("mmap".to_string(), Some(8192)));
    assert_eq!(c[3].size, Some(4096));
    assert_eq!(c[4].size, Some(2));
}
