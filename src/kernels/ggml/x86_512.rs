//! AVX-512 dot products. Q4_0 and Q8_0 take four blocks a step through the exact `vpdpbusd`.
//! Q4_0: one zmm of the four blocks' nibbles gathered by `vpermt2w`, as u8 against activations
//! laid out once per call so that each lane belongs to one block, the offset 8 subtracted per
//! block in i32, scales spread over each block's four lanes by `vpermw`. Q8_0: two blocks per zmm,
//! |w| times the activation with w's sign, the four blocks' scales from one `vcvtph2ps` spread
//! over each block's eight lanes by `vpermps`. The K types take a half super-block per zmm:
//! `vpmaddubsw` pair sums (never saturating: at most 63 * 127 * 2) weighted by the sub-block
//! scales in the VNNI `vpdpwssd`.

use super::blocks::{BlockQ4K, BlockQ4_0, BlockQ6K, BlockQ8K, BlockQ8_0, QK};
use super::dot::{bsums, scales_mins_k4, Q4Split};
use super::x86::{f16_to_f32, mins_dot};
use crate::kernels::prefetch_stream;
use core::arch::x86_64::*;
use core::mem::size_of;

/// The 32 values of two Q8_0 blocks, one after the other.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[inline]
fn qs2(q0: &[i8; 32], q1: &[i8; 32]) -> __m512i {
    // SAFETY: each array holds 32 bytes.
    unsafe {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_loadu_si256(q0.as_ptr().cast())),
            _mm256_loadu_si256(q1.as_ptr().cast()),
        )
    }
}

/// The four f16 scales `d` as f32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[inline]
fn scales4(d: [[u8; 2]; 4]) -> __m128 {
    let bits = u64::from(u16::from_le_bytes(d[0]))
        | (u64::from(u16::from_le_bytes(d[1])) << 16)
        | (u64::from(u16::from_le_bytes(d[2])) << 32)
        | (u64::from(u16::from_le_bytes(d[3])) << 48);
    _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
}

/// The products of four blocks' i32 lanes (two zmm, eight lanes a block) with their four scales
/// `s`, added to `acc`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[inline]
fn scale4(acc: &mut [__m512; 2], p01: __m512i, p23: __m512i, s: __m128) {
    let s = _mm512_castps128_ps512(s);
    let first = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let second = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    acc[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p01), _mm512_permutexvar_ps(first, s), acc[0]);
    acc[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p23), _mm512_permutexvar_ps(second, s), acc[1]);
}

/// Rows of a Q4_0 GEMV taken together: the activations of a step are loaded once for all of them.
pub(super) const Q4_0_TILE_ROWS: usize = 8;

/// How many tiles ahead [`q4_0_gemv`] prefetches its weights into L2.
const Q4_0_AHEAD: usize = 2;

/// A Q4_0 block in 16-bit words.
const Q4_0_BLOCK_WORDS: i16 = (size_of::<BlockQ4_0>() / 2) as i16;

/// The words of four Q4_0 blocks' nibbles within their 72 bytes: block `k / 8`'s word `k % 8`.
const Q4_0_QS_WORDS: [i16; 32] = {
    let mut w = [0; 32];
    let mut k = 0;
    while k < 32 {
        w[k] = Q4_0_BLOCK_WORDS * (k as i16 / 8) + 1 + k as i16 % 8;
        k += 1;
    }
    w
};

/// Word `4 b + r` of four rows' scales: block `b`'s scale (its first word) of row `r % 2`, from
/// the first (even r) or second (odd r) of two rows' loads; the upper 16 words are not used.
const Q4_0_D_WORDS: [i16; 32] = {
    let mut w = [0; 32];
    let mut k = 0;
    while k < 32 {
        w[k] = Q4_0_BLOCK_WORDS * (k as i16 / 4 % 4) + if k % 2 == 1 { 32 } else { 0 };
        k += 1;
    }
    w
};

