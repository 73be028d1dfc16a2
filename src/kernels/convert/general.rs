//! The general affine quantizer behind `quant`'s specs: `clamp(round(x op factor) + zero_point, lo,
//! hi)` with `op` a division (ONNX) or a multiplication by a reciprocal (PyTorch, TensorFlow Lite),
//! rounding half to even or half away from zero, one parameter pair for the whole run or one per
//! element (blocks and channels that run across a row). One portable body, compiled once per tier
//! with that tier's features so the compiler vectorizes it; every tier computes the same
//! IEEE operations in the same order, so the results are identical and the scalar build is the
//! reference.

use super::super::Isa;

/// The factor and zero point of a run: one pair for every element, or one per element.
#[derive(Clone, Copy, Debug)]
pub enum RunParams<'a> {
    /// One factor and zero point for the whole run.
    Broadcast {
        /// The divisor (scale) or multiplier (reciprocal of the scale).
        factor: f32,
        /// The zero point, as a float (exact: integer types up to 16 bits).
        zero_point: f32,
    },
    /// Element `i` uses `factors[i]` and `zero_points[i]` (each at least as long as the run).
    PerElement {
        /// Divisors or multipliers.
        factors: &'a [f32],
        /// Zero points as floats.
        zero_points: &'a [f32],
    },
}

/// How the value meets the factor and how it is rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arithmetic {
    /// `x * factor` when true, `x / factor` when false.
    pub multiply: bool,
    /// Round half away from zero when true, half to even when false.
    pub half_away: bool,
}

#[inline(always)]
fn one<const MUL: bool, const AWAY: bool>(x: f32, factor: f32, zero_point: f32, lo: f32, hi: f32) -> i32 {
    let t = if MUL { x * factor } else { x / factor };
    let r = if AWAY { t.round() } else { t.round_ties_even() };
    // `r` is an integer; with |zero_point| <= 2^16 the sum is exact wherever it lands inside
    // [lo, hi], and out there any rounding keeps it out, so the clamp gives the exact result.
    // The selects are single `max`/`min` instructions; they send NaN to `lo`, so the clamped value
    // is always an integer in `[lo, hi]` (within `+-2^16`), and adding `1.5 * 2^23` puts it in
    // the binade where its integer is the low bits: a conversion that vectorizes, unlike the
    // saturating `as i32`.
    let s = r + zero_point;
    let s = if s > lo { s } else { lo };
    let s = if s < hi { s } else { hi };
    (s + INT_SHIFTER).to_bits() as i32 - INT_SHIFTER.to_bits() as i32
}

/// `1.5 * 2^23`: `v + INT_SHIFTER` for an integer `|v| <= 2^22` has `v` in its low mantissa bits.
const INT_SHIFTER: f32 = 12_582_912.0;

impl<'a> RunParams<'a> {
    /// The parameters of the run that starts `k` elements later.
    pub fn skip(self, k: usize) -> Self {
        match self {
            RunParams::Broadcast { .. } => self,
            RunParams::PerElement { factors, zero_points } => {
                RunParams::PerElement { factors: &factors[k..], zero_points: &zero_points[k..] }
            }
        }
    }
}

