//! `include/flexsc_ioctl.h` (the kernel module's interface) describes the same structures and
//! ioctl numbers as the `kmod` backend (`backend::kmod::abi`) and the same page control as
//! `page::PageControl`: a C program compiled against the header prints every size, offset and
//! number, and each must equal the Rust value.
#![cfg(not(loom))]

mod header_program;

use std::collections::BTreeMap;

use flexsc_kmod::backend::kmod::abi::{self, RegisterArgs, SlotArgs, WaitArgs, WorkerArgs};
use flexsc_kmod::page::{PageControl, control_offsets};
use memoffset::offset_of;

/// Prints `name value` lines, one per fact the Rust side checks.
const PROGRAM: &str = r#"
#include <stdio.h>
#include "flexsc_ioctl.h"

#define P(name, value) printf("%s %llu\n", name, (unsigned long long)(value))
#define F(type, member) \
	P(#type "." #member, offsetof(struct type, member)); \
	P(#type "." #member ".size", sizeof(((struct type *)0)->member))

int main(void)
{
	P("flexsc_page_control", sizeof(struct flexsc_page_control));
	P("flexsc_page_control.align", _Alignof(struct flexsc_page_control));
	F(flexsc_page_control, lock);
	F(flexsc_page_control, posted);
	F(flexsc_page_control, drained);
	F(flexsc_page_control, completed);
	P("flexsc_register_args", sizeof(struct flexsc_register_args));
	F(flexsc_register_args, entry_size);
	F(flexsc_register_args, page_size);
	F(flexsc_register_args, entries_per_page);
	F(flexsc_register_args, control_size);
	F(flexsc_register_args, pages);
	F(flexsc_register_args, controls);
	F(flexsc_register_args, syscall_cpus);
	F(flexsc_register_args, cores);
	F(flexsc_register_args, pages_per_core);
	F(flexsc_register_args, nr_syscall_cpus);
	F(flexsc_register_args, flags);
	P("flexsc_worker_args", sizeof(struct flexsc_worker_args));
	F(flexsc_worker_args, syscall_core);
	F(flexsc_worker_args, flags);
	P("flexsc_wait_args", sizeof(struct flexsc_wait_args));
	F(flexsc_wait_args, core);
	F(flexsc_wait_args, seq);
	F(flexsc_wait_args, timeout_ns);
	P("flexsc_slot_args", sizeof(struct flexsc_slot_args));
	F(flexsc_slot_args, core);
	F(flexsc_slot_args, slot);
	P("FLEXSC_MAX_PAGES", FLEXSC_MAX_PAGES);
	P("FLEXSC_MAX_SYSCALL_CPUS", FLEXSC_MAX_SYSCALL_CPUS);
	P("FLEXSC_IOC_REGISTER", FLEXSC_IOC_REGISTER);
	P("FLEXSC_IOC_WORKER", FLEXSC_IOC_WORKER);
	P("FLEXSC_IOC_WAIT", FLEXSC_IOC_WAIT);
	P("FLEXSC_IOC_UNREGISTER", FLEXSC_IOC_UNREGISTER);
	P("FLEXSC_IOC_KICK", FLEXSC_IOC_KICK);
	P("FLEXSC_IOC_WAKE", FLEXSC_IOC_WAKE);
	P("FLEXSC_IOC_INTERRUPT", FLEXSC_IOC_INTERRUPT);
	return 0;
}
"#;

/// What the C program must print, from the Rust definitions.
fn rust_side() -> BTreeMap<String, u64> {
    use std::mem::{align_of, size_of};
    let mut facts: Vec<(String, usize)> = Vec::new();
    let mut put = |k: &str, v: usize| facts.push((k.to_owned(), v));
    macro_rules! field {
        ($c:literal, $ty:ty, $f:ident) => {{
            put(concat!($c, ".", stringify!($f)), offset_of!($ty, $f));
            let v = <$ty>::default();
            put(
                concat!($c, ".", stringify!($f), ".size"),
                std::mem::size_of_val(&v.$f),
            );
        }};
    }
    put("flexsc_page_control", size_of::<PageControl>());
    put("flexsc_page_control.align", align_of::<PageControl>());
    // PageControl's words are private atomics: offsets published, each 4 bytes.
    for (name, off) in [
        ("lock", control_offsets::LOCK),
        ("posted", control_offsets::POSTED),
        ("drained", control_offsets::DRAINED),
        ("completed", control_offsets::COMPLETED),
    ] {
        put(&format!("flexsc_page_control.{name}"), off);
        put(&format!("flexsc_page_control.{name}.size"), 4);
    }
    put("flexsc_register_args", size_of::<RegisterArgs>());
    field!("flexsc_register_args", RegisterArgs, entry_size);
    field!("flexsc_register_args", RegisterArgs, page_size);
    field!("flexsc_register_args", RegisterArgs, entries_per_page);
    field!("flexsc_register_args", RegisterArgs, control_size);
    field!("flexsc_register_args", RegisterArgs, pages);
    field!("flexsc_register_args", RegisterArgs, controls);
    field!("flexsc_register_args", RegisterArgs, syscall_cpus);
    field!("flexsc_register_args", RegisterArgs, cores);
    field!("flexsc_register_args", RegisterArgs, pages_per_core);
    field!("flexsc_register_args", RegisterArgs, nr_syscall_cpus);
    field!("flexsc_register_args", RegisterArgs, flags);
    put("flexsc_worker_args", size_of::<WorkerArgs>());
    field!("flexsc_worker_args", WorkerArgs, syscall_core);
    field!("flexsc_worker_args", WorkerArgs, flags);
    put("flexsc_wait_args", size_of::<WaitArgs>());
    field!("flexsc_wait_args", WaitArgs, core);
    field!("flexsc_wait_args", WaitArgs, seq);
    field!("flexsc_wait_args", WaitArgs, timeout_ns);
    put("flexsc_slot_args", size_of::<SlotArgs>());
    field!("flexsc_slot_args", SlotArgs, core);
    field!("flexsc_slot_args", SlotArgs, slot);
    put("FLEXSC_MAX_PAGES", abi::MAX_PAGES);
    put("FLEXSC_MAX_SYSCALL_CPUS", abi::MAX_SYSCALL_CPUS);
    put("FLEXSC_IOC_REGISTER", abi::IOC_REGISTER as usize);
    put("FLEXSC_IOC_WORKER", abi::IOC_WORKER as usize);
    put("FLEXSC_IOC_WAIT", abi::IOC_WAIT as usize);
    put("FLEXSC_IOC_UNREGISTER", abi::IOC_UNREGISTER as usize);
    put("FLEXSC_IOC_KICK", abi::IOC_KICK as usize);
    put("FLEXSC_IOC_WAKE", abi::IOC_WAKE as usize);
    put("FLEXSC_IOC_INTERRUPT", abi::IOC_INTERRUPT as usize);
    facts.into_iter().map(|(k, v)| (k, v as u64)).collect()
}

#[test]
fn c_ioctl_header_matches_rust_layout() {
    let c_side = header_program::facts("abi.c", PROGRAM);
    assert_eq!(
        c_side,
        rust_side(),
        "flexsc_ioctl.h and the Rust ABI disagree"
    );
}
