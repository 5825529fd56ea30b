//! Static TLS of modules loaded while green threads exist.
//!
//! A module `dlopen`ed late whose TLS is reached with the initial-exec model (its own code, or
//! another module's) gets a slot in every thread's static TLS block, and glibc copies its initial
//! image into that slot only in the threads on its own lists (`_dl_init_static_tls`). A green
//! thread's [`TlsBlock`](super::TlsBlock) is not on them, so it would read zeros. The `dlopen`
//! wrapper (in the preload) brackets the real call with [`static_modules`] and hands the modules
//! that became static to [`init_in_green_blocks`], which copies each image into every block that
//! may lack it. Global-dynamic TLS needs nothing: glibc allocates it per thread on first use,
//! through the block's own DTV.
//!
//! Which blocks may lack an image: every block records the dlopen epoch it read just before
//! glibc initialised it ([`Entry`]); a block initialised after the real `dlopen` returned read a
//! later epoch and has the image already (and its green thread may have changed it since), so
//! it is left alone.
//!
//! The module's TLS facts come from glibc's `struct link_map` (`l_tls_initimage` ..
//! `l_tls_modid`), at offsets measured on glibc 2.36 and validated once against libc.so.6's own
//! entry (its image, sizes, static offset and module id are known from its program headers and
//! the calling thread's TCB). A mismatch disables the copy with a [`TlsError`], never a guess.

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Layout, TlsError, read_fs_base, unsupported};

/// `offsetof(struct link_map, l_tls_initimage)` on glibc 2.36 (x86_64); followed by
/// `l_tls_initimage_size`, `l_tls_blocksize`, `l_tls_align`, `l_tls_firstbyte_offset`,
/// `l_tls_offset`, `l_tls_modid`, one word each.
const L_TLS_INITIMAGE: usize = 0x450;
const L_TLS_INITIMAGE_SIZE: usize = L_TLS_INITIMAGE + 8;
const L_TLS_BLOCKSIZE: usize = L_TLS_INITIMAGE + 16;
const L_TLS_OFFSET: usize = L_TLS_INITIMAGE + 40;
const L_TLS_MODID: usize = L_TLS_INITIMAGE + 48;
/// `l_next` in the public part of `struct link_map` (link.h).
const L_NEXT: usize = 24;

/// `dladdr1`'s flag for the link map (dlfcn.h).
const RTLD_DL_LINKMAP: c_int = 2;

/// `NO_TLS_OFFSET` and `FORCED_DYNAMIC_TLS_OFFSET` (TLS_TCB_AT_TP): no static slot.
const NO_TLS_OFFSET: isize = 0;
const FORCED_DYNAMIC_TLS_OFFSET: isize = -1;

/// A module whose TLS lives in every thread's static block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticModule {
    /// Its `struct link_map` (identity while loaded).
    map: usize,
    modid: usize,
    /// Distance below the thread pointer.
    offset: usize,
    image: usize,
    image_size: usize,
    block_size: usize,
}

// ---------------------------------------------------------------------------------------------
// Blocks and epochs
// ---------------------------------------------------------------------------------------------

/// Completed `dlopen` brackets (see [`init_in_green_blocks`]).
static EPOCH: AtomicU64 = AtomicU64::new(0);
/// An [`Entry`] while glibc initialises its block.
const BUSY: u64 = u64::MAX;
/// An [`Entry`] while [`init_in_green_blocks`] copies into its block.
const COPYING: u64 = u64::MAX - 1;

/// A block's initialisation state: the epoch read before glibc last initialised it, or
/// [`BUSY`]/[`COPYING`].
#[derive(Debug)]
pub(super) struct Entry(AtomicU64);

/// Every live block: thread pointer -> its entry (boxed by the block, removed before it is
/// freed), behind a spin lock that a fork child can reset ([`reset_after_fork`]): a std mutex
/// held by another thread at the fork would never be released there.
struct Registry {
    locked: AtomicBool,
    blocks: UnsafeCell<Option<HashMap<usize, usize>>>,
}

