//! AVX-512 (VNNI) and AVX2 tiles of the W4A8 GEMM on the blocked layout of [`PackedInt4`]: a
//! 64-byte step holds 16 rows x 8 columns; its nibbles are unpacked once (`q + 8` as u8, low and
//! high) and serve every token of the tile, whose activation quads are broadcast as 32-bit values.
//! Per group the i32 sums less `(8 + zero) * sum(a)` become f32 and are scaled in the scalar
//! reference's order: `y += (scale * activation scale) * dot` (no fused multiply-add).

use super::gemm::{for_each_tile, Operands, PackedInt4, RowActivations, BLOCK, STEP};
use core::arch::x86_64::*;
use core::ops::Range;

/// Tokens per AVX-512 tile: 8 i32 and 8 f32 accumulators.
const TOKENS_512: usize = 8;
/// Tokens per AVX2 tile: 2 x 2 i32 and 2 x 2 f32 accumulators (16 rows in two ymm).
const TOKENS_AVX2: usize = 2;

/// `T` tokens from `t0` against block `b` (16 rows from `16 b`): writes `y[t * ldy ..]` for the
/// rows that exist.
///
/// # Safety
/// The CPU has the AVX-512 tier's features; `p` is blocked, `t0 + T` tokens exist in `act`, `y`
/// points at `T` runs (`ldy` apart) of as many outputs as block `b` has rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
unsafe fn tile_avx512<const T: usize>(o: &Operands<'_>, b: usize, t0: usize, y: *mut f32, ldy: usize) {
    let (p, act) = (o.p, o.act);
    let (cols, group, groups) = (p.cols, p.group, p.groups);
    let low = _mm512_set1_epi8(0x0F);
    let steps = cols / STEP;
    // SAFETY (every pointer below): block b's steps lie in `data`, tokens t0..t0 + T in `act`,
    // column c + 8 <= cols (cols is a multiple of 8), params (b, g) in `scales` and `zoff`.
    let mut w = unsafe { p.data.as_ptr().add(b * steps * 4 * BLOCK) };
    let a0 = unsafe { act.q.as_ptr().add(t0 * cols) };
    let mut acc = [_mm512_setzero_ps(); T];
    for g in 0..groups {
        let end = ((g + 1) * group).min(cols);
        let mut isum = [_mm512_setzero_si512(); T];
        let mut c = g * group;
        while c < end {
            // SAFETY: the step lies in block b of `data` (see above).
            let v = unsafe { _mm512_loadu_si512(w.cast()) };
            let lo = _mm512_and_si512(v, low);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
            for (t, s) in isum.iter_mut().enumerate() {
                // SAFETY: token t0 + t < t0 + T exists and c < cols (see above).
                let a = unsafe { a0.add(t * cols + c) };
                // SAFETY: the eight bytes at column c of the token row exist (c + 8 <= cols).
                let (qa, qb) =
                    unsafe { (a.cast::<i32>().read_unaligned(), a.add(4).cast::<i32>().read_unaligned()) };
                *s = _mm512_dpbusd_epi32(*s, lo, _mm512_set1_epi32(qa));
                *s = _mm512_dpbusd_epi32(*s, hi, _mm512_set1_epi32(qb));
            }
            // SAFETY: the next step of block b, or one past its last (never read).
            w = unsafe { w.add(4 * BLOCK) };
            c += STEP;
        }
        let pi = (b * groups + g) * BLOCK;
        // SAFETY: params (b, g) hold 16 scales and 16 offsets in `scales` and `zoff`.
        let (sw, zo) = unsafe {
            (
                _mm512_loadu_ps(p.scales.as_ptr().add(pi)),
                _mm512_cvtepi8_epi32(_mm_loadu_si128(p.zoff.as_ptr().add(pi).cast())),
            )
        };
        for (t, (s, acc)) in isum.iter().zip(&mut acc).enumerate() {
            let ai = (t0 + t) * groups + g;
            let dot = _mm512_sub_epi32(*s, _mm512_mullo_epi32(zo, _mm512_set1_epi32(act.sum[ai])));
            let scale = _mm512_mul_ps(sw, _mm512_set1_ps(act.scale[ai]));
            *acc = _mm512_add_ps(*acc, _mm512_mul_ps(scale, _mm512_cvtepi32_ps(dot)));
        }
    }
    let live = (p.rows - b * BLOCK).min(BLOCK);
    let mask: __mmask16 = if live == BLOCK { 0xFFFF } else { (1u16 << live) - 1 };
    for (t, acc) in acc.iter().enumerate() {
        // SAFETY: token t's run holds the block's live rows; the mask keeps those.
        unsafe { _mm512_mask_storeu_ps(y.add(t * ldy), mask, *acc) };
    }
}

/// The GEMM on AVX-512 for the rows of `blocks`: token tiles of 8, each against every block.
///
/// # Safety
/// The CPU has the AVX-512 tier's features; `p` is blocked, `blocks` within its blocks, `act` holds
/// `m` token rows and `y` `m` runs `ldy` apart of the outputs of rows `16 blocks.start` up to
/// `16 blocks.end` (or `p.rows`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn gemm_avx512(
    p: &PackedInt4,
    act: &RowActivations,
    m: usize,
    y: &mut [f32],
    ldy: usize,
    blocks: Range<usize>,
) {
    let o = Operands { p, act };
    for_each_tile(&o, m, TOKENS_512, y, ldy, blocks, |n, b, t0, yt| {
        // SAFETY: the function's contract, for tokens t0..t0 + n and block b (`yt` their run).
        unsafe {
            match n {
                8 => tile_avx512::<8>(&o, b, t0, yt, ldy),
                7 => tile_avx512::<7>(&o, b, t0, yt, ldy),
                6 => tile_avx512::<6>(&o, b, t0, yt, ldy),
                5 => tile_avx512::<5>(&o, b, t0, yt, ldy),
                4 => tile_avx512::<4>(&o, b, t0, yt, ldy),
                3 => tile_avx512::<3>(&o, b, t0, yt, ldy),
                2 => tile_avx512::<2>(&o, b, t0, yt, ldy),
                _ => tile_avx512::<1>(&o, b, t0, yt, ldy),
            }
        }
    });
}

