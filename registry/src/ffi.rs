//! The unsafe edge of dynamic plugins: opening a library, reading its C declaration, and
//! calling its register function. The order is the safety argument: the declaration is read
//! field by field through raw pointers (its layout version first), and the register function —
//! the first Rust-ABI code of the library that runs — is only called when the library's
//! fingerprint and layout hash equal this build's. Libraries are never closed: the code of the
//! plugins they registered must stay mapped for the life of the process.
//!
//! A library also carries its own copy of candle, whose tensor ids come from a global counter
//! that starts at 1 in every copy. Autograd keys gradients by id, so a loss from a library
//! computing on pulse's tensors (or the reverse) would mix two tensors under one id and get
//! wrong gradients or a shape error. [`move_tensor_counter`] starts each library's counter in a
//! range of its own (library `i` at `i · 2^48`), so ids never meet.

#![allow(unsafe_code)]

use libloading::Library;
use pulse_api::abi::{
    PluginDeclaration, RegisterFn, DECLARATION_VERSION, ENTRY_SYMBOL, FINGERPRINT, HOST_ALLOCATOR,
    LAYOUT,
};
use pulse_api::Registrar;
use std::error::Error as _;
use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Every library opened by this process, by canonical path; kept open until the process ends.
static OPEN: Mutex<Vec<(PathBuf, &'static Library)>> = Mutex::new(Vec::new());

/// Width of each library's range of tensor ids (the host's ids stay below it).
const TENSOR_ID_RANGE: usize = 1 << 48;

/// The text of a libloading error with the system's own message (`dlerror`), not just
/// "dlopen failed".
fn dl_message(e: &libloading::Error) -> String {
    match e.source() {
        Some(src) => src.to_string(),
        None => e.to_string(),
    }
}

/// Opens (or finds already open) the library at `canonical`, and its 1-based number in this
/// process. `Err` carries `dlerror`'s text.
pub(crate) fn open(canonical: &Path) -> Result<(&'static Library, usize), String> {
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(i) = open.iter().position(|(p, _)| p == canonical) {
        return Ok((open[i].1, i + 1));
    }
    // SAFETY: opening a library runs its initialisers. The file passed the ELF pre-flight
    // check (so mapping it cannot fault on a short file); a Rust cdylib's initialisers only
    // record argc/argv. RTLD_NOW reports unresolved symbols here rather than crashing at the
    // first call; RTLD_LOCAL keeps its symbols from interposing on other libraries'.
    #[cfg(unix)]
    let lib = unsafe {
        use libloading::os::unix::{Library as UnixLibrary, RTLD_LOCAL, RTLD_NOW};
        UnixLibrary::open(Some(canonical), RTLD_NOW | RTLD_LOCAL).map(Library::from)
    };
    // SAFETY: as above.
    #[cfg(not(unix))]
    let lib = unsafe { Library::new(canonical) };
    let lib: &'static Library = Box::leak(Box::new(lib.map_err(|e| dl_message(&e))?));
    open.push((canonical.to_path_buf(), lib));
    Ok((lib, open.len()))
}

type Entry = unsafe extern "C" fn() -> *const PluginDeclaration;

/// Starts library number `index`'s tensor id counter at `index · 2^48` (never lowering it).
/// `entry` and `counter` are the link-time addresses of the entry point and of the counter in
/// the library's symbol table; the counter's run-time address is the entry point's plus their
/// difference. Only called for a library whose fingerprint matched (same candle).
pub(crate) fn move_tensor_counter(
    lib: &'static Library,
    index: usize,
    entry: u64,
    counter: u64,
) -> Result<(), String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let start = index
        .checked_mul(TENSOR_ID_RANGE)
        .ok_or_else(|| "too many plugin libraries".to_string())?;
    // SAFETY: the entry symbol exists (its declaration was read). `counter` was checked by
    // `elf::tensor_counter` to be an aligned 8-byte object inside a writable loaded segment of
    // the same file, and it is candle's `AtomicUsize` (the fingerprint pins candle's version),
    // so the computed address is a live, aligned AtomicUsize in the mapped library.
    unsafe {
        let f: Entry = *lib
            .get::<Entry>(ENTRY_SYMBOL.as_bytes())
            .map_err(|e| dl_message(&e))?;
        let base = (f as usize).wrapping_sub(entry as usize);
        let addr = base.wrapping_add(counter as usize);
        (*(addr as *const AtomicUsize)).fetch_max(start, Ordering::Relaxed);
    }
    Ok(())
}

/// What a library declares about itself, copied out of its C declaration.
#[derive(Debug, Clone)]
pub(crate) struct Declaration {
    pub version: u32,
    pub fingerprint: String,
    pub layout: u64,
    pub name: String,
    pub plugin_version: String,
    register: Option<RegisterFn>,
}

impl Declaration {
    /// Whether the library was built by the same compiler against the same contract.
    pub fn matches_host(&self) -> bool {
        self.version == DECLARATION_VERSION
            && self.fingerprint == FINGERPRINT
            && self.layout == LAYOUT
    }
}

/// Why a declaration could not be read.
#[derive(Debug)]
pub(crate) enum DeclarationError {
    /// No entry symbol; `dlerror`'s text.
    NoEntry(String),
    Null,
    /// A declaration layout this pulse cannot read.
    Version(u32),
}

/// Reads a copy of a C string, if the pointer is not null.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that outlives the call.
unsafe fn c_string(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Calls the library's entry point and copies its declaration.
pub(crate) fn declaration(lib: &'static Library) -> Result<Declaration, DeclarationError> {
    // SAFETY: the symbol is looked up with the type every `export_plugin!` gives it; the
    // declaration's C layout is frozen at each DECLARATION_VERSION.
    unsafe {
        let entry = lib
            .get::<Entry>(ENTRY_SYMBOL.as_bytes())
            .map_err(|e| DeclarationError::NoEntry(dl_message(&e)))?;
        let decl = entry();
        if decl.is_null() {
            return Err(DeclarationError::Null);
        }
        // The layout version is read alone first: the other fields are only meaningful for
        // a version this build knows. Fields are read through raw pointers, never through a
        // reference to the whole struct, since a foreign library's `register` may be invalid.
        let version = std::ptr::addr_of!((*decl).declaration_version).read();
        if version != DECLARATION_VERSION {
            return Err(DeclarationError::Version(version));
        }
        Ok(Declaration {
            version,
            layout: std::ptr::addr_of!((*decl).layout).read(),
            fingerprint: c_string(std::ptr::addr_of!((*decl).fingerprint).read()),
            name: c_string(std::ptr::addr_of!((*decl).name).read()),
            plugin_version: c_string(std::ptr::addr_of!((*decl).version).read()),
            register: std::ptr::addr_of!((*decl).register).read(),
        })
    }
}

/// Runs the library's register function into `registrar`; `None` when the declaration does
/// not match this build (then nothing is called) or has no register function, else the
/// function's status code.
pub(crate) fn register(decl: &Declaration, registrar: &mut Registrar) -> Option<i32> {
    if !decl.matches_host() {
        return None;
    }
    let register = decl.register?;
    let registrar: *mut Registrar = registrar;
    // SAFETY: the fingerprint and layout hash match, so the library was compiled by this
    // compiler against this pulse-api source: `Registrar` has the same layout on both sides.
    // The allocator table is 'static, and the registrar outlives the call.
    Some(unsafe { register(&HOST_ALLOCATOR, registrar.cast()) })
}