// SAFETY: `blocks` is only reached through `Registry::lock`, which holds `locked`.
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry {
    locked: AtomicBool::new(false),
    blocks: UnsafeCell::new(None),
};

/// The locked registry; unlocked when dropped.
struct Blocks(&'static Registry);

impl Registry {
    fn lock(&'static self) -> Blocks {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Held for a copy into every block at most: yield rather than spin that long.
            flexsc_kmod::raw::sched_yield();
        }
        Blocks(self)
    }
}

impl std::ops::Deref for Blocks {
    type Target = HashMap<usize, usize>;
    fn deref(&self) -> &Self::Target {
        // SAFETY: we hold the lock; an empty map is made on first use.
        unsafe { (*self.0.blocks.get()).get_or_insert_with(HashMap::new) }
    }
}

impl std::ops::DerefMut for Blocks {
    fn deref_mut(&mut self) -> &mut Self::Target {
        // SAFETY: as for deref.
        unsafe { (*self.0.blocks.get()).get_or_insert_with(HashMap::new) }
    }
}

impl Drop for Blocks {
    fn drop(&mut self) {
        self.0.locked.store(false, Ordering::Release);
    }
}

fn blocks() -> Blocks {
    REGISTRY.lock()
}

/// In a fork child (async-signal-safe: no allocation, no lock): the parent's green threads are
/// gone and their blocks leaked with its runtime; the registry starts empty and unlocked (the
/// old map is leaked: it may have been mid-update in another thread at the fork).
pub fn reset_after_fork() {
    // SAFETY: the child has one thread, the caller; nobody else reaches the registry.
    unsafe { std::mem::forget((*REGISTRY.blocks.get()).take()) };
    REGISTRY.locked.store(false, Ordering::Release);
}

impl Entry {
    /// A new block's entry, registered for `tp` and [`BUSY`]: glibc initialises it next, then
    /// [`Entry::initialised`] with the epoch returned here.
    pub(super) fn register(tp: usize) -> (Box<Entry>, u64) {
        let entry = Box::new(Entry(AtomicU64::new(BUSY)));
        blocks().insert(tp, &raw const *entry as usize);
        (entry, EPOCH.load(Ordering::SeqCst))
    }

    /// Before glibc re-initialises the block: marks it [`BUSY`] (after a copy in progress) and
    /// returns the epoch to pass to [`Entry::initialised`].
    pub(super) fn reinitialising(&self) -> u64 {
        loop {
            let s = self.0.load(Ordering::Relaxed);
            if s == COPYING {
                std::hint::spin_loop();
                continue;
            }
            if self
                .0
                .compare_exchange_weak(s, BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return EPOCH.load(Ordering::SeqCst);
            }
        }
    }

    /// glibc finished initialising the block, having seen every module static at `epoch`.
    pub(super) fn initialised(&self, epoch: u64) {
        self.0.store(epoch, Ordering::Release);
    }

    /// The block at `tp` is being freed.
    pub(super) fn unregister(tp: usize) {
        blocks().remove(&tp);
    }
}

