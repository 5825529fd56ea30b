//! `include/flexsc.h` describes the same entry and page as the Rust side: a C program compiled
//! against the header prints every size, offset, alignment and constant, and each must equal the
//! Rust value.
// Under loom the layout items (`entry::offsets`) are not built.
#![cfg(not(loom))]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use flexsc_kmod::SyscallEntry;
use flexsc_kmod::entry::{self, Head, offsets, status};
use flexsc_kmod::page::{self, SyscallPage};

/// Prints `name value` lines, one per fact the Rust side checks.
const PROGRAM: &str = r#"
#include <stdio.h>
#include "flexsc.h"

#define P(name, value) printf("%s %llu\n", name, (unsigned long long)(value))
#define SIZE(type, member) sizeof(((type *)0)->member)

int main(void)
{
	struct flexsc_entry e = { 0 };

	P("entry.size", sizeof(struct flexsc_entry));
	P("entry.align", _Alignof(struct flexsc_entry));
	P("entry.status.offset", offsetof(struct flexsc_entry, status));
	P("entry.status.size", SIZE(struct flexsc_entry, status));
	P("entry.nr.offset", offsetof(struct flexsc_entry, nr));
	P("entry.nr.size", SIZE(struct flexsc_entry, nr));
	P("entry.nargs.offset", offsetof(struct flexsc_entry, nargs));
	P("entry.nargs.size", SIZE(struct flexsc_entry, nargs));
	P("entry.flags.offset", offsetof(struct flexsc_entry, flags));
	P("entry.flags.size", SIZE(struct flexsc_entry, flags));
	P("entry.args.offset", offsetof(struct flexsc_entry, args));
	P("entry.args.size", SIZE(struct flexsc_entry, args));
	P("entry.ret.offset", offsetof(struct flexsc_entry, ret));
	P("entry.ret.size", SIZE(struct flexsc_entry, ret));
	e.ret = -1;
	P("entry.ret.signed", e.ret < 0);
	P("page.size", sizeof(struct flexsc_page));
	P("page.align", _Alignof(struct flexsc_page));
	P("page.entries", SIZE(struct flexsc_page, entries) / sizeof(struct flexsc_entry));
	P("page.stride", offsetof(struct flexsc_page, entries[1]));
	P("FLEXSC_ENTRY_SIZE", FLEXSC_ENTRY_SIZE);
	P("FLEXSC_PAGE_SIZE", FLEXSC_PAGE_SIZE);
	P("FLEXSC_ENTRIES_PER_PAGE", FLEXSC_ENTRIES_PER_PAGE);
	P("FLEXSC_STATUS_FREE", FLEXSC_STATUS_FREE);
	P("FLEXSC_STATUS_SUBMITTED", FLEXSC_STATUS_SUBMITTED);
	P("FLEXSC_STATUS_BUSY", FLEXSC_STATUS_BUSY);
	P("FLEXSC_STATUS_DONE", FLEXSC_STATUS_DONE);
	P("FLEXSC_NR_BASE", FLEXSC_NR_BASE);
	P("FLEXSC_NR_NOP", FLEXSC_NR_NOP);
	return 0;
}
"#;

/// What the C program must print, from the Rust definitions.
fn rust_side() -> BTreeMap<String, u64> {
    use std::mem::{align_of, size_of, size_of_val};

    let head = Head::default();
    // The poster reads the result as an i64: -errno must come back negative.
    let e = SyscallEntry::new();
    e.post(entry::NR_NOP, 0, [0; 6]);
    e.claim().expect("a submitted entry").complete(-1);
    let ret_signed = e.take().expect("a done entry") < 0;
    let page = Box::new(SyscallPage::new());
    let stride = (&page.entries[1] as *const SyscallEntry as usize)
        - (&page.entries[0] as *const SyscallEntry as usize);
    // The status word, the arguments and the result are private fields: their sizes are the gaps
    // between the published offsets.
    let facts: [(&str, usize); 28] = [
        ("entry.size", size_of::<SyscallEntry>()),
        ("entry.align", align_of::<SyscallEntry>()),
        ("entry.status.offset", offsets::STATUS),
        ("entry.status.size", offsets::NR - offsets::STATUS),
        ("entry.nr.offset", offsets::NR),
        ("entry.nr.size", size_of_val(&head.nr)),
        ("entry.nargs.offset", offsets::NARGS),
        ("entry.nargs.size", size_of_val(&head.nargs)),
        ("entry.flags.offset", offsets::FLAGS),
        ("entry.flags.size", size_of_val(&head.flags)),
        ("entry.args.offset", offsets::ARGS),
        ("entry.args.size", offsets::RET - offsets::ARGS),
        ("entry.ret.offset", offsets::RET),
        ("entry.ret.size", size_of::<SyscallEntry>() - offsets::RET),
        ("entry.ret.signed", usize::from(ret_signed)),
        ("page.size", size_of::<SyscallPage>()),
        ("page.align", align_of::<SyscallPage>()),
        ("page.entries", page.entries.len()),
        ("page.stride", stride),
        ("FLEXSC_ENTRY_SIZE", size_of::<SyscallEntry>()),
        ("FLEXSC_PAGE_SIZE", page::PAGE_SIZE),
        ("FLEXSC_ENTRIES_PER_PAGE", page::ENTRIES_PER_PAGE),
        ("FLEXSC_STATUS_FREE", status::FREE as usize),
        ("FLEXSC_STATUS_SUBMITTED", status::SUBMITTED as usize),
        ("FLEXSC_STATUS_BUSY", status::BUSY as usize),
        ("FLEXSC_STATUS_DONE", status::DONE as usize),
        ("FLEXSC_NR_BASE", entry::NR_FLEXSC_BASE as usize),
        ("FLEXSC_NR_NOP", entry::NR_NOP as usize),
    ];
    facts
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v as u64))
        .collect()
}

/// A scratch directory removed when dropped (also when the test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("flexsc-abi-header-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn c_header_matches_rust_layout() {
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let dir = TempDir::new();
    let src = dir.path().join("abi.c");
    let exe = dir.path().join("abi");
    std::fs::write(&src, PROGRAM).expect("write the C program");

    // Strict C11: the header must not lean on compiler extensions beyond __attribute__.
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let out = Command::new(&cc)
        .args(["-std=c11", "-pedantic", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(&include)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("run {cc}: {e}"));
    assert!(
        out.status.success(),
        "{cc} rejected the header:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(&exe).output().expect("run the C program");
    assert!(
        out.status.success(),
        "the C program failed: {:?}",
        out.status
    );
    let stdout = String::from_utf8(out.stdout).expect("ASCII output");
    let c_side: BTreeMap<String, u64> = stdout
        .lines()
        .map(|line| {
            let (k, v) = line.split_once(' ').expect("`name value` lines");
            (k.to_owned(), v.parse().expect("a number"))
        })
        .collect();

    assert_eq!(c_side, rust_side(), "flexsc.h and the Rust ABI disagree");
}