/// As [`tile_avx512`] on AVX2: 16 rows in two ymm, `vpmaddubsw` (u8 at most 15 times |a| at most
/// 127: no pair saturates) then `vpmaddwd` by ones.
///
/// # Safety
/// As [`tile_avx512`], with AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_avx2<const T: usize>(o: &Operands<'_>, b: usize, t0: usize, y: *mut f32, ldy: usize) {
    let (p, act) = (o.p, o.act);
    let (cols, group, groups) = (p.cols, p.group, p.groups);
    let (low, ones) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi16(1));
    let steps = cols / STEP;
    // SAFETY (every pointer below): as in tile_avx512.
    let mut w = unsafe { p.data.as_ptr().add(b * steps * 4 * BLOCK) };
    let a0 = unsafe { act.q.as_ptr().add(t0 * cols) };
    let mut acc = [[_mm256_setzero_ps(); 2]; T];
    for g in 0..groups {
        let end = ((g + 1) * group).min(cols);
        let mut isum = [[_mm256_setzero_si256(); 2]; T];
        let mut c = g * group;
        while c < end {
            // SAFETY: the step lies in block b of `data` (see above).
            let v = unsafe { [_mm256_loadu_si256(w.cast()), _mm256_loadu_si256(w.add(32).cast())] };
            let lo = [_mm256_and_si256(v[0], low), _mm256_and_si256(v[1], low)];
            let hi = [
                _mm256_and_si256(_mm256_srli_epi16::<4>(v[0]), low),
                _mm256_and_si256(_mm256_srli_epi16::<4>(v[1]), low),
            ];
            for (t, s) in isum.iter_mut().enumerate() {
                // SAFETY: token t0 + t < t0 + T exists and c < cols (see above).
                let a = unsafe { a0.add(t * cols + c) };
                // SAFETY: the eight bytes at column c of the token row exist (c + 8 <= cols).
                let (qa, qb) =
                    unsafe { (a.cast::<i32>().read_unaligned(), a.add(4).cast::<i32>().read_unaligned()) };
                let (qa, qb) = (_mm256_set1_epi32(qa), _mm256_set1_epi32(qb));
                for h in 0..2 {
                    let d =
                        _mm256_add_epi16(_mm256_maddubs_epi16(lo[h], qa), _mm256_maddubs_epi16(hi[h], qb));
                    s[h] = _mm256_add_epi32(s[h], _mm256_madd_epi16(d, ones));
                }
            }
            // SAFETY: the next step of block b, or one past its last (never read).
            w = unsafe { w.add(4 * BLOCK) };
            c += STEP;
        }
        let pi = (b * groups + g) * BLOCK;
        for h in 0..2 {
            // SAFETY: params (b, g) hold 16 scales and 16 offsets in `scales` and `zoff`.
            let (sw, zo) = unsafe {
                (
                    _mm256_loadu_ps(p.scales.as_ptr().add(pi + 8 * h)),
                    _mm256_cvtepi8_epi32(_mm_loadl_epi64(p.zoff.as_ptr().add(pi + 8 * h).cast())),
                )
            };
            for (t, (s, acc)) in isum.iter().zip(&mut acc).enumerate() {
                let ai = (t0 + t) * groups + g;
                let dot = _mm256_sub_epi32(s[h], _mm256_mullo_epi32(zo, _mm256_set1_epi32(act.sum[ai])));
                let scale = _mm256_mul_ps(sw, _mm256_set1_ps(act.scale[ai]));
                acc[h] = _mm256_add_ps(acc[h], _mm256_mul_ps(scale, _mm256_cvtepi32_ps(dot)));
            }
        }
    }
    let live = (p.rows - b * BLOCK).min(BLOCK);
    for (t, acc) in acc.iter().enumerate() {
        let mut out = [0.0f32; BLOCK];
        // SAFETY: out holds 16 values.
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr(), acc[0]);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), acc[1]);
        }
        // SAFETY: token t's run holds the block's `live` rows.
        unsafe { core::ptr::copy_nonoverlapping(out.as_ptr(), y.add(t * ldy), live) };
    }
}

/// The GEMM on AVX2 for the rows of `blocks`: token tiles of 2.
///
/// # Safety
/// As [`gemm_avx512`], with AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn gemm_avx2(
    p: &PackedInt4,
    act: &RowActivations,
    m: usize,
    y: &mut [f32],
    ldy: usize,
    blocks: Range<usize>,
) {
    let o = Operands { p, act };
    for_each_tile(&o, m, TOKENS_AVX2, y, ldy, blocks, |n, b, t0, yt| {
        // SAFETY: the function's contract, for tokens t0..t0 + n and block b (`yt` their run).
        unsafe {
            if n == 2 {
                tile_avx2::<2>(&o, b, t0, yt, ldy)
            } else {
                tile_avx2::<1>(&o, b, t0, yt, ldy)
            }
        }
    });
}
