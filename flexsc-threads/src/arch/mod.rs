//! The machine-level context switch between green threads (and between a carrier and its green
//! threads): save the callee-saved registers on the current stack, store the stack pointer, load
//! another, pop its registers.
//!
//! Symmetric, unlike corosensei's coroutines: any context may switch to any other, so a green
//! thread that yields or waits can hand its carrier straight to the next ready green thread (one
//! switch, not two through the carrier).
//!
//! This is one of the crate's few `unsafe` modules: the switch trusts the stack pointers it is
//! given.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_64::{adopt, enter, hand_over, init, leave};
