//! The profiler's analysis of a known, hand-written `strace -f -tt -T` trace
//! (`traces/server.strace`: a main thread that truncates and writes a file, stats and opens
//! another, and a worker thread made with `clone3(CLONE_FILES)` that serves two requests). Every
//! number below was counted by hand from the trace.

use flexsc_profile::graph::{Graph, Labels};
use flexsc_profile::patterns;
use flexsc_profile::report::{self, Options};
use flexsc_profile::sequences;
use flexsc_profile::strace;

const TRACE: &str = include_str!("traces/server.strace");

const MAIN: [&str; 10] = [
    "openat(O_WRONLY|O_CREAT|O_TRUNC)",
    "write(file)",
    "write(file)",
    "close(file)",
    "clone3",
    "newfstatat",
    "openat(O_RDONLY)",
    "read(file)",
    "close(file)",
    "exit_group",
];

const REQUEST: [&str; 8] = [
    "accept4(socket)",
    "fcntl(socket, F_GETFL)",
    "fcntl(socket, F_SETFL)",
    "read(socket) = EAGAIN",
    "poll",
    "read(socket)",
    "writev(socket)",
    "close(socket)",
];

#[test]
fn threads_and_their_sequences() {
    let t = strace::parse(TRACE);
    assert_eq!(t.skipped, 0);
    assert_eq!(t.threads.len(), 2);
    assert_eq!(t.threads[0].name, "pid 1000");
    assert_eq!(t.threads[1].name, "pid 1001");
    let labels =
        |i: usize| -> Vec<String> { t.threads[i].calls.iter().map(|c| c.label()).collect() };
    assert_eq!(labels(0), MAIN);
    let twice: Vec<&str> = REQUEST.iter().chain(REQUEST.iter()).copied().collect();
    assert_eq!(labels(1), twice);
    let writev = &t.threads[1].calls[6];
    assert_eq!(writev.size, Some(8));
    assert_eq!(t.threads[0].calls[0].path_text.as_deref(), Some("/tmp/out"));
}

#[test]
fn graph_edges_have_the_exact_weights() {
    let labels = Labels::of(&strace::parse(TRACE));
    let g = Graph::build(&labels);
    let expected: &[(&str, &str, u64)] = &[
        ("accept4(socket)", "fcntl(socket, F_GETFL)", 2),
        ("fcntl(socket, F_GETFL)", "fcntl(socket, F_SETFL)", 2),
        ("fcntl(socket, F_SETFL)", "read(socket) = EAGAIN", 2),
        ("poll", "read(socket)", 2),
        ("read(socket)", "writev(socket)", 2),
        ("read(socket) = EAGAIN", "poll", 2),
        ("writev(socket)", "close(socket)", 2),
        ("clone3", "newfstatat", 1),
        ("close(file)", "clone3", 1),
        ("close(file)", "exit_group", 1),
        ("close(socket)", "accept4(socket)", 1),
        ("newfstatat", "openat(O_RDONLY)", 1),
        ("openat(O_RDONLY)", "read(file)", 1),
        ("openat(O_WRONLY|O_CREAT|O_TRUNC)", "write(file)", 1),
        ("read(file)", "close(file)", 1),
        ("write(file)", "close(file)", 1),
        ("write(file)", "write(file)", 1),
    ];
    let got: Vec<(&str, &str, u64)> = g.heaviest();
    assert_eq!(got, expected);
    assert_eq!(g.transitions(), 9 + 15);
    // Node counts: how many calls each label stands for.
    let count = |n: &str| g.counts[labels.get(n).unwrap() as usize];
    assert_eq!(count("close(file)"), 2);
    assert_eq!(count("read(socket)"), 2);
    assert_eq!(count("write(file)"), 2);
    assert_eq!(g.weight("write(file)", "write(file)"), 1);
    assert_eq!(g.weight("poll", "exit_group"), 0);
}

#[test]
fn hottest_sequences_and_crossings_saved() {
    let labels = Labels::of(&strace::parse(TRACE));
    // The whole request: 8 calls, twice, 7 crossings saved each time.
    let eight = sequences::hottest(&labels, 8, 1);
    assert_eq!(eight[0].calls, REQUEST);
    assert_eq!(
        (eight[0].count, eight[0].disjoint, eight[0].saved()),
        (2, 2, 14)
    );
    // Pairs: the worker's 7 pairs occur twice (2 saved each), then the close -> accept4 and the
    // main thread's pairs once, in name order.
    let pairs = sequences::hottest(&labels, 2, 8);
    assert_eq!(
        pairs[0].calls,
        ["accept4(socket)", "fcntl(socket, F_GETFL)"]
    );
    assert!(
        pairs[..7]
            .iter()
            .all(|p| (p.count, p.disjoint, p.saved()) == (2, 2, 2))
    );
    assert_eq!(pairs[7].calls, ["clone3", "newfstatat"]);
    assert_eq!(pairs[7].saved(), 1);
}

