//! Pre-flight check of a library file before `dlopen`. glibc maps a truncated library's
//! segments without comparing them with the file size and then dies with SIGBUS when it reads
//! past the end (seen with glibc 2.36 on a half-copied `.so`), so a truncated file must be
//! refused before the dynamic loader sees it. Only what the loader reads is checked: the
//! program header table and every segment's file range. Files that are not 64-bit ELF of this
//! machine's byte order are left to `dlopen`, which rejects them from the header alone with
//! its own message.
//!
//! [`tensor_counter`] reads the symbol table for the one piece of global state a plugin's own
//! copy of candle must not share with pulse's: the tensor id counter (see `ffi.rs`).

use std::io::{Read, Seek, SeekFrom};

/// `Err(reason)` when the loader would read past the end of the file.
pub(crate) fn preflight(file: &mut (impl Read + Seek), len: u64) -> Result<(), String> {
    let mut header = [0u8; 64];
    if len < 64 || file.read_exact(&mut header).is_err() {
        return Ok(()); // dlopen says "file too short" without mapping anything
    }
    let native = if cfg!(target_endian = "little") { 1 } else { 2 };
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != native {
        return Ok(());
    }
    let u16_at = |b: &[u8], o: usize| u16::from_ne_bytes([b[o], b[o + 1]]);
    let u32_at = |b: &[u8], o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let u64_at = |b: &[u8], o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_ne_bytes(a)
    };
    let phoff = u64_at(&header, 0x20);
    let phentsize = u64::from(u16_at(&header, 0x36));
    let phnum = u64::from(u16_at(&header, 0x38));
    let table_end = phoff.saturating_add(phentsize.saturating_mul(phnum));
    if phentsize < 56 || table_end > len {
        return Err(format!(
            "the file is truncated or corrupt: its program header table ends at byte {table_end}, \
             the file has {len} bytes"
        ));
    }
    let mut table = vec![0u8; (phentsize * phnum) as usize];
    let read = file
        .seek(SeekFrom::Start(phoff))
        .and_then(|_| file.read_exact(&mut table));
    if let Err(e) = read {
        return Err(format!("cannot read its program headers: {e}"));
    }
    for (i, ph) in table.chunks_exact(phentsize as usize).enumerate() {
        let (kind, offset, filesz) = (u32_at(ph, 0), u64_at(ph, 8), u64_at(ph, 32));
        let end = offset.saturating_add(filesz);
        if filesz > 0 && end > len {
            return Err(format!(
                "the file is truncated: segment {i} ({}) spans bytes {offset}..{end}, the file \
                 has {len} bytes (an interrupted copy or build?)",
                segment_name(kind)
            ));
        }
    }
    Ok(())
}

/// What the loader needs to know about a library's copy of candle's tensor id counter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Counter {
    /// The library has no symbol table (stripped), so it cannot be known.
    Unknown,
    /// The library never creates tensors (the counter was not linked in).
    Absent,
    /// Link-time addresses of the entry point and of the counter (8 bytes, in a writable
    /// segment).
    At { entry: u64, counter: u64 },
}

/// The symbol that tells a library's tensor id counter (`candle_core::tensor::TensorId::new::
/// COUNTER`): `…7COUNTER17h<hash>E` under legacy mangling, `…7COUNTER` under v0. Only the end
/// of each name is searched first: a library has tens of thousands of symbols.
fn is_counter(name: &[u8]) -> bool {
    let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let tail = &name[name.len().saturating_sub(28)..];
    has(tail, b"7COUNTER") && has(name, b"8TensorId3new7COUNTER") && has(name, b"candle_core")
}

/// An `n`-byte (2, 4 or 8) unsigned field at `o`, in this machine's byte order.
fn field(b: &[u8], o: usize, n: usize) -> u64 {
    match n {
        2 => u64::from(u16::from_ne_bytes([b[o], b[o + 1]])),
        4 => u64::from(u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])),
        _ => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_ne_bytes(a)
        }
    }
}

fn read_at(file: &mut (impl Read + Seek), off: u64, len: u64) -> Result<Vec<u8>, String> {
    let len = usize::try_from(len).map_err(|_| "a section is too large".to_string())?;
    let mut buf = vec![0u8; len];
    file.seek(SeekFrom::Start(off))
        .and_then(|_| file.read_exact(&mut buf))
        .map_err(|e| format!("cannot read its sections: {e}"))?;
    Ok(buf)
}

