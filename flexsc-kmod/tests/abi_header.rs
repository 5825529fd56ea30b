//! `include/flexsc.h` describes the same entry and page as the Rust side: a C program compiled
//! against the header prints every size, offset, alignment and constant, and each must equal the
//! Rust value.
// Under loom the layout items (`entry::offsets`) are not built.
#![cfg(not(loom))]

mod header_program;

use std::collections::BTreeMap;

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
	P("FLEXSC_NR_COMPOUND", FLEXSC_NR_COMPOUND);
	P("FLEXSC_COMPOUND_VERSION", FLEXSC_COMPOUND_VERSION);
	P("FLEXSC_COMPOUND_MAX_OPS", FLEXSC_COMPOUND_MAX_OPS);
	P("FLEXSC_COMPOUND_MAX_STEPS", FLEXSC_COMPOUND_MAX_STEPS);
	P("FLEXSC_OP_CALL", FLEXSC_OP_CALL);
	P("FLEXSC_OP_JUMP", FLEXSC_OP_JUMP);
	P("FLEXSC_OP_STOP", FLEXSC_OP_STOP);
	P("FLEXSC_OP_CHECK", FLEXSC_OP_CHECK);
	P("FLEXSC_SRC_RESULT", FLEXSC_SRC_RESULT);
	P("FLEXSC_SRC_BUF", FLEXSC_SRC_BUF);
	P("FLEXSC_COND_LE", FLEXSC_COND_LE);
	P("FLEXSC_COND_GE", FLEXSC_COND_GE);
	P("op.size", sizeof(struct flexsc_op));
	P("op.nr.offset", offsetof(struct flexsc_op, nr));
	P("op.target.offset", offsetof(struct flexsc_op, target));
	P("op.cond.offset", offsetof(struct flexsc_op, cond));
	P("op.nargs.offset", offsetof(struct flexsc_op, nargs));
	P("op.src.offset", offsetof(struct flexsc_op, src));
	P("op.refs.offset", offsetof(struct flexsc_op, refs));
	P("op.reserved.offset", offsetof(struct flexsc_op, reserved));
	P("op.args.offset", offsetof(struct flexsc_op, args));
	P("compound.size", sizeof(struct flexsc_compound));
	P("compound.max_steps.offset", offsetof(struct flexsc_compound, max_steps));
	P("compound.ops.offset", offsetof(struct flexsc_compound, ops));
	P("compound.results.offset", offsetof(struct flexsc_compound, results));
	P("compound.buf.offset", offsetof(struct flexsc_compound, buf));
	P("compound.buf_len.offset", offsetof(struct flexsc_compound, buf_len));
	P("compound.steps.offset", offsetof(struct flexsc_compound, steps));
	P("compound.stop.offset", offsetof(struct flexsc_compound, stop));
	{
		/* The C multi-call helper builds what the Rust builder builds. */
		struct flexsc_compound h;
		struct flexsc_op ops[2];
		int64_t results[2];
		const uint16_t nrs[2] = { 39, 110 };
		const uint64_t args[2][6] = { { 0 }, { 0 } };
		const uint8_t check[2] = { 1, 0 };
		const unsigned char *b = (const unsigned char *)ops;
		unsigned long long sum = 0;
		size_t i;

		P("multicall.init", flexsc_multicall_init(&h, ops, results, 2, nrs, args, check));
		for (i = 0; i < sizeof(ops); i++)
			sum = sum * 31 + b[i];
		P("multicall.ops.hash", sum);
		P("multicall.max_steps", h.max_steps);
	}
	return 0;
}
"#;

/// The multi-call helper from C++ (the header promises C++11): prints the same `multicall.*`
/// lines as [`PROGRAM`].
const CPP_PROGRAM: &str = r#"
#include <cstdio>
#include "flexsc.h"

int main()
{
	struct flexsc_compound h;
	struct flexsc_op ops[2];
	int64_t results[2];
	const uint16_t nrs[2] = { 39, 110 };
	const uint64_t args[2][6] = {};
	const uint8_t check[2] = { 1, 0 };
	const unsigned char *b = reinterpret_cast<const unsigned char *>(ops);
	unsigned long long sum = 0;

	int r = flexsc_multicall_init(&h, ops, results, 2, nrs, args, check);
	for (size_t i = 0; i < sizeof(ops); i++)
		sum = sum * 31 + b[i];
	std::printf("multicall.init %d\nmulticall.ops.hash %llu\nmulticall.max_steps %u\n", r, sum,
		    static_cast<unsigned>(h.max_steps));
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
    let facts: Vec<(&str, usize)> = vec![
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
    let mut facts = facts;
    facts.extend(compound_facts());
    facts
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v as u64))
        .collect()
}