#[test]
fn overlapping_occurrences_are_counted_once_for_savings() {
    // write write write write: three windows of two, but two disjoint multi-calls.
    let t = strace::parse(&"write(1, \"a\", 1) = 1\n".repeat(4));
    let labels = Labels::of(&t);
    let s = sequences::hottest(&labels, 2, 1);
    assert_eq!((s[0].count, s[0].disjoint, s[0].saved()), (3, 2, 2));
}

#[test]
fn costly_patterns() {
    let f = patterns::find(&strace::parse(TRACE));
    let got: Vec<(&str, u64, u64, u64, &str)> = f
        .iter()
        .map(|f| {
            (
                f.pattern.as_str(),
                f.occurrences,
                f.calls,
                f.saved,
                f.example.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "new descriptor, then fcntl F_GETFL + F_SETFL",
                2,
                4,
                4,
                "fd 5 (socket)"
            ),
            ("open(O_TRUNC) + write + close", 1, 4, 3, "/tmp/out"),
            ("read = EAGAIN, wait, read again", 2, 6, 2, "read on fd 5"),
            ("stat then open of the same path", 1, 2, 1, "/srv/a"),
            (
                "tiny writes (< 64 B) in a row",
                1,
                2,
                1,
                "write to fd 3 (file)"
            ),
        ]
    );
}

#[test]
fn mapped_files_random_bytes_and_split_reads() {
    let f = patterns::find(&strace::parse(
        "1 openat(AT_FDCWD, \"/f\", O_RDONLY) = 3\n\
         1 mmap(NULL, 4096, PROT_READ, MAP_SHARED, 3, 0) = 0x7f0000000000\n\
         1 writev(4, [{iov_base=\"h\", iov_len=100}, {iov_base=\"b\", iov_len=4096}], 2) = 4196\n\
         1 munmap(0x7f0000000000, 4096) = 0\n\
         1 getrandom(\"\\x01\", 8, 0) = 8\n\
         1 getrandom(\"\\x01\", 8, 0) = 8\n\
         1 getrandom(\"\\x01\", 8, 0) = 8\n\
         1 getrandom(\"\\x01\", 4096, 0) = 4096\n\
         1 recvfrom(5, \"\\x10\\0\\0\\0\", 4, MSG_DONTWAIT, NULL, NULL) = 4\n\
         1 recvfrom(5, \"select\"..., 100, MSG_DONTWAIT, NULL, NULL) = 100\n\
         1 recvfrom(5, \"\\x10\\0\\0\\0\", 4, MSG_DONTWAIT, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable)\n\
         1 recvfrom(5, \"\\x10\\0\\0\\0\", 4, MSG_DONTWAIT, NULL, NULL) = 4\n",
    ));
    let got: Vec<(&str, u64, u64, u64)> = f
        .iter()
        .map(|f| (f.pattern.as_str(), f.occurrences, f.calls, f.saved))
        .collect();
    assert_eq!(
        got,
        [
            ("tiny getrandom (< 64 B) in a row", 1, 3, 2),
            ("mmap, write, munmap of a file", 1, 3, 1),
            // Not after the failed read: only a read that got its bytes is a header.
            (
                "small read (< 64 B), then a read of the same descriptor",
                1,
                2,
                1
            ),
        ]
    );
}

#[test]
fn report_and_dot() {
    let r = report::analyse(&strace::parse(TRACE), Options::default());
    assert_eq!((r.calls, r.threads, r.lost, r.skipped), (26, 2, 0, 0));
    let table = r.table();
    assert!(table.contains("26 calls in 2 threads"), "{table}");
    assert!(
        table.contains("        2   8.3%  accept4(socket) -> fcntl(socket, F_GETFL)"),
        "{table}"
    );
    let dot = r.dot();
    assert!(dot.starts_with("digraph syscalls {"));
    assert!(
        dot.contains("\"read(socket) = EAGAIN\" -> \"poll\" [label=\"2\", penwidth=5.0];"),
        "{dot}"
    );
    assert!(
        dot.contains("\"write(file)\" [label=\"write(file)\\n2\"];"),
        "{dot}"
    );
}