/// Copies the images of `modules` (static modules that appeared during one `dlopen`, which
/// has returned) into every green thread's block initialised before it returned. Returns how
/// many blocks were written.
pub fn init_in_green_blocks(modules: &[StaticModule]) -> usize {
    let epoch = EPOCH.fetch_add(1, Ordering::SeqCst) + 1;
    if modules.is_empty() {
        return 0;
    }
    let Ok(layout) = Layout::cached() else {
        return 0;
    };
    let room = layout.static_size - layout.offsets.sizeof_pthread;
    let blocks = blocks();
    let mut written = 0;
    for (&tp, &entry) in blocks.iter() {
        // SAFETY: an entry stays allocated while registered, and we hold the registry lock.
        let state = unsafe { &(*(entry as *const Entry)).0 };
        let seen = loop {
            let s = state.load(Ordering::Acquire);
            if s == BUSY {
                // glibc is initialising it on another kernel thread (never this one: the
                // runtime does so on carriers, between green threads).
                std::hint::spin_loop();
                continue;
            }
            if s >= epoch
                || state
                    .compare_exchange_weak(s, COPYING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break s;
            }
        };
        if seen >= epoch {
            continue;
        }
        for m in modules {
            if m.offset < m.block_size || m.offset > room || m.image_size > m.block_size {
                continue; // checked by static_modules; a torn read is skipped, not followed
            }
            let dest = tp - m.offset;
            // SAFETY: dest..dest + block_size lies in the block's static TLS below tp (checked
            // just above against the validated geometry); the image is the loaded module's
            // PT_TLS data (it stays loaded: the dlopen that loaded it has just returned to our
            // caller, which holds its handle). The block is not being initialised (COPYING
            // holds reuse off); a green thread running on it meanwhile cannot reach the module
            // before the dlopen that loaded it returns to its caller.
            unsafe {
                std::ptr::copy_nonoverlapping(m.image as *const u8, dest as *mut u8, m.image_size);
                std::ptr::write_bytes(
                    (dest + m.image_size) as *mut u8,
                    0,
                    m.block_size - m.image_size,
                );
            }
        }
        state.store(seen, Ordering::Release);
        written += 1;
    }
    written
}

// ---------------------------------------------------------------------------------------------
// Modules
// ---------------------------------------------------------------------------------------------

/// The link-map offsets, validated once.
static CHECKED: OnceLock<Result<(), TlsError>> = OnceLock::new();

/// The modules loaded now whose TLS is in static TLS, read under the loader's list lock.
/// Call it before and after a `dlopen`: the difference is what [`init_in_green_blocks`] needs.
pub fn static_modules() -> Result<Vec<StaticModule>, TlsError> {
    CHECKED.get_or_init(check_link_map).clone()?;
    let layout = Layout::cached()?;
    let room = layout.static_size - layout.offsets.sizeof_pthread;
    let mut out = Vec::new();
    with_load_lock(|| {
        let mut map = first_link_map();
        while map != 0 {
            // SAFETY: a link_map on the base namespace's list, which the loader does not
            // change while we hold its write lock (with_load_lock); the offsets were validated.
            let m = unsafe { read_module(map) };
            if m.modid != 0
                && m.block_size != 0
                && m.offset >= m.block_size
                && m.offset <= room
                && m.image_size <= m.block_size
            {
                out.push(m);
            }
            // SAFETY: as above.
            map = unsafe { word(map, L_NEXT) };
        }
    });
    Ok(out)
}

/// The modules in `after` that are not in `before`.
pub fn new_static_modules(before: &[StaticModule], after: &[StaticModule]) -> Vec<StaticModule> {
    after
        .iter()
        .filter(|m| !before.contains(m))
        .copied()
        .collect()
}

/// # Safety
/// `map` must be a live `struct link_map` of glibc 2.36 with the validated layout.
unsafe fn read_module(map: usize) -> StaticModule {
    // SAFETY: the caller's contract.
    unsafe {
        let offset = word(map, L_TLS_OFFSET) as isize;
        StaticModule {
            map,
            modid: word(map, L_TLS_MODID),
            offset: if offset == NO_TLS_OFFSET || offset == FORCED_DYNAMIC_TLS_OFFSET {
                0
            } else {
                offset as usize
            },
            image: word(map, L_TLS_INITIMAGE),
            image_size: word(map, L_TLS_INITIMAGE_SIZE),
            block_size: word(map, L_TLS_BLOCKSIZE),
        }
    }
}

/// # Safety
/// `base + off` must be a readable, aligned word.
unsafe fn word(base: usize, off: usize) -> usize {
    // SAFETY: the caller's contract.
    unsafe { ((base + off) as *const usize).read() }
}

