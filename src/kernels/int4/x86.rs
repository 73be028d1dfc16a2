//! AVX2 rows and AVX-512 tiles of the W4A8 GEMV. AVX2: 32 columns (16 packed bytes) a step with
//! `vpmaddubsw` (u8 `q + 8` at most 15 times |a| at most 127: no pair sum saturates), one row at a
//! time. AVX-512: 16 rows at a time, 128 columns (64 packed bytes) a step with `vpdpbusd`, each
//! row's partial sums in its own register until the group ends, when one transposing reduction
//! turns the 16 registers into one lane per row. Both finish each group as the scalar reference
//! does: the exact integer dot less `(8 + zero) * sum(a)`, then `y += (scale * activation scale) *
//! dot` in f32.

use super::{Activations, Int4Weights};
use core::arch::x86_64::*;

/// Rows per AVX-512 tile: one i32 lane each after the reduction.
pub(super) const TILE_ROWS: usize = 16;

/// How many tiles ahead the tile prefetches its weights into L2.
const AHEAD: usize = 2;

/// The sum of the eight i32 lanes of `v` (wrapping, as the exact sum fits).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s)))
}

/// Group `g`'s integer offset: `(8 + zero) * sum(a)`.
#[inline]
fn group_offset(g: usize, zeros: Option<&[i8]>, act: &Activations) -> i32 {
    (8 + zeros.map_or(0, |z| i32::from(z[g]))).wrapping_mul(act.sum[g])
}

/// One output on AVX2.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `row` holds `cols / 2` bytes with `cols` and `group`
/// multiples of 32, `scales` (and `zeros`) one entry per group, `act` quantized for `cols` with
/// 32-column steps.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn row_avx2(
    row: &[u8],
    group: usize,
    scales: &[f32],
    zeros: Option<&[i8]>,
    act: &Activations,
) -> f32 {
    let (low, flip, ones) = (_mm256_set1_epi8(0x0F), _mm_set1_epi8(0x88u8 as i8), _mm256_set1_epi16(1));
    let mut y = 0.0f32;
    for (g, (bytes, a)) in row.chunks(group / 2).zip(act.split.chunks(group)).enumerate() {
        let mut isum = _mm256_setzero_si256();
        for (b, a) in bytes.chunks_exact(16).zip(a.chunks_exact(32)) {
            // SAFETY: b holds 16 bytes and a 32.
            let (q, a) =
                unsafe { (_mm_loadu_si128(b.as_ptr().cast()), _mm256_loadu_si256(a.as_ptr().cast())) };
            let q = _mm_xor_si128(q, flip);
            let u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(q), q), low);
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), ones));
        }
        let dot = hsum_epi32(isum).wrapping_sub(group_offset(g, zeros, act));
        y += scales[g] * act.scale[g] * dot as f32;
    }
    y
}

/// Lane `i` of the result: the sum of the 16 lanes of `v[i]` (wrapping, as the exact sums fit).
/// With `I16_LEVELS` (groups of one 128-column step, whose lanes hold at most 8 products of at
/// most `15 * 127`: 15240, and pairwise 30480, fit in i16) the first two levels pack two
/// registers into 16-bit lanes and add neighbours with one `vpmaddwd` by ones: two operations
/// per pair of registers, against three.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[inline]
fn transpose_sum<const I16_LEVELS: bool>(v: &[__m512i; TILE_ROWS]) -> __m512i {
    let ones = _mm512_set1_epi16(1);
    let narrow = |a: __m512i, b: __m512i| _mm512_madd_epi16(_mm512_packs_epi32(a, b), ones);
    // Per 128-bit lane two partial sums each of rows 2k and 2k + 1, in the order the next level takes.
    let pairs: [__m512i; 8] = core::array::from_fn(|k| match (v[2 * k], v[2 * k + 1]) {
        (a, b) if I16_LEVELS => narrow(a, b),
        (a, b) => _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b)),
    });
    // Rows 4k..4k + 4 in order within each 128-bit lane.
    let quads: [__m512i; 4] = core::array::from_fn(|k| match (pairs[2 * k], pairs[2 * k + 1]) {
        (a, b) if I16_LEVELS => narrow(a, b),
        (a, b) => _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b)),
    });
    // Sum the four 128-bit lanes of each quad, quad k landing in lane k.
    let halves = |a: __m512i, b: __m512i| {
        _mm512_add_epi32(_mm512_shuffle_i32x4::<0x88>(a, b), _mm512_shuffle_i32x4::<0xDD>(a, b))
    };
    let (low, high) = (halves(quads[0], quads[1]), halves(quads[2], quads[3]));
    halves(low, high)
}