/// Q4_0 x Q8_0 for the `R` rows (a multiple of 4; a row may repeat) of `nb` blocks at `rows`
/// (`split`: the activations in the kernel's layout, see [`Q4Split`]). A row's result depends on
/// that row alone: the same bits wherever it stands and whatever its neighbours.
///
/// Four blocks (72 bytes) of a row a step: two loads, one `vpermt2w` gathers their 64 nibble bytes
/// (each block's 16 at 16-bit offset `9 b + 1`) for two `vpdpbusd` (the offset 8 enters as the
/// starting value of the block's sums), leaving each block's sum in four lanes. Four rows' sums
/// are then added across those lanes by two unpack-and-add rounds into one vector, lane `4 b + r`
/// for row `r` and block `b`, so the f32 work (convert, scale product, multiply-add) is done once
/// for four rows; their f16 scales come from two `vpermt2w` and a blend. `ahead + s step_bytes`
/// is prefetched into L2 at step `s`, `step_bytes` of it (any address: it is never read).
///
/// # Safety
/// The CPU has the AVX-512 tier's features; every row in `rows` holds `nb` blocks; `y` holds at
/// least `nb` blocks and `split` was made from them.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn q4_0_rows<const R: usize>(
    rows: [*const u8; R],
    nb: usize,
    y: &[BlockQ8_0],
    split: &Q4Split,
    ahead: *const u8,
    step_bytes: usize,
) -> [f32; R] {
    const { assert!(R.is_multiple_of(4) && R <= 16) };
    const STEP: usize = 4 * size_of::<BlockQ4_0>();
    let n4 = nb / 4 * 4;
    // SAFETY: two arrays of 32 i16.
    let (qs_words, d_words_01) = unsafe {
        (_mm512_loadu_si512(Q4_0_QS_WORDS.as_ptr().cast()), _mm512_loadu_si512(Q4_0_D_WORDS.as_ptr().cast()))
    };
    let upper_pair: __mmask32 = 0xCCCC_CCCC;
    let low = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); 4];
    for i in (0..n4).step_by(4) {
        let fetch = ahead.wrapping_add(i / 4 * step_bytes);
        for line in (0..step_bytes).step_by(64) {
            _mm_prefetch::<_MM_HINT_T1>(fetch.wrapping_add(line).cast());
        }
        // SAFETY: the activation arrays hold 16 i8, 4 f32 and 4 i32 per block, blocks i..i + 4.
        let (a_low, a_high, d_act, start) = unsafe {
            (
                _mm512_loadu_si512(split.low.as_ptr().add(16 * i).cast()),
                _mm512_loadu_si512(split.high.as_ptr().add(16 * i).cast()),
                _mm512_loadu_ps(split.d.as_ptr().add(4 * i)),
                _mm512_loadu_si512(split.minus_offset.as_ptr().add(4 * i).cast()),
            )
        };
        for (quad, acc) in rows.chunks_exact(4).zip(acc.iter_mut()) {
            let mut first = [_mm512_setzero_si512(); 4];
            let dots: [__m512i; 4] = core::array::from_fn(|r| {
                let at = quad[r].wrapping_add(i / 4 * STEP);
                // SAFETY: blocks i..i + 4 of the row (72 bytes) exist: the first 64 bytes and the
                // four 16-bit words after them.
                let (v0, v1) = unsafe {
                    (_mm512_loadu_si512(at.cast()), _mm512_maskz_loadu_epi16(0xF, at.add(64).cast()))
                };
                first[r] = v0;
                let qs = _mm512_permutex2var_epi16(v0, qs_words, v1);
                let (lo, hi) = (_mm512_and_si512(qs, low), _mm512_and_si512(_mm512_srli_epi16::<4>(qs), low));
                _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, lo, a_low), hi, a_high)
            });
            let d_w = _mm512_mask_blend_epi16(
                upper_pair,
                _mm512_permutex2var_epi16(first[0], d_words_01, first[1]),
                _mm512_permutex2var_epi16(first[2], d_words_01, first[3]),
            );
            let d_w = _mm512_cvtph_ps(_mm512_castsi512_si256(d_w));
            let pair = |a: __m512i, b: __m512i| {
                _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
            };
            let (s01, s23) = (pair(dots[0], dots[1]), pair(dots[2], dots[3]));
            let sums = _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(d_w, d_act), *acc);
        }
    }
    // Lane 4 b + r holds row r's blocks b, b + 4, ...: the four added in a fixed order.
    let lanes: [[f32; 4]; 4] = core::array::from_fn(|q| {
        let halves = _mm256_add_ps(_mm512_castps512_ps256(acc[q]), _mm512_extractf32x8_ps::<1>(acc[q]));
        let quarters = _mm_add_ps(_mm256_castps256_ps128(halves), _mm256_extractf128_ps::<1>(halves));
        let mut out = [0.0f32; 4];
        // SAFETY: out holds 4 f32.
        unsafe { _mm_storeu_ps(out.as_mut_ptr(), quarters) };
        out
    });
    core::array::from_fn(|r| {
        let mut sum = lanes[r / 4][r % 4];
        // SAFETY: the row holds nb blocks.
        let x = unsafe { core::slice::from_raw_parts(rows[r].cast::<BlockQ4_0>(), nb) };
        for (xb, yb) in x[n4..].iter().zip(&y[n4..]) {
            let sumi: i32 = (0..QK / 2)
                .map(|j| {
                    (i32::from(xb.qs[j] & 0x0F) - 8) * i32::from(yb.qs[j])
                        + (i32::from(xb.qs[j] >> 4) - 8) * i32::from(yb.qs[j + QK / 2])
                })
                .sum();
            sum += sumi as f32 * f16_to_f32(xb.d) * f16_to_f32(yb.d);
        }
        sum
    })
}