/// `_r_debug.r_map`: the base namespace's first link map (the executable).
fn first_link_map() -> usize {
    // Looked up once: a successful dlsym clears the caller's pending dlerror(), which a
    // failed dlopen just set.
    static R_DEBUG: OnceLock<usize> = OnceLock::new();
    // SAFETY: a lookup of ld.so's `_r_debug`.
    let r = *R_DEBUG
        .get_or_init(|| unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_r_debug".as_ptr()) } as usize);
    if r == 0 {
        return 0;
    }
    // SAFETY: `_r_debug` is `struct r_debug { int r_version; struct link_map *r_map; .. }`.
    unsafe { word(r, 8) }
}

/// Runs `f` inside a `dl_iterate_phdr` callback: while the loader's list write lock is held, so
/// no module is added or removed meanwhile.
fn with_load_lock(f: impl FnOnce()) {
    unsafe extern "C" fn once(
        _info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `data` is the `Option<&mut dyn FnMut()>` below, alive for the call.
        let f = unsafe { &mut *data.cast::<Option<&mut dyn FnMut()>>() };
        if let Some(f) = f.take() {
            f();
        }
        1
    }
    let mut f = Some(f);
    let mut call = || {
        if let Some(f) = f.take() {
            f();
        }
    };
    let mut data: Option<&mut dyn FnMut()> = Some(&mut call);
    // SAFETY: `once` matches the callback type and uses `data` only during the call.
    unsafe { libc::dl_iterate_phdr(Some(once), (&raw mut data).cast()) };
}

/// Validates the link-map offsets against libc.so.6's entry: its image and sizes from its
/// PT_TLS header, its module id from `dl_iterate_phdr`, its static offset from the calling
/// thread's TCB (libc's TLS is always static).
fn check_link_map() -> Result<(), TlsError> {
    let layout = Layout::cached()?;
    let inside = libc::gnu_get_libc_version as *const () as usize;
    // Not found: all zeros, refused below (module id 0).
    let found = super::libc_tls().unwrap_or_default();
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::uninit();
    let mut map: *mut c_void = std::ptr::null_mut();
    // SAFETY: dladdr1 with RTLD_DL_LINKMAP stores the containing object's link_map in `map`.
    let ok = unsafe {
        libc::dladdr1(
            inside as *const c_void,
            info.as_mut_ptr(),
            &raw mut map,
            RTLD_DL_LINKMAP,
        )
    };
    if ok == 0 || map.is_null() || found.modid == 0 {
        return Err(unsupported(
            "link_map",
            "libc.so.6's link map or TLS module not found",
        ));
    }
    let tp = read_fs_base();
    let offset = tp.wrapping_sub(found.data);
    // SAFETY: libc's link_map is live for the whole process; the words read lie within glibc
    // 2.36's struct link_map (about 1.2 KiB), whose version was checked by Layout.
    let m = unsafe { read_module(map as usize) };
    let want = StaticModule {
        map: map as usize,
        modid: found.modid,
        offset,
        image: found.image,
        image_size: found.filesz,
        block_size: found.memsz,
    };
    if m != want || offset as isize != -layout.libc_tls {
        return Err(unsupported(
            "link_map",
            format!("libc.so.6's link map holds {m:x?}, expected {want:x?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_static_modules_include_libc_as_validated() {
        Layout::validate().unwrap();
        let mods = static_modules().unwrap_or_else(|e| panic!("{e}"));
        let l = Layout::cached().unwrap();
        let libc = mods
            .iter()
            .find(|m| m.offset as isize == -l.libc_tls)
            .expect("libc.so.6's TLS is static");
        assert_eq!(libc.block_size, l.libc_tls_len);
        assert!(new_static_modules(&mods, &mods).is_empty());
        assert_eq!(new_static_modules(&[], &mods).len(), mods.len());
    }
}