/// The compound ABI (`src/compound/abi.rs`).
fn compound_facts() -> Vec<(&'static str, usize)> {
    use flexsc_kmod::compound::abi::{self, Header, Op, cond, op_flags, op_kind, src};
    use flexsc_kmod::compound::multi_call;
    use memoffset::offset_of;
    // The C helper's multi-call: getppid (checked), getppid (unchecked), 6 arguments each.
    // SAFETY: never posted; only its ops' bytes are compared.
    let calls = unsafe {
        [
            (flexsc_kmod::Syscall::new(39, &[0; 6]), true),
            (flexsc_kmod::Syscall::new(110, &[0; 6]), false),
        ]
    };
    let c = multi_call(&calls).expect("valid");
    // SAFETY: `Op` is plain old data without padding (80 bytes of integers, asserted in abi.rs).
    let bytes = unsafe { std::slice::from_raw_parts(c.ops().as_ptr().cast::<u8>(), 160) };
    let hash = bytes
        .iter()
        .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(b.into()));
    vec![
        ("FLEXSC_NR_COMPOUND", abi::NR_COMPOUND as usize),
        ("FLEXSC_COMPOUND_VERSION", abi::VERSION as usize),
        ("FLEXSC_COMPOUND_MAX_OPS", abi::MAX_OPS as usize),
        ("FLEXSC_COMPOUND_MAX_STEPS", abi::MAX_STEPS as usize),
        ("FLEXSC_OP_CALL", op_kind::CALL as usize),
        ("FLEXSC_OP_JUMP", op_kind::JUMP as usize),
        ("FLEXSC_OP_STOP", op_kind::STOP as usize),
        ("FLEXSC_OP_CHECK", op_flags::CHECK as usize),
        ("FLEXSC_SRC_RESULT", src::RESULT as usize),
        ("FLEXSC_SRC_BUF", src::BUF as usize),
        ("FLEXSC_COND_LE", cond::LE as usize),
        ("FLEXSC_COND_GE", cond::GE as usize),
        ("op.size", size_of::<Op>()),
        ("op.nr.offset", offset_of!(Op, nr)),
        ("op.target.offset", offset_of!(Op, target)),
        ("op.cond.offset", offset_of!(Op, cond)),
        ("op.nargs.offset", offset_of!(Op, nargs)),
        ("op.src.offset", offset_of!(Op, src)),
        ("op.refs.offset", offset_of!(Op, refs)),
        ("op.reserved.offset", offset_of!(Op, reserved)),
        ("op.args.offset", offset_of!(Op, args)),
        ("compound.size", size_of::<Header>()),
        ("compound.max_steps.offset", offset_of!(Header, max_steps)),
        ("compound.ops.offset", offset_of!(Header, ops)),
        ("compound.results.offset", offset_of!(Header, results)),
        ("compound.buf.offset", offset_of!(Header, buf)),
        ("compound.buf_len.offset", offset_of!(Header, buf_len)),
        ("compound.steps.offset", offset_of!(Header, steps)),
        ("compound.stop.offset", offset_of!(Header, stop)),
        ("multicall.init", 0),
        ("multicall.ops.hash", hash as usize),
        ("multicall.max_steps", 2),
    ]
}

#[test]
fn c_header_matches_rust_layout() {
    let c_side = header_program::facts("abi.c", PROGRAM);
    assert_eq!(c_side, rust_side(), "flexsc.h and the Rust ABI disagree");
}

#[test]
fn cpp_sees_the_same_multi_call() {
    let cpp_side = header_program::facts("abi.cpp", CPP_PROGRAM);
    let want: BTreeMap<String, u64> = rust_side()
        .into_iter()
        .filter(|(k, _)| k.starts_with("multicall."))
        .collect();
    assert_eq!(
        cpp_side, want,
        "flexsc.h's multi-call helper differs in C++"
    );
}
