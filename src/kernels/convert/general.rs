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
        /// For a division, what replaces it on the tiers with fast f64 vectors; `None` divides.
        wide: Option<Wide<'a>>,
    },
}

/// What replaces a per-element division, element `i` from entry `i` of each slice.
#[derive(Clone, Copy, Debug)]
pub struct Wide<'a> {
    /// [`wide_reciprocal`] of each divisor.
    pub reciprocals: &'a [f64],
    /// [`fixed_reciprocal`] of each divisor (every one normal), or empty: the AVX-512 tier's
    /// fixed-point quotient, exact except at lanes it flags, which take the f64 reciprocal.
    pub fixed: &'a [f32],
    /// [`fixed_offset`] of each zero point (entries as for `fixed`).
    pub offsets: &'a [i32],
    /// Elements the caller reads after this run (empty for none): brought into L2 along the way,
    /// while the arithmetic leaves the memory idle.
    pub ahead: &'a [f32],
}

impl<'a> Wide<'a> {
    /// The same from element `k` on.
    fn skip(self, k: usize) -> Self {
        Wide {
            reciprocals: &self.reciprocals[k..],
            fixed: self.fixed.get(k..).unwrap_or_default(),
            offsets: self.offsets.get(k..).unwrap_or_default(),
            ahead: self.ahead.get(k..).unwrap_or_default(),
        }
    }
}

/// Fraction bits of the fixed-point quotient (see `x86.rs`'s `FixedQuotient`).
pub(super) const FRACTION_BITS: i32 = 11;

/// `1.5 * 2^23 + 2^10`: added to a float of magnitude below `2^22`, it rounds it to an integer (half
/// to even) held in the low mantissa bits, so the sum's bit pattern is `0x4B40_0400 + integer`;
/// the `2^10` moves half-integers of the fixed-point quotient to multiples of `2^11`.
pub(super) const SHIFTER: f32 = 12_583_936.0;

/// `RN(2^11 / scale)`, the multiplier of the fixed-point quotient, or `None` where it is not a
/// normal f32 (scales below about `2^-116`), which keep the division.
#[cfg(target_arch = "x86_64")]
pub(crate) fn fixed_reciprocal(scale: f32) -> Option<f32> {
    fixed_from_wide(wide_reciprocal(scale))
}

/// What the fixed-point quotient's sum, shifted down by its fraction bits, needs added to give
/// `round(x / scale) + zero_point`: the zero point less the shifter's part, `bits(SHIFTER) >> 11`.
pub(crate) fn fixed_offset(zero_point: i32) -> i32 {
    zero_point - (SHIFTER.to_bits() >> FRACTION_BITS) as i32
}

/// [`fixed_reciprocal`] from the scale's [`wide_reciprocal`]: `2^11 * RN64(1 / scale)` is exact,
/// and rounding a quotient of f32 values to f64 and then to f32 rounds it as once to f32 (53 bits
/// are at least twice 24 plus 2), so this is `RN32(2^11 / scale)` without a second division.
pub(crate) fn fixed_from_wide(wide: f64) -> Option<f32> {
    let reciprocal = (wide * f64::from(1u32 << FRACTION_BITS)) as f32;
    reciprocal.is_normal().then_some(reciprocal)
}

/// `RN(1 / divisor)` in f64, with which `(x as f64 * reciprocal) as f32` is `x / divisor` rounded
/// as f32 division rounds it wherever that quotient is normal (see [`quotient`]).
pub(crate) fn wide_reciprocal(divisor: f32) -> f64 {
    1.0 / f64::from(divisor)
}