/// Q4_0 x Q8_0 for one row `x` ([`q4_0_rows`] with the row four times).
///
/// # Safety
/// The CPU has the AVX-512 tier's features; `y` holds at least `x.len()` blocks and `split` was
/// made from them.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0], split: &Q4Split) -> f32 {
    let at = x.as_ptr().cast::<u8>();
    // SAFETY: the caller's guarantees; the row repeated.
    let out = unsafe {
        q4_0_rows::<4>([at; 4], x.len(), y, split, at.wrapping_add(1024), 4 * size_of::<BlockQ4_0>())
    };
    out[0]
}

/// The Q4_0 GEMV's rows `y` from the rows of `w` (whole rows of `row_bytes` = `nb` blocks each):
/// [`q4_0_rows`] on tiles of [`Q4_0_TILE_ROWS`], the last rows four at a time (the last of them
/// repeated to fill the four).
///
/// # Safety
/// The CPU has the AVX-512 tier's features; `w` holds `y.len()` rows; `act` holds `nb` blocks
/// and `split` was made from them.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn q4_0_gemv(
    w: &[u8],
    row_bytes: usize,
    nb: usize,
    act: &[BlockQ8_0],
    split: &Q4Split,
    y: &mut [f32],
) {
    const R: usize = Q4_0_TILE_ROWS;
    let row = |r: usize| w.as_ptr().wrapping_add(r * row_bytes);
    let mut r0 = 0;
    while r0 + R <= y.len() {
        let ahead = row(r0 + Q4_0_AHEAD * R);
        // SAFETY: rows r0..r0 + R exist; the caller's guarantees for the rest.
        let out = unsafe {
            q4_0_rows::<R>(
                core::array::from_fn(|r| row(r0 + r)),
                nb,
                act,
                split,
                ahead,
                R * 4 * size_of::<BlockQ4_0>(),
            )
        };
        y[r0..r0 + R].copy_from_slice(&out);
        r0 += R;
    }
    while r0 < y.len() {
        let live = (y.len() - r0).min(4);
        let rows = core::array::from_fn(|r| row(r0 + r.min(live - 1)));
        // SAFETY: as above; rows past the live ones repeat the last.
        let out = unsafe { q4_0_rows::<4>(rows, nb, act, split, row(r0 + 4), 16 * size_of::<BlockQ4_0>()) };
        y[r0..r0 + live].copy_from_slice(&out[..live]);
        r0 += live;
    }
}

/// `sum w a` per four bytes of 64 signed `w` and `a` (a in [-127, 127]), exact.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[inline]
fn dot_i8(w: __m512i, a: __m512i) -> __m512i {
    let negative = _mm512_movepi8_mask(w);
    let a = _mm512_mask_sub_epi8(a, negative, _mm512_setzero_si512(), a);
    _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), a)
}

