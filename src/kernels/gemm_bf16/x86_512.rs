//! AVX-512 microkernels. The BF16 one: an 8 x 32 f32 tile of C in sixteen zmm accumulators, fed by
//! `vdpbf16ps`, which adds two bf16 products per lane (`acc + a1 b1 + a0 b0`, each step rounded to
//! nearest even). B comes in [`Layout::KPairs`](super::Layout::KPairs) panels: one 32-bit word per
//! column holds rows `2q` (low half) and `2q + 1` (high half), so a pair of k steps of a 32-column
//! panel is two 64-byte loads; A comes as the same pairs, one word per row, broadcast.
//!
//! The instruction treats bf16 subnormal inputs as zero and flushes subnormal results to zero
//! (Intel's definition: DAZ and FTZ whatever MXCSR says). Products of normal bf16 are exact in
//! f32, so only where an operand or a partial sum lies below `2^-126` does this kernel differ
//! from an f32 FMA chain: by the lost products and at most `2^-126` per step.
//!
//! The FMA one: the same tile by `vfmadd231ps` on B widened in registers. Which is faster depends
//! on the CPU: on the Intel Xeon this was measured on (2026-12-05), `vdpbf16ps` zmm retired at
//! 0.5-0.75 G instructions/s (31-49 GFLOPS) against 6.7 G/s (214 GFLOPS) for zmm FMA, so
//! [`Kernel::for_isa`](super::Kernel::for_isa) takes the FMA kernel there.

use super::{Tile, KC};
use core::arch::x86_64::*;
use half::bf16;

/// Rows of the register tile.
pub(super) const MR: usize = 8;
/// Columns of the register tile (the width of a B panel): two zmm of 16 f32.
pub(super) const NR: usize = 32;

const _: () = assert!(super::MC.is_multiple_of(MR) && KC.is_multiple_of(2));

/// Whether `vdpbf16ps` runs at least as fast as FMA here: on AMD (Zen 4: 230 GFLOPS against 115
/// for zmm FMA, one core, as measured for this project's issue #16); not on the Intel Xeon of
/// 2026-12-05 (31-49 against 214).
pub(super) fn dot_is_fast() -> bool {
    crate::kernels::is_amd()
}

/// `acc + a . b` per lane over a bf16 pair (`vdpbf16ps`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[inline]
fn dot_pairs(acc: __m512, a: __m512i, b: __m512i) -> __m512 {
    // SAFETY: __m512i and __m512bh are both 64 bytes of plain lanes; every bit pattern is valid.
    let bh = |v: __m512i| unsafe { core::mem::transmute::<__m512i, __m512bh>(v) };
    let (a, b) = (bh(a), bh(b));
    _mm512_dpbf16_ps(acc, a, b)
}

/// One tile of `R` rows (`R = tile.mr`): `C (+)= A * B` over `tile.kc` (odd: the last pair's high
/// halves are zero in both operands).
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL and BF16; `a` holds `ceil(kc / 2) * MR` pair words (as f32 slots),
/// `b` `ceil(kc / 2) * 2 NR` bf16 and `c` `(R - 1) * ldc + nr` elements.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")]
unsafe fn rows<const R: usize>(tile: Tile, a: &[f32], b: &[bf16], c: &mut [f32]) {
    crate::kernels::prefetch_tile(c.as_ptr(), R, tile.ldc, tile.nr);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let (ap, bp) = (a.as_ptr().cast::<i32>(), b.as_ptr().cast::<__m512i>());
    for q in 0..tile.kc.div_ceil(2) {
        // SAFETY: q < ceil(kc / 2), and a holds that many MR-word groups, b that many pairs of
        // 64-byte rows (the caller's contract); unaligned loads.
        unsafe {
            let b0 = _mm512_loadu_si512(bp.add(2 * q));
            let b1 = _mm512_loadu_si512(bp.add(2 * q + 1));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(ap.add(q * MR + r).read_unaligned());
                row[0] = dot_pairs(row[0], av, b0);
                row[1] = dot_pairs(row[1], av, b1);
            }
        }
    }
    store(tile, &acc, c);
}

