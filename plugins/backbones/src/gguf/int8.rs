//! 8-bit integer matrix products for CPUs with AVX-512 VNNI: the fastest weight format here
//! for small models decoded in batches (see [`super::WeightFormat::Int8`]).
//!
//! Why: dequantized f32 weights turn the batched forward into a real GEMM, but an f32 GEMM on
//! two cores reaches ~90 GFLOP/s, and candle's quantized kernels for Q4_1 stay below 5 at any
//! batch size. `vpdpbusd` multiplies 64 byte pairs per instruction, so 8-bit weights against
//! 8-bit activations do four times the work of an f32 FMA per instruction.
//!
//! Format: weights are re-quantized once at load time to 8 bits per value with a scale and a
//! minimum per 32 values of a row (`w = d·u + m`, `u ∈ 0..=255`) — finer than the 4–6-bit GGUF
//! blocks they come from, so the re-quantization adds little error. Activations are quantized
//! per call to signed 8 bits with one scale per 32 values, as llama.cpp does (`Q8_1`). Then,
//! per 32-block, `Σ w·x = d·dx·Σ u·q + m·dx·Σ q`: integer dot products, two float FMAs.
//!
//! Layout: columns in tiles of 16; a tile's 32-value block stores its bytes so that one 64-byte
//! load holds 4 consecutive values of each of the 16 columns, the shape `vpdpbusd` consumes.

// The kernel uses AVX-512 intrinsics (unsafe by definition: they require the CPU feature,
// checked at run time before any call) and aligned loads from the tile storage.
#![allow(unsafe_code)]

use rayon::prelude::*;

/// Output columns per tile.
const TILE: usize = 16;
/// Values per scale block.
const BLOCK: usize = 32;
/// Activation rows processed together against one tile (registers: 2 per row + 5).
const ROWS: usize = 8;

/// One block of 32 values for the 16 columns of a tile.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct TileBlock {
    /// `qs[64 g + 4 c + i]` is value `4 g + i` of column `c`.
    qs: [u8; BLOCK * TILE],
    d: [f32; TILE],
    m: [f32; TILE],
}

const EMPTY: TileBlock = TileBlock {
    qs: [0; BLOCK * TILE],
    d: [0.0; TILE],
    m: [0.0; TILE],
};

/// A weight matrix `[n, k]` in the 8-bit tile format.
pub(crate) struct PackedInt8 {
    n: usize,
    k: usize,
    tiles: usize,
    /// Tile-major: block `b` of tile `t` is `blocks[t * k / 32 + b]`.
    blocks: Vec<TileBlock>,
}

impl std::fmt::Debug for PackedInt8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedInt8({}x{})", self.n, self.k)
    }
}