/// Where a run's integers go, by type.
#[derive(Debug)]
pub enum Dest<'a> {
    /// i8 values.
    I8(&'a mut [i8]),
    /// u8 values.
    U8(&'a mut [u8]),
    /// i16 values.
    I16(&'a mut [i16]),
    /// u16 values.
    U16(&'a mut [u16]),
    /// i32 values.
    I32(&'a mut [i32]),
    /// 4-bit values two a byte, the first in the low nibble: `x.len() / 2` bytes of an even run.
    Nibbles(&'a mut [u8]),
}

/// Writes `one` of each element to `y` through `cast`.
#[inline(always)]
fn body<const MUL: bool, const AWAY: bool, T>(
    x: &[f32],
    p: RunParams<'_>,
    lo: f32,
    hi: f32,
    y: &mut [T],
    cast: impl Fn(i32) -> T,
) {
    match p {
        RunParams::Broadcast { factor, zero_point } => {
            for (d, &v) in y.iter_mut().zip(x) {
                *d = cast(one::<MUL, AWAY>(v, factor, zero_point, lo, hi));
            }
        }
        RunParams::PerElement { factors, zero_points } => {
            for (((d, &v), &f), &z) in y.iter_mut().zip(x).zip(factors).zip(zero_points) {
                *d = cast(one::<MUL, AWAY>(v, f, z, lo, hi));
            }
        }
    }
}

/// Elements packed to nibbles at a time, through an i32 buffer in L1.
const NIBBLE_CHUNK: usize = 256;

#[inline(always)]
fn typed<const MUL: bool, const AWAY: bool>(x: &[f32], p: RunParams<'_>, lo: f32, hi: f32, y: Dest<'_>) {
    match y {
        // The `as` casts are exact: every value lies in `[lo, hi]`, inside the type's range.
        Dest::I8(y) => body::<MUL, AWAY, _>(x, p, lo, hi, y, |q| q as i8),
        Dest::U8(y) => body::<MUL, AWAY, _>(x, p, lo, hi, y, |q| q as u8),
        Dest::I16(y) => body::<MUL, AWAY, _>(x, p, lo, hi, y, |q| q as i16),
        Dest::U16(y) => body::<MUL, AWAY, _>(x, p, lo, hi, y, |q| q as u16),
        Dest::I32(y) => body::<MUL, AWAY, _>(x, p, lo, hi, y, |q| q),
        Dest::Nibbles(y) => {
            let mut buf = [0i32; NIBBLE_CHUNK];
            for (k, (x, y)) in x.chunks(NIBBLE_CHUNK).zip(y.chunks_mut(NIBBLE_CHUNK / 2)).enumerate() {
                let v = &mut buf[..x.len()];
                body::<MUL, AWAY, _>(x, p.skip(k * NIBBLE_CHUNK), lo, hi, v, |q| q);
                for (d, pair) in y.iter_mut().zip(v.chunks_exact(2)) {
                    *d = (pair[0] as u8 & 0x0F) | ((pair[1] as u8) << 4);
                }
            }
        }
    }
}

#[inline(always)]
fn generic(x: &[f32], p: RunParams<'_>, a: Arithmetic, lo: f32, hi: f32, y: Dest<'_>) {
    match (a.multiply, a.half_away) {
        (false, false) => typed::<false, false>(x, p, lo, hi, y),
        (false, true) => typed::<false, true>(x, p, lo, hi, y),
        (true, false) => typed::<true, false>(x, p, lo, hi, y),
        (true, true) => typed::<true, true>(x, p, lo, hi, y),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn generic_avx2(x: &[f32], p: RunParams<'_>, a: Arithmetic, lo: f32, hi: f32, y: Dest<'_>) {
    generic(x, p, a, lo, hi, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn generic_avx512(x: &[f32], p: RunParams<'_>, a: Arithmetic, lo: f32, hi: f32, y: Dest<'_>) {
    generic(x, p, a, lo, hi, y)
}

/// Quantizes `x` (no NaN; `y` as long as `x`, or `x.len() / 2` bytes of nibbles for an even `x`;
/// parameters at least as long in the per-element case) into integers clamped to `[lo, hi]` (a
/// range inside `y`'s type), on the path `isa` (already checked available).
pub(crate) fn quantize_run_on(
    isa: Isa,
    x: &[f32],
    p: RunParams<'_>,
    a: Arithmetic,
    (lo, hi): (i32, i32),
    mut y: Dest<'_>,
) {
    if let (RunParams::Broadcast { factor, zero_point }, Dest::Nibbles(y), ONNX) = (p, &mut y, a) {
        if onnx_nibbles(isa, x, factor, zero_point as i32, (lo, hi), y) {
            return;
        }
    }
    let (lo, hi) = (lo as f32, hi as f32);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `Isa::Avx2` available: the CPU has AVX2, FMA and F16C.
        Isa::Avx2 => unsafe { generic_avx2(x, p, a, lo, hi, y) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `Isa::Avx512` available: AVX-512 F/BW/VL/DQ and AVX2's set.
        Isa::Avx512 => unsafe { generic_avx512(x, p, a, lo, hi, y) },
        #[cfg(target_arch = "aarch64")]
        // NEON is part of aarch64's baseline: the portable body is already vectorized there.
        Isa::Neon | Isa::Dotprod | Isa::I8mm => generic(x, p, a, lo, hi, y),
        Isa::Scalar => generic(x, p, a, lo, hi, y),
    }
}

/// ONNX QuantizeLinear's arithmetic: division, half to even.
const ONNX: Arithmetic = Arithmetic { multiply: false, half_away: false };

/// Elements the ONNX nibble path quantizes to bytes at a time (a buffer in L1).
const BYTE_CHUNK: usize = 2048;

/// ONNX arithmetic of one scale into nibbles through the i8/u8 QuantizeLinear kernels (exact, and
/// faster than a division): bytes in a buffer, clamped to `[lo, hi]` (clamping to a sub-range after
/// the type's range is clamping to the sub-range), packed. False, with `y` untouched, if the
/// kernels refuse the parameters (a scale that is not normal, a zero point outside their type).
fn onnx_nibbles(
    isa: Isa,
    x: &[f32],
    scale: f32,
    zero_point: i32,
    (lo, hi): (i32, i32),
    y: &mut [u8],
) -> bool {
    let signed = lo < 0;
    let (Ok(zp8), Ok(zpu)) = (i8::try_from(zero_point), u8::try_from(zero_point.max(0))) else {
        return false;
    };
    if super::check_scale(scale).is_err() || !(-128..=255).contains(&lo) || !(-128..=255).contains(&hi) {
        return false;
    }
    let mut buf = [0u8; BYTE_CHUNK];
    for (x, y) in x.chunks(BYTE_CHUNK).zip(y.chunks_mut(BYTE_CHUNK / 2)) {
        let v = &mut buf[..x.len()];
        let done = if signed {
            super::quantize_i8_scanned_on(isa, x, scale, zp8, bytemuck::cast_slice_mut(v))
        } else {
            super::quantize_u8_scanned_on(isa, x, scale, zpu, v)
        };
        if done.is_err() {
            return false;
        }
        clamp_pack_on(isa, v, signed, (lo, hi), y);
    }
    true
}

#[inline(always)]
fn clamp_pack(v: &[u8], signed: bool, (lo, hi): (i32, i32), y: &mut [u8]) {
    if signed {
        let (lo, hi) = (lo as i8, hi as i8);
        for (d, p) in y.iter_mut().zip(v.chunks_exact(2)) {
            let (a, b) = ((p[0] as i8).clamp(lo, hi) as u8, (p[1] as i8).clamp(lo, hi) as u8);
            *d = (a & 0x0F) | (b << 4);
        }
    } else {
        let (lo, hi) = (lo as u8, hi as u8);
        for (d, p) in y.iter_mut().zip(v.chunks_exact(2)) {
            *d = (p[0].clamp(lo, hi) & 0x0F) | (p[1].clamp(lo, hi) << 4);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn clamp_pack_avx2(v: &[u8], signed: bool, r: (i32, i32), y: &mut [u8]) {
    clamp_pack(v, signed, r, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn clamp_pack_avx512(v: &[u8], signed: bool, r: (i32, i32), y: &mut [u8]) {
    clamp_pack(v, signed, r, y)
}

/// Clamps byte values (i8 if `signed`, else u8) to `r` (a 4-bit range) and packs them in pairs.
fn clamp_pack_on(isa: Isa, v: &[u8], signed: bool, r: (i32, i32), y: &mut [u8]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `Isa::Avx2` available: the CPU has AVX2, FMA and F16C.
        Isa::Avx2 => unsafe { clamp_pack_avx2(v, signed, r, y) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `Isa::Avx512` available: AVX-512 F/BW/VL/DQ and AVX2's set.
        Isa::Avx512 => unsafe { clamp_pack_avx512(v, signed, r, y) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::Dotprod | Isa::I8mm => clamp_pack(v, signed, r, y),
        Isa::Scalar => clamp_pack(v, signed, r, y),
    }
}

/// Whether `v` is an infinity or NaN, as an integer test that vectorizes (all exponent bits set).
#[inline(always)]
fn non_finite_bit(v: f32) -> u32 {
    u32::from(v.to_bits() & 0x7F80_0000 == 0x7F80_0000)
}

#[inline(always)]
fn columns(x: &[f32], mins: &mut [f32], maxs: &mut [f32]) -> bool {
    let mut bad = 0u32;
    for ((l, h), &v) in mins.iter_mut().zip(maxs.iter_mut()).zip(x) {
        *l = if v < *l { v } else { *l };
        *h = if v > *h { v } else { *h };
        bad |= non_finite_bit(v);
    }
    bad == 0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn columns_avx2(x: &[f32], mins: &mut [f32], maxs: &mut [f32]) -> bool {
    columns(x, mins, maxs)
}

/// [`columns`] with `vminps`/`vmaxps` and plain stores (the portable body compiles to compares and
/// masked stores): `vminps(v, l)` is `v < l ? v : l`, the scalar select exactly.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn columns_avx512(x: &[f32], mins: &mut [f32], maxs: &mut [f32]) -> bool {
    use std::arch::x86_64::*;
    let n = x.len().min(mins.len()).min(maxs.len());
    let exponent = _mm512_set1_epi32(0x7F80_0000);
    let mut non_finite: __mmask16 = 0;
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n, and no slice is shorter than n.
        unsafe {
            let v = _mm512_loadu_ps(x.as_ptr().add(i));
            let lo = _mm512_loadu_ps(mins.as_ptr().add(i));
            let hi = _mm512_loadu_ps(maxs.as_ptr().add(i));
            _mm512_storeu_ps(mins.as_mut_ptr().add(i), _mm512_min_ps(v, lo));
            _mm512_storeu_ps(maxs.as_mut_ptr().add(i), _mm512_max_ps(v, hi));
            non_finite |=
                _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(v), exponent), exponent);
        }
        i += 16;
    }
    columns(&x[i..n], &mut mins[i..n], &mut maxs[i..n]) && non_finite == 0
}

/// Widens `mins[i]` and `maxs[i]` to `x[i]` (one row of a column-wise range: channels or blocks
/// that run across rows); false if `x` holds an infinity or NaN (whose `mins`/`maxs` are then
/// meaningless). On the path `isa` (already checked available).
pub(crate) fn min_max_columns_on(isa: Isa, x: &[f32], mins: &mut [f32], maxs: &mut [f32]) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `Isa::Avx2` available: the CPU has AVX2, FMA and F16C.
        Isa::Avx2 => unsafe { columns_avx2(x, mins, maxs) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `Isa::Avx512` available: AVX-512 F/BW/VL/DQ and AVX2's set.
        Isa::Avx512 => unsafe { columns_avx512(x, mins, maxs) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::Dotprod | Isa::I8mm => columns(x, mins, maxs),
        Isa::Scalar => columns(x, mins, maxs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_rng::Rng;

    /// The definition in f64, as `quant`'s per-element quantizer computes it.
    fn reference(x: f32, factor: f32, zp: f32, a: Arithmetic, lo: i32, hi: i32) -> i32 {
        let t = if a.multiply { x * factor } else { x / factor };
        let r = if a.half_away { t.round() } else { t.round_ties_even() };
        (f64::from(r) + f64::from(zp)).clamp(f64::from(lo), f64::from(hi)) as i32
    }

    #[test]
    fn every_tier_matches_the_f64_definition() {
        let mut rng = Rng(11);
        let edges =
            [0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 127.5, -128.5, 1e30, -1e30, f32::INFINITY, f32::NEG_INFINITY];
        for &n in &[0usize, 1, 2, 7, 16, 31, 97, 1000, 1031] {
            let mut x = rng.floats(n, 300.0);
            for (i, e) in edges.iter().enumerate().take(n) {
                x[i * 5 % n.max(1)] = *e;
            }
            let factors: Vec<f32> = (0..n).map(|i| 0.37 + (i % 13) as f32 * 0.5).collect();
            let zps: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
            for a in [false, true]
                .iter()
                .flat_map(|&m| [false, true].map(|h| Arithmetic { multiply: m, half_away: h }))
            {
                for (lo, hi) in
                    [(-128, 127), (0, 255), (-8, 7), (0, 15), (0, 65535), (-127, 127), (-300, 300)]
                {
                    let want: Vec<i32> =
                        (0..n).map(|i| reference(x[i], factors[i], zps[i], a, lo, hi)).collect();
                    let want_b: Vec<i32> = (0..n).map(|i| reference(x[i], 0.75, 2.0, a, lo, hi)).collect();
                    for isa in Isa::available() {
                        let per_element = RunParams::PerElement { factors: &factors, zero_points: &zps };
                        let broadcast = RunParams::Broadcast { factor: 0.75, zero_point: 2.0 };
                        for (p, want) in [(per_element, &want), (broadcast, &want_b)] {
                            let got = every_dest(isa, &x, p, a, (lo, hi));
                            for (dest, got) in got {
                                let m = got.len();
                                assert_eq!(got, want[..m], "{isa} {a:?} [{lo}, {hi}] n={n} {dest} {p:?}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn column_ranges_match_a_plain_fold_on_every_tier() {
        let mut rng = Rng(12);
        for &n in &[0usize, 1, 15, 16, 17, 97, 2048, 2051] {
            let rows: Vec<Vec<f32>> = (0..5).map(|_| rng.floats(n, 100.0)).collect();
            let want_min: Vec<f32> =
                (0..n).map(|j| rows.iter().map(|r| r[j]).fold(f32::INFINITY, f32::min)).collect();
            let want_max: Vec<f32> =
                (0..n).map(|j| rows.iter().map(|r| r[j]).fold(f32::NEG_INFINITY, f32::max)).collect();
            for isa in Isa::available() {
                let (mut lo, mut hi) = (vec![f32::INFINITY; n], vec![f32::NEG_INFINITY; n]);
                for r in &rows {
                    assert!(min_max_columns_on(isa, r, &mut lo, &mut hi), "{isa} n={n}");
                }
                assert_eq!((&lo, &hi), (&want_min, &want_max), "{isa} n={n}");
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN] {
                    for at in [n / 2, n.saturating_sub(1)].into_iter().filter(|_| n > 0) {
                        let mut r = rows[0].clone();
                        r[at] = bad;
                        assert!(!min_max_columns_on(isa, &r, &mut lo, &mut hi), "{isa} n={n} {bad} at {at}");
                    }
                }
            }
        }
    }

    /// The run quantized into every destination type that holds `[lo, hi]`, read back as i32
    /// (nibbles: the even prefix, sign-extended for a signed range).
    fn every_dest(
        isa: Isa,
        x: &[f32],
        p: RunParams<'_>,
        a: Arithmetic,
        r: (i32, i32),
    ) -> Vec<(&'static str, Vec<i32>)> {
        let n = x.len();
        let fits = |lo: i32, hi: i32| r.0 >= lo && r.1 <= hi;
        let mut out = Vec::new();
        let mut y = vec![i32::MIN; n];
        quantize_run_on(isa, x, p, a, r, Dest::I32(&mut y));
        out.push(("i32", y));
        if fits(-128, 127) {
            let mut y = vec![i8::MIN; n];
            quantize_run_on(isa, x, p, a, r, Dest::I8(&mut y));
            out.push(("i8", y.iter().map(|&v| i32::from(v)).collect()));
        }
        if fits(0, 255) {
            let mut y = vec![u8::MAX; n];
            quantize_run_on(isa, x, p, a, r, Dest::U8(&mut y));
            out.push(("u8", y.iter().map(|&v| i32::from(v)).collect()));
        }
        if fits(-32768, 32767) {
            let mut y = vec![i16::MIN; n];
            quantize_run_on(isa, x, p, a, r, Dest::I16(&mut y));
            out.push(("i16", y.iter().map(|&v| i32::from(v)).collect()));
        }
        if fits(0, 65535) {
            let mut y = vec![u16::MAX; n];
            quantize_run_on(isa, x, p, a, r, Dest::U16(&mut y));
            out.push(("u16", y.iter().map(|&v| i32::from(v)).collect()));
        }
        if fits(-8, 7) || fits(0, 15) {
            let m = n / 2 * 2;
            let mut y = vec![0xA5u8; m / 2];
            quantize_run_on(isa, &x[..m], p, a, r, Dest::Nibbles(&mut y));
            let signed = r.0 < 0;
            let nibble = |b: u8| if signed { i32::from((b << 4) as i8 >> 4) } else { i32::from(b & 0x0F) };
            out.push(("nibbles", y.iter().flat_map(|&b| [nibble(b), nibble(b >> 4)]).collect()));
        }
        out
    }
}
