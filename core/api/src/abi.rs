//! The dynamic-plugin ABI. Rust has no stable ABI, so a plugin library may only be used by a
//! pulse whose compiler, `pulse-api` source and boundary libraries are the ones it was built
//! with. A plugin crate calls [`export_plugin!`](crate::export_plugin) once; that exports one C
//! function, [`ENTRY_SYMBOL`], returning a `#[repr(C)]` [`PluginDeclaration`] made only of C
//! types: its layout version, the [`FINGERPRINT`] and [`LAYOUT`] it was compiled with, its name
//! and version, and the register function. The host compares the fingerprint first and calls
//! nothing else in a library whose fingerprint differs.
//!
//! A plugin library carries its own copy of std, so the macro also makes the host's allocator
//! the plugin's global allocator (installed before `register` runs): memory then moves freely
//! between host and plugin, whichever side frees it.
//!
//! This is the one module of pulse-api with `unsafe` code: C strings and function pointers in
//! the declaration, and the forwarding allocator.

#![allow(unsafe_code)]

use crate::plugin::Registrar;
use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

/// Version of [`PluginDeclaration`]'s own layout; read before any other field.
pub const DECLARATION_VERSION: u32 = 1;

/// Name of the C function every plugin library exports.
pub const ENTRY_SYMBOL: &str = "pulse_plugin_declaration";

/// Compiler, pulse-api version and source hash, target triple and the locked versions of the
/// libraries whose types cross the boundary, as computed by `build.rs`.
pub const FINGERPRINT: &str = env!("PULSE_API_FINGERPRINT");

/// [`FINGERPRINT`] as a C string.
pub const FINGERPRINT_C: &str = concat!(env!("PULSE_API_FINGERPRINT"), "\0");

/// Hash of pulse-api's source files (part of [`FINGERPRINT`]).
pub const SURFACE: &str = env!("PULSE_API_SURFACE");

/// Sizes and alignments of the types that cross the boundary, hashed. Catches what the version
/// numbers cannot: a dependency feature that changes a layout (e.g. `serde_json`'s
/// `preserve_order` turning its map into another type).
pub const LAYOUT: u64 = layout_hash();

/// Returned by a plugin's register function.
pub const REGISTER_OK: i32 = 0;
/// The plugin's `register` panicked (its message went to stderr).
pub const REGISTER_PANICKED: i32 = 1;
/// The host passed null pointers.
pub const REGISTER_BAD_ARGUMENTS: i32 = 2;

/// The plugin side of `register`: installs the host allocator, then adds the plugins.
pub type RegisterFn =
    unsafe extern "C" fn(host: *const HostAllocator, registrar: *mut c_void) -> i32;

/// What [`ENTRY_SYMBOL`] returns. Append-only: fields are never reordered or retyped, and a
/// change bumps [`DECLARATION_VERSION`].
#[repr(C)]
#[derive(Debug)]
pub struct PluginDeclaration {
    pub declaration_version: u32,
    /// [`LAYOUT`] of the plugin's build.
    pub layout: u64,
    /// NUL-terminated [`FINGERPRINT`] of the plugin's build.
    pub fingerprint: *const c_char,
    /// NUL-terminated package name and version of the plugin crate.
    pub name: *const c_char,
    pub version: *const c_char,
    /// Only called by a host whose fingerprint and layout equal the two above.
    pub register: Option<RegisterFn>,
}

// SAFETY: the declaration is immutable and its pointers point to 'static C strings.
unsafe impl Sync for PluginDeclaration {}

/// The host's global allocator as C function pointers (size, align as in [`Layout`]).
#[repr(C)]
#[derive(Debug)]
pub struct HostAllocator {
    pub alloc: unsafe extern "C" fn(size: usize, align: usize) -> *mut u8,
    pub alloc_zeroed: unsafe extern "C" fn(size: usize, align: usize) -> *mut u8,
    pub dealloc: unsafe extern "C" fn(ptr: *mut u8, size: usize, align: usize),
    pub realloc:
        unsafe extern "C" fn(ptr: *mut u8, size: usize, align: usize, new_size: usize) -> *mut u8,
}