/// Whether this CPU can run the packed kernels.
pub(crate) fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl PackedInt8 {
    /// Packs row-major f32 weights `[n, k]`; `k` must be a multiple of 32.
    pub(crate) fn from_f32(w: &[f32], n: usize, k: usize) -> Option<Self> {
        if !k.is_multiple_of(BLOCK) || w.len() != n * k || n == 0 {
            return None;
        }
        let kb = k / BLOCK;
        let tiles = n.div_ceil(TILE);
        let mut blocks = vec![EMPTY; tiles * kb];
        blocks.par_chunks_mut(kb).enumerate().for_each(|(t, tile)| {
            for (b, blk) in tile.iter_mut().enumerate() {
                for c in 0..TILE {
                    let col = t * TILE + c;
                    if col >= n {
                        continue;
                    }
                    let vals = &w[col * k + b * BLOCK..][..BLOCK];
                    let lo = vals.iter().copied().fold(f32::INFINITY, f32::min);
                    let hi = vals.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let d = (hi - lo) / 255.0;
                    blk.d[c] = d;
                    blk.m[c] = lo;
                    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
                    for (i, &x) in vals.iter().enumerate() {
                        let u = ((x - lo) * inv).round().clamp(0.0, 255.0) as u8;
                        blk.qs[64 * (i / 4) + 4 * c + i % 4] = u;
                    }
                }
            }
        });
        Some(Self {
            n,
            k,
            tiles,
            blocks,
        })
    }

    pub(crate) fn n(&self) -> usize {
        self.n
    }

    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// `x [rows, k] · Wᵀ (+ bias) → [rows, n]`.
    pub(crate) fn matmul(&self, x: &[f32], rows: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let (k, kb, n) = (self.k, self.k / BLOCK, self.n);
        let vnni = supported();
        let act = Activations::quantize(x, rows, k, vnni);
        let mut out = vec![0f32; rows * n];
        let dst = SharedOut(out.as_mut_ptr());
        // Tiles are grouped so that each task has enough work.
        let per_task = (64 / rows.max(1)).clamp(1, 8);
        (0..self.tiles.div_ceil(per_task))
            .into_par_iter()
            .for_each(|task| {
                let mut tmp = [0f32; ROWS * TILE];
                for t in task * per_task..((task + 1) * per_task).min(self.tiles) {
                    let tile = &self.blocks[t * kb..(t + 1) * kb];
                    let cols = TILE.min(n - t * TILE);
                    let mut r0 = 0;
                    while r0 < rows {
                        let nr = (rows - r0).min(ROWS);
                        let o = &mut tmp[..nr * TILE];
                        if vnni {
                            #[cfg(target_arch = "x86_64")]
                            // SAFETY: `supported()` checked the CPU features the kernel is
                            // compiled for; it reads `nr` rows of `act` from `r0` and writes
                            // `nr * 16` floats of `o`, all in bounds.
                            unsafe {
                                vnni::tile_rows(tile, &act, r0, nr, o)
                            };
                        } else {
                            portable_tile_rows(tile, &act, r0, nr, o);
                        }
                        for r in 0..nr {
                            let src = &o[r * TILE..r * TILE + cols];
                            let at = (r0 + r) * n + t * TILE;
                            // SAFETY: columns `t*16 .. t*16 + cols` of every row belong to
                            // tile `t`, which exactly one task handles; `at + cols <= rows *
                            // n`, the length of `out`, which outlives the parallel loop.
                            let row = unsafe { std::slice::from_raw_parts_mut(dst.at(at), cols) };
                            match bias {
                                Some(b) => {
                                    for ((d, s), b) in row.iter_mut().zip(src).zip(&b[t * TILE..]) {
                                        *d = s + b;
                                    }
                                }
                                None => row.copy_from_slice(src),
                            }
                        }
                        r0 += nr;
                    }
                }
            });
        out
    }
}

/// The output buffer shared by the tasks of one product, each writing its own columns.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint elements (see `matmul`); the buffer outlives them.
unsafe impl Send for SharedOut {}
// SAFETY: as for `Send`: no two tasks touch the same element, and none reads.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn at(self, i: usize) -> *mut f32 {
        // invariant: callers pass in-bounds offsets; `wrapping_add` keeps this function safe.
        self.0.wrapping_add(i)
    }
}

/// Activations quantized per row and 32-block: `x ≈ dx · q`, with `sx = dx · Σ q`.
struct Activations {
    k: usize,
    q: Vec<i8>,
    dx: Vec<f32>,
    sx: Vec<f32>,
}

impl Activations {
    fn quantize(x: &[f32], rows: usize, k: usize, vnni: bool) -> Self {
        let kb = k / BLOCK;
        let mut q = vec![0i8; rows * k];
        let mut dx = vec![0f32; rows * kb];
        let mut sx = vec![0f32; rows * kb];
        q.par_chunks_mut(k)
            .zip(dx.par_chunks_mut(kb).zip(sx.par_chunks_mut(kb)))
            .enumerate()
            .for_each(|(r, (q, (dx, sx)))| {
                let x = &x[r * k..(r + 1) * k];
                if vnni {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the CPU has AVX-512 (checked by the caller); `x` and `q` hold
                    // `k` values and `dx`, `sx` hold `k / 32`.
                    unsafe {
                        vnni::quantize_row(x, q, dx, sx)
                    };
                    return;
                }
                for b in 0..kb {
                    let xs = &x[b * BLOCK..(b + 1) * BLOCK];
                    let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
                    let d = amax / 127.0;
                    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
                    let mut sum = 0i32;
                    for (qi, &v) in q[b * BLOCK..(b + 1) * BLOCK].iter_mut().zip(xs) {
                        let v = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
                        *qi = v;
                        sum += v as i32;
                    }
                    dx[b] = d;
                    sx[b] = d * sum as f32;
                }
            });
        Self { k, q, dx, sx }
    }
}