/// One tile of `tile.mr` rows, computing only those rows.
///
/// # Safety
/// As [`super::Micro`]: the CPU has AVX-512 F/BW/VL and BF16; the buffers hold the tile.
pub(super) unsafe fn microkernel(tile: Tile, a: &[f32], b: &[bf16], c: &mut [f32]) {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        match tile.mr {
            1 => rows::<1>(tile, a, b, c),
            2 => rows::<2>(tile, a, b, c),
            3 => rows::<3>(tile, a, b, c),
            4 => rows::<4>(tile, a, b, c),
            5 => rows::<5>(tile, a, b, c),
            6 => rows::<6>(tile, a, b, c),
            7 => rows::<7>(tile, a, b, c),
            _ => rows::<MR>(tile, a, b, c),
        }
    }
}

/// Columns of the FMA kernel's tile: a paired 32-column panel row is one 64-byte load of 32
/// bf16, each 32-bit word holding column `c` (low half) and column `c + 16` (high half).
pub(super) const FMA_NR: usize = 32;

/// The FMA kernel: an 8 x 32 tile of C by `vfmadd231ps` on B widened in registers (a bf16 is the
/// top half of its f32: `vpslld 16` gives columns 0..16, `vpandd 0xffff0000` columns 16..32,
/// exactly), A packed as f32. No flush of subnormals: the module bound holds as stated.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL; `a` holds `kc * MR`, `b` `kc * FMA_NR` and `c`
/// `(R - 1) * ldc + nr` elements.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,fma")]
unsafe fn fma_rows<const R: usize>(tile: Tile, a: &[f32], b: &[bf16], c: &mut [f32]) {
    crate::kernels::prefetch_tile(c.as_ptr(), R, tile.ldc, tile.nr);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let high = _mm512_set1_epi32(0xffff_0000_u32 as i32);
    let (ap, bp) = (a.as_ptr(), b.as_ptr().cast::<__m512i>());
    for p in 0..tile.kc {
        // SAFETY: p < kc, and a holds kc * MR and b kc * FMA_NR elements (the caller's contract).
        unsafe {
            let w = _mm512_loadu_si512(bp.add(p));
            let b0 = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w));
            let b1 = _mm512_castsi512_ps(_mm512_and_si512(w, high));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*ap.add(p * MR + r));
                row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                row[1] = _mm512_fmadd_ps(av, b1, row[1]);
            }
        }
    }
    store(tile, &acc, c);
}

/// Stores an `R x 32` accumulator tile into C (`tile.nr` columns, masked), adding when asked.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
#[inline]
fn store<const R: usize>(tile: Tile, acc: &[[__m512; 2]; R], c: &mut [f32]) {
    let low = if tile.nr >= 16 { u16::MAX } else { (1u16 << tile.nr) - 1 };
    let high = if tile.nr >= 32 { u16::MAX } else { ((1u32 << tile.nr.saturating_sub(16)) - 1) as u16 };
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: row r < R has tile.nr elements at r * ldc (the caller's contract); the masks
        // keep every access inside them.
        unsafe {
            let cp = c.as_mut_ptr().add(r * tile.ldc);
            let (mut v0, mut v1) = (row[0], row[1]);
            if tile.accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(low, cp));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(high, cp.add(16)));
            }
            _mm512_mask_storeu_ps(cp, low, v0);
            _mm512_mask_storeu_ps(cp.add(16), high, v1);
        }
    }
}

/// The FMA kernel on one tile of `tile.mr` rows.
///
/// # Safety
/// As [`super::Micro`]: the CPU has AVX-512 F/BW/VL and FMA; the buffers hold the tile.
pub(super) unsafe fn fma_microkernel(tile: Tile, a: &[f32], b: &[bf16], c: &mut [f32]) {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        match tile.mr {
            1 => fma_rows::<1>(tile, a, b, c),
            2 => fma_rows::<2>(tile, a, b, c),
            3 => fma_rows::<3>(tile, a, b, c),
            4 => fma_rows::<4>(tile, a, b, c),
            5 => fma_rows::<5>(tile, a, b, c),
            6 => fma_rows::<6>(tile, a, b, c),
            7 => fma_rows::<7>(tile, a, b, c),
            _ => fma_rows::<MR>(tile, a, b, c),
        }
    }
}