/// Q8_0 x Q8_0 (`dy`: the activation blocks' scales).
///
/// # Safety
/// The CPU has the AVX-512 tier's features; `y` and `dy` hold at least `x.len()` entries.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0], dy: &[f32]) -> f32 {
    let n4 = x.len() / 4 * 4;
    let mut acc = [_mm512_setzero_ps(); 2];
    for i in (0..n4).step_by(4) {
        prefetch_stream(x.as_ptr().wrapping_add(i), 4 * size_of::<BlockQ8_0>());
        let (x, y) = (&x[i..i + 4], &y[i..i + 4]);
        let p01 = dot_i8(qs2(&x[0].qs, &x[1].qs), qs2(&y[0].qs, &y[1].qs));
        let p23 = dot_i8(qs2(&x[2].qs, &x[3].qs), qs2(&y[2].qs, &y[3].qs));
        // SAFETY: i + 4 <= n4 <= dy.len().
        let dy4 = unsafe { _mm_loadu_ps(dy.as_ptr().add(i)) };
        scale4(&mut acc, p01, p23, _mm_mul_ps(scales4([x[0].d, x[1].d, x[2].d, x[3].d]), dy4));
    }
    let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
    for (xb, yb) in x[n4..].iter().zip(&y[n4..]) {
        let sumi: i32 = xb.qs.iter().zip(&yb.qs).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum();
        sum += sumi as f32 * (f16_to_f32(xb.d) * f16_to_f32(yb.d));
    }
    sum
}

/// 64 activations: 32 at `at0` then 32 at `at1`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[inline]
fn act2(qs: &[i8; 256], at0: usize, at1: usize) -> __m512i {
    debug_assert!(at0 <= 224 && at1 <= 224);
    // SAFETY: the callers pass offsets at most 224, so both 32-byte loads lie inside qs.
    unsafe {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_loadu_si256(qs.as_ptr().add(at0).cast())),
            _mm256_loadu_si256(qs.as_ptr().add(at1).cast()),
        )
    }
}

/// The i16 scales `s` spread by `idx` (each lane of the result takes `s[idx[lane]]`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[inline]
fn spread(s: __m256i, idx: __m512i) -> __m512i {
    _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(s))
}

/// A vector of 32 i16 lanes whose lane `l` is `first + step * (l / per)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[inline]
fn lane_index(first: i16, step: i16, per: i16) -> __m512i {
    let v: [i16; 32] = core::array::from_fn(|l| first + step * (l as i16 / per));
    // SAFETY: v holds 64 bytes.
    unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
}

/// Bits `s` and `s + 1` of each byte of `h` (`s` per 16-bit lane in `shift`), moved to bits 4
/// and 5: a Q6_K value's high bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[inline]
fn high_bits(h: __m512i, shift: __m512i) -> __m512i {
    _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srlv_epi16(h, shift), _mm512_set1_epi8(3)))
}