/// Row `i` of the result: column `i` of the 16 x 16 matrix whose rows are `rows` (32-bit lanes).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[inline]
fn transpose16(rows: &[__m512i; 16]) -> [__m512i; 16] {
    // Within each 128-bit lane L: elements 4L, 4L + 1 of rows 2k, 2k + 1 (low), 4L + 2, 4L + 3 (high).
    let t: [__m512i; 16] = core::array::from_fn(|i| {
        let (a, b) = (rows[i & !1], rows[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_epi32(a, b)
        } else {
            _mm512_unpackhi_epi32(a, b)
        }
    });
    // u[4k + m], lane L: element 4L + m of rows 4k..4k + 4.
    let u: [__m512i; 16] = core::array::from_fn(|i| {
        let (k, m) = (i / 4, i % 4);
        let (a, b) = (t[4 * k + m / 2], t[4 * k + 2 + m / 2]);
        if m % 2 == 0 {
            _mm512_unpacklo_epi64(a, b)
        } else {
            _mm512_unpackhi_epi64(a, b)
        }
    });
    // Lanes 0, 2 (even) or 1, 3 (odd) of u[m] and u[4 + m], then of u[8 + m] and u[12 + m].
    let half = |m: usize, odd: bool, hi: usize| {
        let (a, b) = (u[hi + m], u[hi + 4 + m]);
        if odd {
            _mm512_shuffle_i32x4::<0xDD>(a, b)
        } else {
            _mm512_shuffle_i32x4::<0x88>(a, b)
        }
    };
    core::array::from_fn(|c| {
        let (lane, m) = (c / 4, c % 4);
        let (a, b) = (half(m, lane % 2 == 1, 0), half(m, lane % 2 == 1, 8));
        if lane < 2 {
            _mm512_shuffle_i32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_i32x4::<0xDD>(a, b)
        }
    })
}

/// The 16 outputs `y` of rows `r0..r0 + 16` on AVX-512.
///
/// # Safety
/// The CPU has the AVX-512 tier's features; `w` passed `check` with `cols` and `group` multiples
/// of 32; `act` was quantized for `w.cols` with 128-column steps; rows `r0..r0 + 16` exist.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn tile_avx512(
    w: &Int4Weights<'_>,
    act: &Activations,
    r0: usize,
    y: &mut [f32; TILE_ROWS],
) {
    let (cols, group, groups) = (w.cols, w.group, w.groups());
    let row_bytes = cols / 2;
    let tile = w.packed[r0 * row_bytes..(r0 + TILE_ROWS) * row_bytes].as_ptr();
    let scales = &w.scales[r0 * groups..(r0 + TILE_ROWS) * groups];
    let zeros = w.zero_points.map(|z| &z[r0 * groups..(r0 + TILE_ROWS) * groups]);
    let (low, eight) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x08));
    let next_tile = tile.wrapping_add(AHEAD * TILE_ROWS * row_bytes);
    // Its scales (and zero points) too, into L2.
    let params_ahead = ((r0 + AHEAD * TILE_ROWS) * groups).min(w.scales.len());
    let params_len = (TILE_ROWS * groups).min(w.scales.len() - params_ahead);
    for line in (0..4 * params_len).step_by(64) {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_T1>(w.scales.as_ptr().add(params_ahead).cast::<i8>().wrapping_add(line))
        };
    }
    if let Some(z) = w.zero_points {
        for line in (0..params_len).step_by(64) {
            // SAFETY: as above.
            unsafe {
                _mm_prefetch::<_MM_HINT_T1>(z.as_ptr().add(params_ahead).cast::<i8>().wrapping_add(line))
            };
        }
    }
    let one_step = group <= super::CHUNK_512;
    let mut y_acc = _mm512_setzero_ps();
    for g0 in (0..groups).step_by(16) {
        let live = (groups - g0).min(16);
        let gmask: __mmask16 = if live == 16 { !0 } else { (1u16 << live) - 1 };
        // The 16 rows' parameters of groups g0..g0 + live, one vector per group.
        // SAFETY: row i's groups g0..g0 + live lie in `scales` (and `zeros`); masked loads.
        let sw = transpose16(&core::array::from_fn(|i| unsafe {
            _mm512_maskz_loadu_epi32(gmask, scales.as_ptr().add(i * groups + g0).cast())
        }));
        let zoff = zeros.map(|z| {
            transpose16(&core::array::from_fn(|i| {
                // SAFETY: as above.
                let z = unsafe { _mm_maskz_loadu_epi8(gmask, z.as_ptr().add(i * groups + g0).cast()) };
                _mm512_add_epi32(_mm512_cvtepi8_epi32(z), _mm512_set1_epi32(8))
            }))
        });
        for j in 0..live {
            let g = g0 + j;
            let end = ((g + 1) * group).min(cols);
            let mut acc = [_mm512_setzero_si512(); TILE_ROWS];
            let mut c = g * group;
            while c < end {
                let bytes = (end - c).min(super::CHUNK_512) / 2;
                let mask: __mmask64 = if bytes == 64 { !0 } else { (1u64 << bytes) - 1 };
                // SAFETY: the step's even and odd activations lie in `split` (columns c..c + 2 bytes).
                let (a_even, a_odd) = unsafe {
                    let a = act.split.as_ptr().add(c);
                    (
                        _mm512_maskz_loadu_epi8(mask, a.cast()),
                        _mm512_maskz_loadu_epi8(mask, a.add(bytes).cast()),
                    )
                };
                // The tile two ahead is one contiguous run of bytes: fetch it into L2 in order, a
                // step's share at a time (sixteen streams at once are more than the hardware
                // prefetcher follows).
                for line in 0..TILE_ROWS {
                    let at = next_tile.wrapping_add(c / 2 * TILE_ROWS + line * 64);
                    _mm_prefetch::<_MM_HINT_T1>(at.cast());
                }
                let mut row = tile.wrapping_add(c / 2);
                for acc in &mut acc {
                    // SAFETY: the row's bytes c / 2..c / 2 + bytes lie in the tile.
                    let v = unsafe { _mm512_maskz_loadu_epi8(mask, row.cast()) };
                    // `(v & 0x0F) ^ 0x08` in one `vpternlogd` per half: the nibble as q + 8.
                    // Masked-off bytes give 8 against activations 0: nothing added.
                    let lo = _mm512_ternarylogic_epi32::<0x6A>(v, low, eight);
                    let hi = _mm512_ternarylogic_epi32::<0x6A>(_mm512_srli_epi16::<4>(v), low, eight);
                    *acc = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(*acc, lo, a_even), hi, a_odd);
                    row = row.wrapping_add(row_bytes);
                }
                c += 2 * bytes;
            }
            let dot = if one_step { transpose_sum::<true>(&acc) } else { transpose_sum::<false>(&acc) };
            let sum = _mm512_set1_epi32(act.sum[g]);
            let offset = match &zoff {
                None => _mm512_slli_epi32::<3>(sum),
                Some(z) => _mm512_mullo_epi32(z[j], sum),
            };
            let scale = _mm512_mul_ps(_mm512_castsi512_ps(sw[j]), _mm512_set1_ps(act.scale[g]));
            y_acc =
                _mm512_add_ps(y_acc, _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_sub_epi32(dot, offset))));
        }
    }
    // SAFETY: y holds 16 outputs.
    unsafe { _mm512_storeu_ps(y.as_mut_ptr(), y_acc) };
}