// Compiled into the host, these reach whatever `#[global_allocator]` the host binary has.
// SAFETY (all four): `GlobalAlloc`'s contract is passed through unchanged — the plugin's
// allocator only calls them with a size and alignment that came from a valid `Layout`.
unsafe extern "C" fn host_alloc(size: usize, align: usize) -> *mut u8 {
    unsafe { std::alloc::alloc(Layout::from_size_align_unchecked(size, align)) }
}
unsafe extern "C" fn host_alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    unsafe { std::alloc::alloc_zeroed(Layout::from_size_align_unchecked(size, align)) }
}
unsafe extern "C" fn host_dealloc(ptr: *mut u8, size: usize, align: usize) {
    unsafe { std::alloc::dealloc(ptr, Layout::from_size_align_unchecked(size, align)) }
}
unsafe extern "C" fn host_realloc(ptr: *mut u8, size: usize, align: usize, new: usize) -> *mut u8 {
    unsafe { std::alloc::realloc(ptr, Layout::from_size_align_unchecked(size, align), new) }
}

/// The allocator a host hands to every plugin it loads.
pub static HOST_ALLOCATOR: HostAllocator = HostAllocator {
    alloc: host_alloc,
    alloc_zeroed: host_alloc_zeroed,
    dealloc: host_dealloc,
    realloc: host_realloc,
};

/// A plugin library's global allocator: the host's once installed, the system's before (only
/// the macro's own code runs before `register`, and it does not allocate).
#[derive(Debug)]
pub struct PluginAllocator {
    host: AtomicPtr<HostAllocator>,
}

impl PluginAllocator {
    #[allow(clippy::new_without_default)] // used in a `static`, which needs a const fn
    pub const fn new() -> Self {
        Self {
            host: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    fn host(&self) -> Option<&HostAllocator> {
        let p = self.host.load(Ordering::Acquire);
        // SAFETY: only ever set from a `&'static HostAllocator` (see `register_entry`).
        unsafe { p.as_ref() }
    }
}

// SAFETY: every method forwards to an allocator that upholds `GlobalAlloc` (the host's global
// allocator, or `System`), with the same arguments.
unsafe impl GlobalAlloc for PluginAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.host() {
            Some(h) => unsafe { (h.alloc)(layout.size(), layout.align()) },
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.host() {
            Some(h) => unsafe { (h.alloc_zeroed)(layout.size(), layout.align()) },
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.host() {
            Some(h) => unsafe { (h.dealloc)(ptr, layout.size(), layout.align()) },
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match self.host() {
            Some(h) => unsafe { (h.realloc)(ptr, layout.size(), layout.align(), new_size) },
            None => unsafe { System.realloc(ptr, layout, new_size) },
        }
    }
}

/// The body of the register function [`export_plugin!`](crate::export_plugin) generates.
///
/// # Safety
/// `host` must be null or point to a `'static` [`HostAllocator`]; `registrar` must be null or
/// point to a live [`Registrar`] of the same build (the host guarantees both by checking the
/// fingerprint first).
#[doc(hidden)]
pub unsafe fn register_entry(
    allocator: &PluginAllocator,
    host: *const HostAllocator,
    registrar: *mut c_void,
    register: fn(&mut Registrar),
) -> i32 {
    if host.is_null() || registrar.is_null() {
        return REGISTER_BAD_ARGUMENTS;
    }
    allocator.host.store(host.cast_mut(), Ordering::Release);
    // SAFETY: non-null, and a `*mut Registrar` cast to `c_void` by the host (see above).
    let r = unsafe { &mut *registrar.cast::<Registrar>() };
    // A panic must not unwind into the host: its std cannot catch this copy's panics.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| register(r))) {
        Ok(()) => REGISTER_OK,
        Err(_) => REGISTER_PANICKED,
    }
}

/// Exports a plugin crate's `register` function as a dynamic plugin: defines the C entry point
/// [`ENTRY_SYMBOL`](crate::abi::ENTRY_SYMBOL) and the forwarding global allocator. Use it once,
/// in a crate with `crate-type = ["cdylib"]` (plus `"rlib"` to unit-test it), which must not
/// define another `#[global_allocator]`:
///
/// ```ignore
/// pub fn register(r: &mut pulse_api::Registrar) { r.loss::<MyConfig>(|c| Ok(Arc::new(My(c)))); }
/// pulse_api::export_plugin!(register);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($register:path) => {
        #[global_allocator]
        static __PULSE_PLUGIN_ALLOCATOR: $crate::abi::PluginAllocator =
            $crate::abi::PluginAllocator::new();

        #[allow(unsafe_code)]
        unsafe extern "C" fn __pulse_plugin_register(
            host: *const $crate::abi::HostAllocator,
            registrar: *mut ::core::ffi::c_void,
        ) -> i32 {
            // SAFETY: the host calls this only after checking the fingerprint, with its
            // 'static allocator and a live registrar (see `register_entry`).
            unsafe {
                $crate::abi::register_entry(&__PULSE_PLUGIN_ALLOCATOR, host, registrar, $register)
            }
        }

        static __PULSE_PLUGIN_DECLARATION: $crate::abi::PluginDeclaration =
            $crate::abi::PluginDeclaration {
                declaration_version: $crate::abi::DECLARATION_VERSION,
                layout: $crate::abi::LAYOUT,
                fingerprint: $crate::abi::FINGERPRINT_C.as_ptr().cast(),
                name: concat!(env!("CARGO_PKG_NAME"), "\0").as_ptr().cast(),
                version: concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast(),
                register: ::core::option::Option::Some(__pulse_plugin_register),
            };

        /// The dynamic-plugin entry point: the declaration the host checks before anything else.
        // SAFETY: exporting an unmangled symbol; its name is reserved for pulse plugins.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn pulse_plugin_declaration() -> *const $crate::abi::PluginDeclaration {
            &__PULSE_PLUGIN_DECLARATION
        }
    };
}