/// Q4_K x Q8_K (`sums32`: the sums of each 32 activations).
///
/// # Safety
/// The CPU has the AVX-512 tier's features; `y` and `sums32` hold at least `x.len()` entries.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K], sums32: &[[i16; 8]]) -> f32 {
    let low = _mm512_set1_epi8(0x0F);
    // Sub-blocks (0, 2), (1, 3), (4, 6), (5, 7): 16 i16 lanes each.
    let idx = [lane_index(0, 2, 16), lane_index(1, 2, 16), lane_index(4, 2, 16), lane_index(5, 2, 16)];
    let mut acc = _mm512_setzero_ps();
    let mut acc_min = 0.0f32;
    for (i, (xb, yb)) in x.iter().zip(y).enumerate() {
        prefetch_stream(xb, size_of::<BlockQ4K>());
        let (scales, mins) = scales_mins_k4(&xb.scales);
        let sc = _mm256_cvtepu8_epi16(_mm_cvtsi64_si128(scales as i64));
        // SAFETY: qs holds 128 bytes.
        let (v0, v1) = unsafe {
            (_mm512_loadu_si512(xb.qs.as_ptr().cast()), _mm512_loadu_si512(xb.qs.as_ptr().add(64).cast()))
        };
        let w = [
            _mm512_and_si512(v0, low),
            _mm512_and_si512(_mm512_srli_epi16::<4>(v0), low),
            _mm512_and_si512(v1, low),
            _mm512_and_si512(_mm512_srli_epi16::<4>(v1), low),
        ];
        let a = [act2(&yb.qs, 0, 64), act2(&yb.qs, 32, 96), act2(&yb.qs, 128, 192), act2(&yb.qs, 160, 224)];
        let mut sumi = _mm512_setzero_si512();
        for k in 0..4 {
            sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(w[k], a[k]), spread(sc, idx[k]));
        }
        let yd = f32::from_le_bytes(yb.d);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(f16_to_f32(xb.d) * yd), _mm512_cvtepi32_ps(sumi), acc);
        acc_min += f16_to_f32(xb.dmin) * yd * mins_dot(mins, &sums32[i]) as f32;
    }
    _mm512_reduce_add_ps(acc) - acc_min
}

/// Q6_K x Q8_K: the 6-bit values as u8 in [0, 63], 32 times each 16-sum subtracted.
///
/// # Safety
/// The CPU has the AVX-512 tier's features; `y` holds at least `x.len()` blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    const TWO: i64 = 0x0002_0002_0002_0002;
    const FOUR: i64 = 0x0004_0004_0004_0004;
    const SIX: i64 = 0x0006_0006_0006_0006;
    let low = _mm512_set1_epi8(0x0F);
    let shift_lo = _mm512_set_epi64(TWO, TWO, TWO, TWO, 0, 0, 0, 0);
    let shift_hi = _mm512_set_epi64(SIX, SIX, SIX, SIX, FOUR, FOUR, FOUR, FOUR);
    let idx = [lane_index(0, 1, 8), lane_index(4, 1, 8), lane_index(8, 1, 8), lane_index(12, 1, 8)];
    let mut acc = _mm512_setzero_ps();
    for (xb, yb) in x.iter().zip(y) {
        prefetch_stream(xb, size_of::<BlockQ6K>());
        // SAFETY: scales holds 16 bytes.
        let sc = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(xb.scales.as_ptr().cast()) });
        let mut sumi = _mm512_setzero_si512();
        for n in 0..2 {
            // SAFETY: ql holds 128 bytes, qh 64 and yb.qs 256: every load below is in range.
            let (l, h, a_lo, a_hi) = unsafe {
                (
                    _mm512_loadu_si512(xb.ql.as_ptr().add(64 * n).cast()),
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(xb.qh.as_ptr().add(32 * n).cast())),
                    _mm512_loadu_si512(yb.qs.as_ptr().add(128 * n).cast()),
                    _mm512_loadu_si512(yb.qs.as_ptr().add(128 * n + 64).cast()),
                )
            };
            let w_lo = _mm512_or_si512(_mm512_and_si512(l, low), high_bits(h, shift_lo));
            let w_hi =
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(l), low), high_bits(h, shift_hi));
            sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(w_lo, a_lo), spread(sc, idx[2 * n]));
            sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(w_hi, a_hi), spread(sc, idx[2 * n + 1]));
        }
        let bs = bsums(yb);
        // SAFETY: bs holds 16 i16 (32 bytes).
        let b = unsafe { _mm256_loadu_si256(bs.as_ptr().cast()) };
        let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(b, sc));
        let sumi = _mm512_sub_epi32(sumi, _mm512_zextsi256_si512(offset));
        let d = f16_to_f32(xb.d) * f32::from_le_bytes(yb.d);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    _mm512_reduce_add_ps(acc)
}

/// [`q8_0_blocks`](super::dot::q8_0_blocks) compiled for the AVX-512 tier.
///
/// # Safety
/// The CPU has the AVX-512 tier's features.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn q8_0_blocks(x: &[f32], blocks: &mut [BlockQ8_0], d: &mut [f32]) {
    super::dot::q8_0_blocks(x, blocks, d)
}