/// Each `STEP`-column piece of `qg` (the last one possibly shorter) into `sg`: its even
/// columns, then its odd ones (an odd last column is left out: no kernel reads it).
#[inline(always)]
fn split_steps<const STEP: usize>(qg: &[i8], sg: &mut [i8]) {
    for (src, dst) in qg.chunks(STEP).zip(sg.chunks_mut(STEP)) {
        let (evens, odds) = dst.split_at_mut(src.len() / 2);
        for ((pair, e), o) in src.as_chunks::<2>().0.iter().zip(evens).zip(odds) {
            (*e, *o) = (pair[0], pair[1]);
        }
    }
}

/// [`quantize_group_body`](super::quantize_group_body) and [`split_steps`] compiled for AVX2.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_group_avx2(xg: &[f32], qg: &mut [i8], sg: &mut [i8]) -> (f32, i32) {
    let scale_sum = super::quantize_group_body(xg, qg);
    split_steps::<{ super::CHUNK }>(qg, sg);
    scale_sum
}

/// [`quantize_group_body`](super::quantize_group_body) and [`split_steps`] compiled for AVX-512.
///
/// # Safety
/// The CPU has the AVX-512 tier's features.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn quantize_group_avx512(xg: &[f32], qg: &mut [i8], sg: &mut [i8]) -> (f32, i32) {
    let scale_sum = super::quantize_group_body(xg, qg);
    split_steps::<{ super::CHUNK_512 }>(qg, sg);
    scale_sum
}
