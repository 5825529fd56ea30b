//! Per-green-thread floating-point control state: the SSE control/status register (MXCSR) and
//! the x87 control word (FCW).
//!
//! Both are per kernel thread, so green threads sharing a carrier share them unless the switch
//! saves and restores them (corosensei does not). Without this, `fesetround` or
//! `feenableexcept` in one green thread changes the rounding mode or the trapped exceptions of
//! every other green thread on the same carrier. The switch calls [`FpuControl::save`] for the
//! thread going out and [`FpuControl::restore`] for the one coming in (two pairs of instructions,
//! a few nanoseconds).
//!
//! Not covered: the x87 status word and tag word (only `fldenv`/`frstor` could restore them, and
//! the x87 stack is empty across a call anyway), so x87 exception flags raised by one green thread
//! remain visible to the next (`fetestexcept` ORs them with MXCSR's). MXCSR's own exception flags
//! are saved and restored.
//!
//! Rust code itself assumes the default floating-point environment: only foreign code (C, C++)
//! should run under a non-default rounding mode restored here.

use std::arch::asm;

/// MXCSR bits that may be set: bits 16..32 are reserved and `ldmxcsr` faults (#GP) on them.
const MXCSR_WRITABLE: u32 = 0xffff;

/// A green thread's floating-point control registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpuControl {
    /// SSE control and status: rounding mode (bits 13-14), exception masks (7-12), flush-to-zero
    /// (15), denormals-are-zero (6), sticky exception flags (0-5).
    pub mxcsr: u32,
    /// x87 control word: rounding (bits 10-11), precision (8-9), exception masks (0-5).
    pub fcw: u16,
}

impl FpuControl {
    /// The state a new thread starts with on x86_64 Linux: round to nearest, all exceptions
    /// masked, x87 at 64-bit precision (MXCSR 0x1f80, FCW 0x037f).
    pub const DEFAULT: Self = Self {
        mxcsr: 0x1f80,
        fcw: 0x037f,
    };

    /// Reads the calling thread's MXCSR and x87 control word.
    #[inline]
    pub fn save() -> Self {
        let mut mxcsr = 0u32;
        let mut fcw = 0u16;
        // SAFETY: `stmxcsr` and `fnstcw` store 4 and 2 bytes into the two locals the pointers
        // refer to; they change no register state (fnstcw does not wait for pending exceptions).
        unsafe {
            asm!(
                "stmxcsr [{m}]",
                "fnstcw [{c}]",
                m = in(reg) &mut mxcsr,
                c = in(reg) &mut fcw,
                options(nostack, preserves_flags),
            )
        };
        Self { mxcsr, fcw }
    }

    /// Loads this state into the calling thread's MXCSR and x87 control word. MXCSR's reserved
    /// bits (16 and up) are ignored rather than faulting.
    #[inline]
    pub fn restore(self) {
        let mxcsr = self.mxcsr & MXCSR_WRITABLE;
        let fcw = self.fcw;
        // SAFETY: `ldmxcsr` and `fldcw` read 4 and 2 bytes from the two locals; the reserved MXCSR
        // bits are cleared above, so ldmxcsr cannot fault, and fldcw accepts any value. Only the
        // floating-point environment changes, which Rust code does not depend on here (see the
        // module documentation).
        unsafe {
            asm!(
                "ldmxcsr [{m}]",
                "fldcw [{c}]",
                m = in(reg) &mxcsr,
                c = in(reg) &fcw,
                options(nostack, preserves_flags, readonly),
            )
        };
    }

    /// The SSE rounding mode: 0 nearest, 1 down, 2 up, 3 toward zero.
    pub fn sse_rounding(self) -> u32 {
        (self.mxcsr >> 13) & 3
    }

    /// The x87 rounding mode, encoded as for [`FpuControl::sse_rounding`].
    pub fn x87_rounding(self) -> u16 {
        (self.fcw >> 10) & 3
    }
}

impl Default for FpuControl {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_restore_round_trips_and_isolates_two_states() {
        let carrier = FpuControl::save();
        // Green thread A: round up, x87 too (what fesetround(FE_UPWARD) does).
        let a = FpuControl {
            mxcsr: (carrier.mxcsr & !(3 << 13)) | (2 << 13),
            fcw: (carrier.fcw & !(3 << 10)) | (2 << 10),
        };
        // Green thread B: toward zero, flush-to-zero on.
        let b = FpuControl {
            mxcsr: (carrier.mxcsr & !(3 << 13)) | (3 << 13) | (1 << 15),
            fcw: (carrier.fcw & !(3 << 10)) | (3 << 10),
        };
        a.restore();
        let seen_a = FpuControl::save();
        b.restore();
        let seen_b = FpuControl::save();
        a.restore();
        let seen_a_again = FpuControl::save();
        carrier.restore();
        let seen_carrier = FpuControl::save();

        assert_eq!(seen_a, a);
        assert_eq!((seen_a.sse_rounding(), seen_a.x87_rounding()), (2, 2));
        assert_eq!(seen_b, b);
        assert_eq!((seen_b.sse_rounding(), seen_b.x87_rounding()), (3, 3));
        assert_eq!(seen_a_again, a, "B's state did not leak into A");
        assert_eq!(seen_carrier, carrier, "the carrier's state is back");
    }

    #[test]
    fn reserved_mxcsr_bits_are_ignored_not_faulting() {
        let carrier = FpuControl::save();
        FpuControl {
            mxcsr: 0xffff_0000 | FpuControl::DEFAULT.mxcsr,
            fcw: FpuControl::DEFAULT.fcw,
        }
        .restore();
        let seen = FpuControl::save();
        carrier.restore();
        assert_eq!(seen, FpuControl::DEFAULT);
    }

    #[test]
    fn a_new_thread_starts_from_the_default() {
        let seen = std::thread::spawn(FpuControl::save).join().unwrap();
        // Control bits only: the sticky exception flags (0-5) depend on what the thread computed.
        assert_eq!(seen.mxcsr & !0x3f, FpuControl::DEFAULT.mxcsr);
        assert_eq!(seen.fcw, FpuControl::DEFAULT.fcw);
    }
}