/// `x / divisor` in f32 without a division, from `reciprocal = RN(1 / divisor)` in f64 (the divisor
/// normal and positive), exact wherever the quotient is normal or overflows: the f64 product is
/// within `2^-52` (relative) of `x / divisor`, and no quotient of two f32 values lies that close
/// to a rounding boundary of f32 without lying on it, which it never does there. (A boundary `m`
/// is a midpoint of two f32 values: 25 significant bits, odd in the last. If `x / d = m`, then
/// `x = m * d`, a product of odd parts of at least 25 bits, which a 24-bit `x` is not. Otherwise,
/// with `x / d` in `[2^e, 2^(e+1))` and `d` in `[2^f, 2^(f+1))`, `x - m * d` is a non-zero
/// multiple of `2^(e+f-48)`, so `|x / d - m|` is at least `2^(e-49)`, `2^-50` relative.) The
/// rounding to f32 is then on the same side of every boundary as the exact quotient's. A
/// subnormal quotient may land on a midpoint (`5 * 2^-140 / (5 * 2^10)` is `2^-150`) and round
/// the other way; below `2^-126` either rounds to the integer 0, all the quantizer asks of it.
#[inline(always)]
fn quotient(x: f32, reciprocal: f64) -> f32 {
    (f64::from(x) * reciprocal) as f32
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
    finish::<AWAY>(if MUL { x * factor } else { x / factor }, zero_point, lo, hi)
}

/// Rounds `t`, adds the zero point and clamps, as [`one`] does after its division or product.
#[inline(always)]
fn finish<const AWAY: bool>(t: f32, zero_point: f32, lo: f32, hi: f32) -> i32 {
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
            RunParams::PerElement { factors, zero_points, wide } => RunParams::PerElement {
                factors: &factors[k..],
                zero_points: &zero_points[k..],
                wide: wide.map(|w| w.skip(k)),
            },
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

#[cfg(target_arch = "x86_64")]
impl Dest<'_> {
    /// How many elements it holds (two a byte for nibbles).
    pub(super) fn len(&self) -> usize {
        match self {
            Dest::I8(y) => y.len(),
            Dest::U8(y) => y.len(),
            Dest::I16(y) => y.len(),
            Dest::U16(y) => y.len(),
            Dest::I32(y) => y.len(),
            Dest::Nibbles(y) => 2 * y.len(),
        }
    }

    /// The same destination for a shorter borrow.
    fn reborrow(&mut self) -> Dest<'_> {
        match self {
            Dest::I8(y) => Dest::I8(y),
            Dest::U8(y) => Dest::U8(y),
            Dest::I16(y) => Dest::I16(y),
            Dest::U16(y) => Dest::U16(y),
            Dest::I32(y) => Dest::I32(y),
            Dest::Nibbles(y) => Dest::Nibbles(y),
        }
    }

    /// The destination of the elements from `k` on (`k` even for nibbles).
    fn skip(self, k: usize) -> Self {
        match self {
            Dest::I8(y) => Dest::I8(&mut y[k..]),
            Dest::U8(y) => Dest::U8(&mut y[k..]),
            Dest::I16(y) => Dest::I16(&mut y[k..]),
            Dest::U16(y) => Dest::U16(&mut y[k..]),
            Dest::I32(y) => Dest::I32(&mut y[k..]),
            Dest::Nibbles(y) => Dest::Nibbles(&mut y[k / 2..]),
        }
    }
}

/// Writes `one` of each element to `y` through `cast`; with `WIDE`, divisions with reciprocals
/// given take them (tiers whose f64 vectors are fast).
#[inline(always)]
fn body<const MUL: bool, const AWAY: bool, const WIDE: bool, T>(
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
        RunParams::PerElement { zero_points, wide: Some(wide), .. } if WIDE && !MUL => {
            for (((d, &v), &r), &z) in y.iter_mut().zip(x).zip(wide.reciprocals).zip(zero_points) {
                *d = cast(finish::<AWAY>(quotient(v, r), z, lo, hi));
            }
        }
        RunParams::PerElement { factors, zero_points, .. } => {
            for (((d, &v), &f), &z) in y.iter_mut().zip(x).zip(factors).zip(zero_points) {
                *d = cast(one::<MUL, AWAY>(v, f, z, lo, hi));
            }
        }
    }
}

/// Elements packed to nibbles at a time, through an i32 buffer in L1.
const NIBBLE_CHUNK: usize = 256;