/// `(size, align)` of `T`.
const fn probe<T>() -> [usize; 2] {
    [std::mem::size_of::<T>(), std::mem::align_of::<T>()]
}

const fn layout_hash() -> u64 {
    use crate::{config, data, dataset, error, family, loss, plugin, recommender, tracker};
    let probes: [[usize; 2]; 24] = [
        probe::<candle_core::Tensor>(),
        probe::<candle_core::Error>(),
        probe::<candle_core::Device>(),
        probe::<polars::frame::DataFrame>(),
        probe::<polars::error::PolarsError>(),
        probe::<serde_json::Value>(),
        probe::<serde_json::Map<String, serde_json::Value>>(),
        probe::<String>(),
        probe::<Vec<u32>>(),
        probe::<std::sync::Arc<dyn loss::Loss>>(),
        probe::<Box<dyn recommender::Recommender>>(),
        probe::<config::ConfigError>(),
        probe::<error::PluginError>(),
        probe::<family::PluginInfo>(),
        probe::<plugin::Registrar>(),
        probe::<plugin::Registration>(),
        probe::<data::RawDataset>(),
        probe::<data::SplitData>(),
        probe::<dataset::LoadContext>(),
        probe::<recommender::TrainConfig>(),
        probe::<recommender::EpochContext<'static>>(),
        probe::<loss::LossSpec>(),
        probe::<tracker::Metric>(),
        probe::<crate::rng::Rng>(),
    ];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < probes.len() {
        let mut j = 0;
        while j < 2 {
            h ^= probes[i][j] as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
            j += 1;
        }
        i += 1;
    }
    h
}

/// This build's fingerprint as shown to users: [`FINGERPRINT`] and [`LAYOUT`].
pub fn host_fingerprint() -> String {
    show(FINGERPRINT, LAYOUT)
}

/// How a fingerprint and layout hash are shown: `… | layout 0123456789abcdef`.
pub fn show(fingerprint: &str, layout: u64) -> String {
    format!("{fingerprint} | layout {layout:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_names_compiler_contract_target_and_boundary_crates() {
        let fp = host_fingerprint();
        for part in [
            "rustc ",
            &format!("pulse-api {} surface {SURFACE}", crate::API_VERSION),
            "candle-core 0.",
            "polars 0.",
            "serde_json 1.",
            "| layout ",
        ] {
            assert!(fp.contains(part), "{fp} lacks {part}");
        }
        assert_eq!(SURFACE.len(), 16);
        assert!(FINGERPRINT_C.ends_with('\0') && !FINGERPRINT.contains('\0'));
    }

    /// The forwarding allocator hands every call to the installed host allocator.
    #[test]
    fn plugin_allocator_forwards_to_the_host() {
        let a = PluginAllocator::new();
        let layout = Layout::from_size_align(64, 16).unwrap();
        // SAFETY: a valid layout; each block is freed by the allocator that made it.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null() && (p as usize).is_multiple_of(16));
            a.dealloc(p, layout);
            a.host.store(
                (&HOST_ALLOCATOR as *const HostAllocator).cast_mut(),
                Ordering::Release,
            );
            let p = a.alloc_zeroed(layout);
            assert_eq!(std::slice::from_raw_parts(p, 64), &[0u8; 64][..]);
            let q = a.realloc(p, layout, 4096);
            assert!(!q.is_null());
            a.dealloc(q, Layout::from_size_align(4096, 16).unwrap());
        }
    }
}
