//! POSIX absolute deadlines (a `struct timespec` on `CLOCK_REALTIME` or `CLOCK_MONOTONIC`) as
//! the monotonic [`Instant`] the waits take.
//!
//! A deadline is converted when a call is about to block, by reading its clock once: a later step
//! of the realtime clock (settimeofday, an NTP step) does not move a wait already begun, as it
//! would with glibc's `FUTEX_CLOCK_REALTIME` waits.

use std::time::{Duration, Instant};

use libc::{CLOCK_MONOTONIC, CLOCK_REALTIME, EINVAL, ETIMEDOUT, c_int, clockid_t, timespec};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// When a blocking call gives up.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Timeout {
    /// Never (the untimed calls).
    Never,
    /// At the absolute time `abstime` on `clock` (`None`: a null pointer was passed).
    At {
        clock: clockid_t,
        abstime: Option<timespec>,
    },
}

impl Timeout {
    /// A timeout at `*abstime` on `clock`. Nothing is checked yet: POSIX has a call that need not
    /// block succeed whatever its deadline.
    ///
    /// # Safety
    /// `abstime` is null or valid for reads.
    pub(crate) unsafe fn at(clock: clockid_t, abstime: *const timespec) -> Self {
        // SAFETY: null or valid, by the caller's contract.
        let abstime = unsafe { abstime.as_ref() }.copied();
        Self::At { clock, abstime }
    }

    /// [`Timeout::at`] for the `*_clock*` calls, which refuse any clock but `CLOCK_REALTIME` and
    /// `CLOCK_MONOTONIC` with `EINVAL` at once, even when they need not block.
    ///
    /// # Safety
    /// As [`Timeout::at`].
    pub(crate) unsafe fn on_clock(
        clock: clockid_t,
        abstime: *const timespec,
    ) -> Result<Self, c_int> {
        if !valid_clock(clock) {
            return Err(EINVAL);
        }
        // SAFETY: the caller's contract.
        Ok(unsafe { Self::at(clock, abstime) })
    }

    /// The deadline: `Ok(None)` for none (or one too far away to represent); `EINVAL` for a
    /// clock other than `CLOCK_REALTIME` and `CLOCK_MONOTONIC`, a null time or a `tv_nsec`
    /// outside `0..1e9`; `ETIMEDOUT` if it has passed.
    pub(crate) fn deadline(self) -> Result<Option<Instant>, c_int> {
        let Self::At { clock, abstime } = self else {
            return Ok(None);
        };
        if !valid_clock(clock) {
            return Err(EINVAL);
        }
        let t = abstime.ok_or(EINVAL)?;
        if !(0..NANOS_PER_SEC).contains(&t.tv_nsec) {
            return Err(EINVAL);
        }
        if t.tv_sec < 0 {
            return Err(ETIMEDOUT);
        }
        let mut now = timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes the timespec we own; the clock id is valid (checked above).
        unsafe { libc::clock_gettime(clock, &mut now) };
        let anchor = Instant::now();
        let per_sec = i128::from(NANOS_PER_SEC);
        let left = (i128::from(t.tv_sec) - i128::from(now.tv_sec)) * per_sec
            + i128::from(t.tv_nsec - now.tv_nsec);
        if left <= 0 {
            return Err(ETIMEDOUT);
        }
        let left = Duration::new((left / per_sec) as u64, (left % per_sec) as u32);
        Ok(anchor.checked_add(left))
    }
}

/// Whether a deadline may be on `clock`: `CLOCK_REALTIME` or `CLOCK_MONOTONIC`, as in glibc.
pub(crate) fn valid_clock(clock: clockid_t) -> bool {
    clock == CLOCK_REALTIME || clock == CLOCK_MONOTONIC
}