#[inline(always)]
fn typed<const MUL: bool, const AWAY: bool, const WIDE: bool>(
    x: &[f32],
    p: RunParams<'_>,
    lo: f32,
    hi: f32,
    y: Dest<'_>,
) {
    match y {
        // The `as` casts are exact: every value lies in `[lo, hi]`, inside the type's range.
        Dest::I8(y) => body::<MUL, AWAY, WIDE, _>(x, p, lo, hi, y, |q| q as i8),
        Dest::U8(y) => body::<MUL, AWAY, WIDE, _>(x, p, lo, hi, y, |q| q as u8),
        Dest::I16(y) => body::<MUL, AWAY, WIDE, _>(x, p, lo, hi, y, |q| q as i16),
        Dest::U16(y) => body::<MUL, AWAY, WIDE, _>(x, p, lo, hi, y, |q| q as u16),
        Dest::I32(y) => body::<MUL, AWAY, WIDE, _>(x, p, lo, hi, y, |q| q),
        Dest::Nibbles(y) => {
            let mut buf = [0i32; NIBBLE_CHUNK];
            for (k, (x, y)) in x.chunks(NIBBLE_CHUNK).zip(y.chunks_mut(NIBBLE_CHUNK / 2)).enumerate() {
                let v = &mut buf[..x.len()];
                body::<MUL, AWAY, WIDE, _>(x, p.skip(k * NIBBLE_CHUNK), lo, hi, v, |q| q);
                for (d, pair) in y.iter_mut().zip(v.chunks_exact(2)) {
                    *d = (pair[0] as u8 & 0x0F) | ((pair[1] as u8) << 4);
                }
            }
        }
    }
}