/// The same arithmetic in plain Rust, for CPUs without VNNI (and as the tests' reference).
fn portable_tile_rows(tile: &[TileBlock], act: &Activations, r0: usize, nr: usize, o: &mut [f32]) {
    let kb = act.k / BLOCK;
    for r in 0..nr {
        let row = r0 + r;
        let q = &act.q[row * act.k..(row + 1) * act.k];
        let out = &mut o[r * TILE..(r + 1) * TILE];
        out.fill(0.0);
        for (b, blk) in tile.iter().enumerate() {
            let (dx, sx) = (act.dx[row * kb + b], act.sx[row * kb + b]);
            for (c, out) in out.iter_mut().enumerate() {
                let mut acc = 0i32;
                for i in 0..BLOCK {
                    acc += blk.qs[64 * (i / 4) + 4 * c + i % 4] as i32 * q[b * BLOCK + i] as i32;
                }
                *out += blk.d[c] * dx * acc as f32 + blk.m[c] * sx;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{Activations, TileBlock, BLOCK, ROWS, TILE};
    use std::arch::x86_64::*;

    /// Quantizes one row of activations (see `Activations`), rounding to nearest even like
    /// the portable path.
    ///
    /// # Safety
    /// The CPU must support avx512f and avx512bw; `x` and `q` hold the same multiple of 32
    /// values, `dx` and `sx` one value per 32.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_row(x: &[f32], q: &mut [i8], dx: &mut [f32], sx: &mut [f32]) {
        let sign = _mm512_set1_ps(-0.0);
        for b in 0..x.len() / BLOCK {
            let p = x.as_ptr().add(b * BLOCK);
            let (a, c) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(
                _mm512_andnot_ps(sign, a),
                _mm512_andnot_ps(sign, c),
            ));
            let d = amax / 127.0;
            let inv = _mm512_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
            // Default rounding (MXCSR): to nearest, ties to even.
            let qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, inv));
            let qc = _mm512_cvtps_epi32(_mm512_mul_ps(c, inv));
            let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qc));
            let dst = q.as_mut_ptr().add(b * BLOCK);
            _mm_storeu_si128(dst as *mut __m128i, _mm512_cvtsepi32_epi8(qa));
            _mm_storeu_si128(dst.add(16) as *mut __m128i, _mm512_cvtsepi32_epi8(qc));
            *dx.get_unchecked_mut(b) = d;
            *sx.get_unchecked_mut(b) = d * sum as f32;
        }
    }

    /// `nr ≤ 8` rows from `r0` against one tile → `o[nr * 16]`.
    ///
    /// # Safety
    /// The CPU must support avx512f, avx512bw and avx512vnni; `r0 + nr` rows must exist in
    /// `act`, `o` must hold `nr * 16` floats.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tile_rows(
        tile: &[TileBlock],
        act: &Activations,
        r0: usize,
        nr: usize,
        o: &mut [f32],
    ) {
        match nr {
            8 => rows_n::<8>(tile, act, r0, o),
            7 => rows_n::<7>(tile, act, r0, o),
            6 => rows_n::<6>(tile, act, r0, o),
            5 => rows_n::<5>(tile, act, r0, o),
            4 => rows_n::<4>(tile, act, r0, o),
            3 => rows_n::<3>(tile, act, r0, o),
            2 => rows_n::<2>(tile, act, r0, o),
            _ => rows_n::<1>(tile, act, r0, o),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn rows_n<const R: usize>(
        tile: &[TileBlock],
        act: &Activations,
        r0: usize,
        o: &mut [f32],
    ) {
        debug_assert!(R <= ROWS && o.len() >= R * TILE);
        let k = act.k;
        let kb = k / BLOCK;
        let q = act.q.as_ptr();
        let mut facc = [_mm512_setzero_ps(); R];
        for (b, blk) in tile.iter().enumerate() {
            let mut iacc = [_mm512_setzero_si512(); R];
            for g in 0..BLOCK / 4 {
                // SAFETY: `qs` is 512 bytes and 64-byte aligned (`repr(align(64))`), so the
                // 8 loads at offsets 64 g are in bounds and aligned.
                let w = _mm512_load_si512(blk.qs.as_ptr().add(64 * g) as *const __m512i);
                for (r, acc) in iacc.iter_mut().enumerate() {
                    // SAFETY: row `r0 + r` exists (caller), and `b * 32 + 4 g + 3 < k`.
                    let p = q.add((r0 + r) * k + b * BLOCK + 4 * g) as *const i32;
                    let a = _mm512_set1_epi32(p.read_unaligned());
                    *acc = _mm512_dpbusd_epi32(*acc, w, a);
                }
            }
            let d = _mm512_load_ps(blk.d.as_ptr());
            let m = _mm512_load_ps(blk.m.as_ptr());
            for r in 0..R {
                let row = (r0 + r) * kb + b;
                let scale = _mm512_mul_ps(d, _mm512_set1_ps(*act.dx.get_unchecked(row)));
                facc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[r]), scale, facc[r]);
                facc[r] = _mm512_fmadd_ps(m, _mm512_set1_ps(*act.sx.get_unchecked(row)), facc[r]);
            }
        }
        for (r, acc) in facc.iter().enumerate() {
            // SAFETY: `o` holds at least R * 16 floats (caller).
            _mm512_storeu_ps(o.as_mut_ptr().add(r * TILE), *acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn reference(w: &[f32], x: &[f32], n: usize, k: usize, rows: usize) -> Vec<f32> {
        let mut out = vec![0f32; rows * n];
        for r in 0..rows {
            for c in 0..n {
                out[r * n + c] = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum();
            }
        }
        out
    }

    /// The packed product agrees with f32 within the error of 8-bit quantization; the VNNI
    /// kernel (when the CPU has it) agrees with the portable one exactly up to summation order.
    #[track_caller]
    fn check(n: usize, k: usize, rows: usize) {
        let w = values(n * k, 1);
        let x = values(rows * k, 2);
        let p = PackedInt8::from_f32(&w, n, k).unwrap();
        let got = p.matmul(&x, rows, None);
        let want = reference(&w, &x, n, k, rows);
        let scale = (k as f32).sqrt() * 0.6;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 0.02 * scale,
                "{n}x{k}x{rows} at {i}: {g} vs {w}"
            );
        }
        let act = Activations::quantize(&x, rows, k, false);
        let kb = k / BLOCK;
        for t in 0..p.tiles {
            let mut o = vec![0f32; rows * TILE];
            let mut r0 = 0;
            while r0 < rows {
                let nr = (rows - r0).min(ROWS);
                portable_tile_rows(
                    &p.blocks[t * kb..(t + 1) * kb],
                    &act,
                    r0,
                    nr,
                    &mut o[r0 * TILE..(r0 + nr) * TILE],
                );
                r0 += nr;
            }
            for r in 0..rows {
                for c in 0..TILE.min(n - t * TILE) {
                    let (a, b) = (o[r * TILE + c], got[r * n + t * TILE + c]);
                    assert!(
                        (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                        "tile {t} row {r}: {a} {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn packed_products_match_f32() {
        check(16, 32, 1);
        check(40, 64, 3);
        check(100, 96, 9);
        check(576, 576, 17);
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused() {
        assert!(PackedInt8::from_f32(&[0.0; 30], 1, 30).is_none());
        assert!(PackedInt8::from_f32(&[0.0; 64], 1, 32).is_none());
    }
}
