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
    y: Dest<'_>,
) {
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