#[inline(always)]
fn generic<const WIDE: bool>(x: &[f32], p: RunParams<'_>, a: Arithmetic, lo: f32, hi: f32, y: Dest<'_>) {
    match (a.multiply, a.half_away) {
        (false, false) => typed::<false, false, WIDE>(x, p, lo, hi, y),
        (false, true) => typed::<false, true, WIDE>(x, p, lo, hi, y),
        (true, false) => typed::<true, false, WIDE>(x, p, lo, hi, y),
        (true, true) => typed::<true, true, WIDE>(x, p, lo, hi, y),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn generic_avx2(x: &[f32], p: RunParams<'_>, a: Arithmetic, lo: f32, hi: f32, y: Dest<'_>) {
    generic::<true>(x, p, a, lo, hi, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn generic_avx512(x: &[f32], p: RunParams<'_>, a: Arithmetic, lo: f32, hi: f32, y: Dest<'_>) {
    generic::<true>(x, p, a, lo, hi, y)
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
    #[cfg(target_arch = "x86_64")]
    if let (Isa::Avx512, RunParams::PerElement { zero_points, wide: Some(wide), .. }, false) =
        (isa, p, a.multiply)
    {
        let kernel = super::x86_512::quantize_per_element::<false>;
        let kernel = if a.half_away { super::x86_512::quantize_per_element::<true> } else { kernel };
        // SAFETY: the caller checked `Isa::Avx512` available.
        let done = unsafe { kernel(x, wide, zero_points, (lo, hi), y.reborrow()) };
        if done < x.len() {
            let (x, p, y) = (&x[done..], p.skip(done), y.skip(done));
            // SAFETY: as above.
            unsafe { generic_avx512(x, p, a, lo, hi, y) };
        }
        return;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `Isa::Avx2` available: the CPU has AVX2, FMA and F16C.
        Isa::Avx2 => unsafe { generic_avx2(x, p, a, lo, hi, y) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `Isa::Avx512` available: AVX-512 F/BW/VL/DQ and AVX2's set.
        Isa::Avx512 => unsafe { generic_avx512(x, p, a, lo, hi, y) },
        #[cfg(target_arch = "aarch64")]
        // NEON is part of aarch64's baseline: the portable body is already vectorized there.
        Isa::Neon | Isa::Dotprod | Isa::I8mm => generic::<true>(x, p, a, lo, hi, y),
        Isa::Scalar => generic::<false>(x, p, a, lo, hi, y),
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

#[inline(always)]
fn reciprocals(
    scales: &[f32],
    zero_points: &[i32],
    wide: &mut [f64],
    fixed: &mut [f32],
    offsets: &mut [i32],
) -> bool {
    let mut every_fixed = true;
    for ((((w, f), o), &s), &z) in
        wide.iter_mut().zip(fixed.iter_mut()).zip(offsets.iter_mut()).zip(scales).zip(zero_points)
    {
        *w = wide_reciprocal(s);
        let fixed = fixed_from_wide(*w);
        *f = fixed.unwrap_or(0.0);
        *o = fixed_offset(z);
        every_fixed &= fixed.is_some();
    }
    every_fixed
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn reciprocals_avx2(s: &[f32], z: &[i32], w: &mut [f64], f: &mut [f32], o: &mut [i32]) -> bool {
    reciprocals(s, z, w, f, o)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn reciprocals_avx512(s: &[f32], z: &[i32], w: &mut [f64], f: &mut [f32], o: &mut [i32]) -> bool {
    reciprocals(s, z, w, f, o)
}

/// [`wide_reciprocal`] and [`fixed_from_wide`] of each scale and [`fixed_offset`] of each zero
/// point into `wide`, `fixed` and `offsets` (each as long as `scales`), on the path `isa`
/// (available): whether every fixed-point reciprocal is normal.
pub(crate) fn reciprocals_on(
    isa: Isa,
    (scales, zero_points): (&[f32], &[i32]),
    wide: &mut [f64],
    fixed: &mut [f32],
    offsets: &mut [i32],
) -> bool {
    let (s, z) = (scales, zero_points);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `Isa::Avx2` available: the CPU has AVX2, FMA and F16C.
        Isa::Avx2 => unsafe { reciprocals_avx2(s, z, wide, fixed, offsets) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked `Isa::Avx512` available: AVX-512 F/BW/VL/DQ and AVX2's set.
        Isa::Avx512 => unsafe { reciprocals_avx512(s, z, wide, fixed, offsets) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::Dotprod | Isa::I8mm => reciprocals(s, z, wide, fixed, offsets),
        Isa::Scalar => reciprocals(s, z, wide, fixed, offsets),
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
    for row in x.chunks(mins.len().max(1)) {
        for ((l, h), &v) in mins.iter_mut().zip(maxs.iter_mut()).zip(row) {
            *l = if v < *l { v } else { *l };
            *h = if v > *h { v } else { *h };
            bad |= non_finite_bit(v);
        }
    }
    bad == 0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn columns_avx2(x: &[f32], mins: &mut [f32], maxs: &mut [f32]) -> bool {
    columns(x, mins, maxs)
}

/// [`columns`] four rows at a time with `vminps`/`vmaxps` (`vminps(v, l)` is `v < l ? v : l`, the
/// scalar select exactly) into registers, stored once per four rows. NaN is caught by a chain of
/// ordered compares; an infinity, by the range it leaves (`-inf` in `mins` or `+inf` in `maxs`,
/// which finite or empty ranges never hold).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn columns_avx512(x: &[f32], mins: &mut [f32], maxs: &mut [f32]) -> bool {
    use std::arch::x86_64::*;
    const ROWS: usize = 4;
    let cols = mins.len().min(maxs.len());
    if cols == 0 {
        return true;
    }
    let whole = cols / 16 * 16;
    let (neg_inf, pos_inf) = (_mm512_set1_ps(f32::NEG_INFINITY), _mm512_set1_ps(f32::INFINITY));
    let (mut ordered, mut infinite): (__mmask16, __mmask16) = (0xFFFF, 0);
    let mut finite = true;
    let mut blocks = x.chunks_exact(ROWS * cols);
    for block in &mut blocks {
        for j in (0..whole).step_by(16) {
            // SAFETY: j + 16 <= whole <= cols, so every load and store lies in one row of `block`
            // or inside `mins`/`maxs`.
            unsafe {
                let mut lo = _mm512_loadu_ps(mins.as_ptr().add(j));
                let mut hi = _mm512_loadu_ps(maxs.as_ptr().add(j));
                for r in 0..ROWS {
                    let v = _mm512_loadu_ps(block.as_ptr().add(r * cols + j));
                    lo = _mm512_min_ps(v, lo);
                    hi = _mm512_max_ps(v, hi);
                    ordered = _mm512_mask_cmp_ps_mask::<_CMP_ORD_Q>(ordered, v, v);
                }
                infinite |= _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(lo, neg_inf)
                    | _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(hi, pos_inf);
                _mm512_storeu_ps(mins.as_mut_ptr().add(j), lo);
                _mm512_storeu_ps(maxs.as_mut_ptr().add(j), hi);
            }
        }
        for row in block.chunks_exact(cols) {
            finite &= columns(&row[whole..], &mut mins[whole..], &mut maxs[whole..]);
        }
    }
    finite &= columns(blocks.remainder(), mins, maxs);
    finite && ordered == 0xFFFF && infinite == 0
}

/// Widens `mins[i]` and `maxs[i]` (finite, or the empty range `+inf`/`-inf`) to column `i` of `x`,
/// whole rows of `mins.len()` columns (a column-wise range: channels or blocks that run across
/// rows); false if `x` holds an infinity or NaN (whose `mins`/`maxs` are then meaningless). On the
/// path `isa` (already checked available).
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
                    let (reciprocals, fixed, offsets) = wide_parts(&factors, &zps);
                    let wide = Wide { reciprocals: &reciprocals, fixed: &[], offsets: &offsets, ahead: &x };
                    for isa in Isa::available() {
                        let per_element =
                            RunParams::PerElement { factors: &factors, zero_points: &zps, wide: None };
                        let per_element_wide =
                            RunParams::PerElement { factors: &factors, zero_points: &zps, wide: Some(wide) };
                        let per_element_fixed = RunParams::PerElement {
                            factors: &factors,
                            zero_points: &zps,
                            wide: Some(Wide { fixed: &fixed, ..wide }),
                        };
                        let broadcast = RunParams::Broadcast { factor: 0.75, zero_point: 2.0 };
                        for (p, want) in [
                            (per_element, &want),
                            (per_element_wide, &want),
                            (per_element_fixed, &want),
                            (broadcast, &want_b),
                        ] {
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

    /// The f64 and fixed-point reciprocals of these divisors and the fixed-point offsets of these
    /// zero points.
    fn wide_parts(factors: &[f32], zps: &[f32]) -> (Vec<f64>, Vec<f32>, Vec<i32>) {
        (
            factors.iter().map(|&f| wide_reciprocal(f)).collect(),
            factors.iter().map(|&f| fixed_from_wide(wide_reciprocal(f)).unwrap()).collect(),
            zps.iter().map(|&z| fixed_offset(z as i32)).collect(),
        )
    }

    /// The multiplication by the f64 reciprocal is f32 division, bit for bit wherever the quotient is
    /// normal or overflows: on random pairs over the whole exponent range (subnormal dividends,
    /// overflowing and underflowing quotients), and on dividends made to put the quotient on, or one
    /// or two ulps beside, every half-integer.
    #[test]
    fn wide_quotient_is_f32_division() {
        let mut rng = Rng(13);
        let check = |x: f32, d: f32| {
            let (got, want) = (quotient(x, wide_reciprocal(d)), x / d);
            if want.abs() >= f32::MIN_POSITIVE || want.is_nan() {
                assert_eq!(got.to_bits(), want.to_bits(), "{x:e} / {d:e}: {got:e} against {want:e}");
            } else {
                assert!(got.abs() <= f32::MIN_POSITIVE, "{x:e} / {d:e}: {got:e} against {want:e}");
            }
            let fixed = (f64::from(1u32 << FRACTION_BITS) / f64::from(d)) as f32;
            let want = fixed.is_normal().then_some(fixed);
            assert_eq!(fixed_from_wide(wide_reciprocal(d)), want, "2^11 / {d:e}");
        };
        for _ in 0..200_000 {
            let bits = rng.next();
            let x = f32::from_bits(bits as u32);
            // Any normal positive divisor: exponent field 1..=254.
            let d = f32::from_bits((bits >> 32) as u32 & 0x007F_FFFF | (1 + (bits >> 55) as u32 % 254) << 23);
            if x.is_finite() {
                check(x, d);
            }
        }
        for _ in 0..2000 {
            let d = (1.0 + rng.floats(1, 1.0)[0].abs()) * 2f32.powi(rng.floats(1, 60.0)[0] as i32);
            for k in -300..300 {
                let tie = (k as f32 + 0.5) * d;
                for step in -2i32..=2 {
                    let x = f32::from_bits(tie.to_bits().wrapping_add_signed(step));
                    check(x, d);
                    check(-x, d);
                }
            }
        }
        // A subnormal quotient on a midpoint: the integer it rounds to is 0 either way.
        for d in [3.0, 5.0, 7.0, 11.0].map(|k: f32| k * 1024.0) {
            let x = d * 2f32.powi(-150);
            let (got, want) = (quotient(x, wide_reciprocal(d)), x / d);
            assert!(want.abs() <= 2f32.powi(-149) && got.abs() <= 2f32.powi(-149), "{x:e} / {d:e}");
            assert_eq!((got.round_ties_even(), got.round()), (0.0, 0.0));
        }
        for x in
            [f32::MAX, f32::MIN_POSITIVE, 1e-45, -1e-45, 3.0, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0]
        {
            for d in [f32::MIN_POSITIVE, 1.5 * f32::MIN_POSITIVE, f32::MAX, 1.0, 3.0, 1e-30] {
                check(x, d);
            }
        }
    }

    /// Per-element divisions whose quotients are exact half-integers (power-of-two divisors) or
    /// within an ulp of one, with both roundings, on every tier and destination.
    #[test]
    fn per_element_division_at_ties_on_every_tier() {
        let mut rng = Rng(14);
        let (mut x, mut factors) = (Vec::new(), Vec::new());
        for i in 0..96 {
            let d = if i % 2 == 0 {
                2f32.powi(i % 24 - 12)
            } else {
                (1.0 + rng.uniform().abs()) * 2f32.powi(i % 30 - 15)
            };
            for k in -20..20 {
                let tie = (k as f32 + 0.5) * d;
                for step in -1i32..=1 {
                    x.push(f32::from_bits(tie.to_bits().wrapping_add_signed(step)));
                    factors.push(d);
                }
            }
        }
        let n = x.len();
        let zps: Vec<f32> = (0..n).map(|i| (i % 5) as f32 - 2.0).collect();
        let (reciprocals, fixed, offsets) = wide_parts(&factors, &zps);
        let wide = Wide { reciprocals: &reciprocals, fixed: &fixed, offsets: &offsets, ahead: &[] };
        for wide in [wide, Wide { fixed: &[], ..wide }] {
            let p = RunParams::PerElement { factors: &factors, zero_points: &zps, wide: Some(wide) };
            for half_away in [false, true] {
                let a = Arithmetic { multiply: false, half_away };
                for (lo, hi) in [(-128, 127), (-8, 7), (0, 255), (-300, 300)] {
                    let want: Vec<i32> =
                        (0..n).map(|i| reference(x[i], factors[i], zps[i], a, lo, hi)).collect();
                    for isa in Isa::available() {
                        for (dest, got) in every_dest(isa, &x, p, a, (lo, hi)) {
                            let bad = got.iter().zip(&want).position(|(g, w)| g != w);
                            assert!(
                                bad.is_none(),
                                "{isa} {a:?} [{lo}, {hi}] {dest} at {bad:?} {}",
                                wide.fixed.len()
                            );
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