/// Finds candle's tensor id counter and the entry point `entry` in the symbol table of a
/// library `dlopen` accepted (so a 64-bit ELF file of this machine's byte order).
pub(crate) fn tensor_counter(
    file: &mut (impl Read + Seek),
    entry: &str,
) -> Result<Counter, String> {
    let header = read_at(file, 0, 64)?;
    let (shoff, shentsize, shnum) = (
        field(&header, 0x28, 8),
        field(&header, 0x3a, 2),
        field(&header, 0x3c, 2),
    );
    let (phoff, phentsize, phnum) = (
        field(&header, 0x20, 8),
        field(&header, 0x36, 2),
        field(&header, 0x38, 2),
    );
    if shentsize < 64 || phentsize < 56 {
        return Ok(Counter::Unknown);
    }
    let sections = read_at(file, shoff, shentsize * shnum)?;
    let sections: Vec<&[u8]> = sections.chunks_exact(shentsize as usize).collect();
    // SHT_SYMTAB; its sh_link is the string table of its names.
    let Some(symtab) = sections.iter().find(|s| field(s, 4, 4) == 2) else {
        return Ok(Counter::Unknown);
    };
    let Some(strtab) = sections.get(field(symtab, 40, 4) as usize) else {
        return Ok(Counter::Unknown);
    };
    let syms = read_at(file, field(symtab, 24, 8), field(symtab, 32, 8))?;
    let names = read_at(file, field(strtab, 24, 8), field(strtab, 32, 8))?;
    let name_of = |sym: &[u8]| {
        let start = (field(sym, 0, 4) as usize).min(names.len());
        let end = names[start..]
            .iter()
            .position(|&b| b == 0)
            .map_or(names.len(), |e| start + e);
        &names[start..end]
    };
    let (mut entry_at, mut counter) = (None, None);
    for sym in syms.chunks_exact(24) {
        let name = name_of(sym);
        if name == entry.as_bytes() {
            entry_at = Some(field(sym, 8, 8));
        } else if is_counter(name) {
            counter = Some((field(sym, 8, 8), field(sym, 16, 8)));
        }
    }
    let (Some(entry), Some((counter, size))) = (entry_at, counter) else {
        return Ok(if entry_at.is_some() {
            Counter::Absent
        } else {
            Counter::Unknown
        });
    };
    // The counter must be an aligned 8-byte object inside a writable loaded segment.
    let headers = read_at(file, phoff, phentsize * phnum)?;
    let writable = headers.chunks_exact(phentsize as usize).any(|ph| {
        let (kind, flags) = (field(ph, 0, 4), field(ph, 4, 4));
        let (vaddr, memsz) = (field(ph, 16, 8), field(ph, 40, 8));
        kind == 1
            && flags & 2 != 0
            && counter >= vaddr
            && counter.saturating_add(8) <= vaddr.saturating_add(memsz)
    });
    if size != 8 || !counter.is_multiple_of(8) || !writable {
        return Err(format!(
            "its tensor id counter is not a counter (size {size}, address {counter:#x})"
        ));
    }
    Ok(Counter::At { entry, counter })
}

fn segment_name(kind: u32) -> String {
    match kind {
        1 => "LOAD".into(),
        2 => "DYNAMIC".into(),
        4 => "NOTE".into(),
        0x6474_e550 => "GNU_EH_FRAME".into(),
        0x6474_e552 => "GNU_RELRO".into(),
        other => format!("type {other:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A minimal 64-bit ELF header of this machine's byte order with one segment.
    fn elf(seg_offset: u64, seg_filesz: u64, extra: usize) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 + extra];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = if cfg!(target_endian = "little") { 1 } else { 2 };
        b[0x20..0x28].copy_from_slice(&64u64.to_ne_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_ne_bytes());
        b[0x38..0x3a].copy_from_slice(&1u16.to_ne_bytes());
        b[64..68].copy_from_slice(&1u32.to_ne_bytes());
        b[72..80].copy_from_slice(&seg_offset.to_ne_bytes());
        b[96..104].copy_from_slice(&seg_filesz.to_ne_bytes());
        b
    }

    #[track_caller]
    fn check(bytes: Vec<u8>, expected: Result<(), &str>) {
        let len = bytes.len() as u64;
        match (preflight(&mut Cursor::new(bytes), len), expected) {
            (Ok(()), Ok(())) => {}
            (Err(got), Err(want)) => assert!(got.contains(want), "{got} lacks {want}"),
            (got, want) => panic!("got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn segments_past_the_end_are_refused() {
        check(elf(0, 120, 0), Ok(()));
        check(elf(100, 20, 0), Ok(()));
        check(
            elf(100, 4096, 0),
            Err("segment 0 (LOAD) spans bytes 100..4196, the file has 120 bytes"),
        );
        check(elf(u64::MAX, 2, 0), Err("truncated"));
        let mut cut = elf(0, 10, 0);
        cut.truncate(100);
        check(
            cut,
            Err("program header table ends at byte 120, the file has 100 bytes"),
        );
    }

    #[test]
    fn the_tensor_id_counter_is_recognised_under_both_manglings() {
        assert!(is_counter(
            b"_ZN11candle_core6tensor8TensorId3new7COUNTER17h76ed4cb202d13854E"
        ));
        assert!(is_counter(
            b"_RNvNvMNtCs4p3mZxF0nVa_11candle_core6tensorNtB5_8TensorId3new7COUNTER"
        ));
        assert!(!is_counter(
            b"_ZN9other_lib6tensor8TensorId3new7COUNTER17h0000000000000000E"
        ));
        assert!(!is_counter(
            b"_ZN11candle_core5utils7COUNTER17h0000000000000000E"
        ));
        assert!(!is_counter(b""));
    }

    #[test]
    fn other_files_are_left_to_dlopen() {
        check(b"not a library at all".to_vec(), Ok(()));
        check(vec![0u8; 200], Ok(()));
        let mut elf32 = elf(0, 4096, 0);
        elf32[4] = 1;
        check(elf32, Ok(()));
    }
}
