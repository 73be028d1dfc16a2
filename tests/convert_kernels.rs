//! Every available conversion path against independent references: `half`'s scalar conversions, the
//! IEEE binary16 definition evaluated in f64, and ONNX QuantizeLinear / DequantizeLinear evaluated
//! in f64 (an f32 quotient or product correctly rounded from f64 is exactly the f32 operation).
//! Each path is run on random data and on edge values placed at every position of every length
//! 0..=67 (so both the vector bodies and the scalar tails see them) and on a few large lengths.

use greenai::kernels::convert::{self as cv, scalar};
use greenai::kernels::Isa;
use greenai::Error;
use half::{bf16, f16};
use proptest::prelude::*;

/// splitmix64: a small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn bits32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
    /// Uniform in [-r, r).
    fn uniform(&mut self, r: f32) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * r
    }
}

const LENGTHS_LARGE: [usize; 4] = [255, 1000, 4096, 4099];

fn lengths() -> impl Iterator<Item = usize> {
    (0..=67).chain(LENGTHS_LARGE)
}

/// f32 values that exercise every branch of the f32 -> f16 / bf16 casts.
fn cast_edges() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7F80_0001), // signalling NaN, payload only in the low bits
        f32::from_bits(0xFF80_2000), // signalling NaN with a payload f16 keeps
        f32::from_bits(0x7FC0_1234),
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        f32::from_bits(1),           // smallest f32 subnormal
        f32::from_bits(0x007F_FFFF), // largest f32 subnormal
        65504.0,                     // f16::MAX
        65519.996,                   // just below the f16 overflow threshold
        65520.0,                     // rounds to infinity in f16
        -65520.0,
        6.103_515_6e-5,              // f16::MIN_POSITIVE
        5.960_464_5e-8,              // smallest f16 subnormal
        2.980_232_2e-8,              // half of it: a tie, rounds to zero (even)
        2.980_232_5e-8,              // just above the tie: rounds up to the smallest subnormal
        8.940_697e-8,                // 1.5 subnormal steps: tie, rounds to 2 (even)
        1.000_488_3,                 // 1 + 2^-11: f16 tie, rounds to 1
        1.001_464_8,                 // 1 + 3 * 2^-11: f16 tie, rounds up to 1 + 2^-9
        f32::from_bits(0x3F80_8000), // bf16 tie, rounds to even (down)
        f32::from_bits(0x3F81_8000), // bf16 tie, rounds to even (up)
        f32::from_bits(0x3F80_8001), // just above a bf16 tie
        f32::from_bits(0x7F7F_8000), // rounds to bf16 infinity
        f32::from_bits(0x7F7F_7FFF), // rounds to bf16 max
        f32::from_bits(0x0000_8000), // subnormal bf16 tie, rounds to zero (even)
        f32::from_bits(0x0001_8000), // subnormal bf16 tie, rounds up to 2 (even)
        f32::from_bits(0x0000_8001), // just above a subnormal bf16 tie
        f32::from_bits(0x007F_8000), // tie into the smallest normal bf16
    ];
    v.extend(v.clone().iter().map(|x| -x));
    v
}

/// `len` random f32 bit patterns (every class: normals, subnormals, NaN, infinities).
fn random_bits(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| f32::from_bits(rng.bits32())).collect()
}

/// `base` with the edge values spread over it at a stride that depends on the length, so that
/// across lengths every edge value lands both in vector bodies and in tails.
fn with_edges(mut base: Vec<f32>, edges: &[f32], shift: usize) -> Vec<f32> {
    for (i, slot) in base.iter_mut().enumerate() {
        if (i + shift).is_multiple_of(3) {
            *slot = edges[(i + shift) % edges.len()];
        }
    }
    base
}

fn assert_same_bits(got: &[u16], want: &[u16], what: &str, isa: Isa, input: impl Fn(usize) -> String) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "{what} on {isa} at {i} (input {}): got {g:#06x}, want {w:#06x}", input(i));
    }
}

fn assert_same_f32(got: &[f32], want: &[f32], what: &str, isa: Isa) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what} on {isa} at {i}: got {g:e}, want {w:e}");
    }
}

#[test]
fn f32_to_f16_and_bf16_match_half_on_random_and_edge_bits() {
    let mut rng = Rng(1);
    let edges = cast_edges();
    for isa in Isa::available() {
        for len in lengths() {
            for shift in 0..3 {
                let x = with_edges(random_bits(&mut rng, len), &edges, shift);
                let mut h = vec![f16::ZERO; len];
                cv::f32_to_f16_on(isa, &x, &mut h).unwrap();
                let want: Vec<u16> = x.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
                let got: Vec<u16> = h.iter().map(|v| v.to_bits()).collect();
                assert_same_bits(&got, &want, "f32->f16", isa, |i| format!("{:#010x}", x[i].to_bits()));

                let mut b = vec![bf16::ZERO; len];
                cv::f32_to_bf16_on(isa, &x, &mut b).unwrap();
                let want: Vec<u16> = x.iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
                let got: Vec<u16> = b.iter().map(|v| v.to_bits()).collect();
                assert_same_bits(&got, &want, "f32->bf16", isa, |i| format!("{:#010x}", x[i].to_bits()));
            }
        }
    }
}

#[test]
fn a_million_random_f32_cast_like_half() {
    let mut rng = Rng(2);
    let x = random_bits(&mut rng, 1 << 20);
    let want_h: Vec<u16> = x.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
    let want_b: Vec<u16> = x.iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
    for isa in Isa::available() {
        let mut h = vec![f16::ZERO; x.len()];
        cv::f32_to_f16_on(isa, &x, &mut h).unwrap();
        let mut b = vec![bf16::ZERO; x.len()];
        cv::f32_to_bf16_on(isa, &x, &mut b).unwrap();
        let h: Vec<u16> = h.iter().map(|v| v.to_bits()).collect();
        let b: Vec<u16> = b.iter().map(|v| v.to_bits()).collect();
        assert_same_bits(&h, &want_h, "f32->f16", isa, |i| format!("{:#010x}", x[i].to_bits()));
        assert_same_bits(&b, &want_b, "f32->bf16", isa, |i| format!("{:#010x}", x[i].to_bits()));
    }
}

/// IEEE binary16 by its definition, in f64 (NaN returned as NaN; its payload is checked apart).
fn f16_by_definition(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1F);
    let man = f64::from(bits & 0x3FF);
    match exp {
        0 => sign * man * 2f64.powi(-24),
        31 if man == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + man / 1024.0) * 2f64.powi(exp - 15),
    }
}

#[test]
fn all_65536_f16_patterns_widen_exactly_and_narrow_back() {
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    for isa in Isa::available() {
        let mut wide = vec![0.0f32; all.len()];
        cv::f16_to_f32_on(isa, &all, &mut wide).unwrap();
        for (h, w) in all.iter().zip(&wide) {
            let want = f16_by_definition(h.to_bits());
            if want.is_nan() {
                // NaN stays NaN, quieted, keeping its payload in the top fraction bits (as `half`).
                let quiet = (u32::from(h.to_bits() & 0x8000) << 16)
                    | 0x7FC0_0000
                    | (u32::from(h.to_bits() & 0x3FF) << 13);
                assert_eq!(w.to_bits(), quiet, "f16 {:#06x} on {isa}", h.to_bits());
            } else {
                assert_eq!(f64::from(*w).to_bits(), want.to_bits(), "f16 {:#06x} on {isa}", h.to_bits());
            }
            assert_eq!(w.to_bits(), h.to_f32().to_bits(), "f16 {:#06x} on {isa} vs half", h.to_bits());
        }
        let mut back = vec![f16::ZERO; all.len()];
        cv::f32_to_f16_on(isa, &wide, &mut back).unwrap();
        for (h, b) in all.iter().zip(&back) {
            let is_signalling_nan = h.is_nan() && h.to_bits() & 0x0200 == 0;
            let want = if is_signalling_nan { h.to_bits() | 0x0200 } else { h.to_bits() };
            assert_eq!(b.to_bits(), want, "f16 {:#06x} round trip on {isa}", h.to_bits());
        }
    }
}

#[test]
fn all_65536_bf16_patterns_widen_exactly_and_narrow_back() {
    let all: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
    for isa in Isa::available() {
        let mut wide = vec![0.0f32; all.len()];
        cv::bf16_to_f32_on(isa, &all, &mut wide).unwrap();
        let mut back = vec![bf16::ZERO; all.len()];
        cv::f32_to_bf16_on(isa, &wide, &mut back).unwrap();
        for ((h, w), b) in all.iter().zip(&wide).zip(&back) {
            let bits = h.to_bits();
            let is_nan = bits & 0x7FFF > 0x7F80;
            // bf16 is the top half of an f32; a NaN gets the quiet bit.
            let want = if is_nan { u32::from(bits | 0x0040) << 16 } else { u32::from(bits) << 16 };
            assert_eq!(w.to_bits(), want, "bf16 {bits:#06x} on {isa}");
            assert_eq!(w.to_bits(), h.to_f32().to_bits(), "bf16 {bits:#06x} on {isa} vs half");
            assert_eq!(
                b.to_bits(),
                if is_nan { bits | 0x0040 } else { bits },
                "bf16 {bits:#06x} round trip on {isa}"
            );
        }
    }
}

#[test]
fn casts_of_every_length_agree_with_scalar_in_both_directions() {
    let mut rng = Rng(3);
    for isa in Isa::available() {
        for len in lengths() {
            let h: Vec<f16> = (0..len).map(|_| f16::from_bits(rng.bits32() as u16)).collect();
            let b: Vec<bf16> = (0..len).map(|_| bf16::from_bits(rng.bits32() as u16)).collect();
            let (mut got, mut want) = (vec![0.0f32; len], vec![0.0f32; len]);
            cv::f16_to_f32_on(isa, &h, &mut got).unwrap();
            scalar::f16_to_f32(&h, &mut want);
            assert_same_f32(&got, &want, "f16->f32", isa);
            cv::bf16_to_f32_on(isa, &b, &mut got).unwrap();
            scalar::bf16_to_f32(&b, &mut want);
            assert_same_f32(&got, &want, "bf16->f32", isa);
        }
    }
}

/// Every conversion on every path, on every length 0..200 at start offsets 0..4 (so vector loads
/// and stores are unaligned and every tail length occurs), bit for bit against the scalar path.
#[test]
fn every_conversion_at_unaligned_starts_and_lengths_to_200_agrees_with_scalar() {
    const MAX: usize = 200;
    let mut rng = Rng(8);
    let mut exercised = Vec::new();
    for isa in Isa::available() {
        exercised.push(isa.name());
        for len in 0..MAX {
            for start in 0..4 {
                let range = start..start + len;
                let x = with_edges(random_bits(&mut rng, MAX + 4), &cast_edges(), len % 3);
                let h: Vec<f16> = (0..MAX + 4).map(|_| f16::from_bits(rng.bits32() as u16)).collect();
                let b: Vec<bf16> = (0..MAX + 4).map(|_| bf16::from_bits(rng.bits32() as u16)).collect();
                let bytes: Vec<u8> = (0..MAX + 4).map(|_| rng.next() as u8).collect();
                let what = |op: &str| format!("{op} on {isa}, start {start}, len {len}");

                let (mut got, mut want) = (vec![f16::ZERO; MAX + 4], vec![f16::ZERO; MAX + 4]);
                cv::f32_to_f16_on(isa, &x[range.clone()], &mut got[range.clone()]).unwrap();
                scalar::f32_to_f16(&x[range.clone()], &mut want[range.clone()]);
                assert!(
                    got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()),
                    "{}",
                    what("f32->f16")
                );

                let (mut got, mut want) = (vec![bf16::ZERO; MAX + 4], vec![bf16::ZERO; MAX + 4]);
                cv::f32_to_bf16_on(isa, &x[range.clone()], &mut got[range.clone()]).unwrap();
                scalar::f32_to_bf16(&x[range.clone()], &mut want[range.clone()]);
                assert!(
                    got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()),
                    "{}",
                    what("f32->bf16")
                );

                let (mut got, mut want) = (vec![0.0f32; MAX + 4], vec![0.0f32; MAX + 4]);
                cv::f16_to_f32_on(isa, &h[range.clone()], &mut got[range.clone()]).unwrap();
                scalar::f16_to_f32(&h[range.clone()], &mut want[range.clone()]);
                assert_same_f32(&got, &want, &what("f16->f32"), isa);
                cv::bf16_to_f32_on(isa, &b[range.clone()], &mut got[range.clone()]).unwrap();
                scalar::bf16_to_f32(&b[range.clone()], &mut want[range.clone()]);
                assert_same_f32(&got, &want, &what("bf16->f32"), isa);
                let (scale, zp) = (0.037f32, (len as u8).wrapping_mul(37));
                cv::dequantize_u8_on(isa, &bytes[range.clone()], scale, zp, &mut got[range.clone()]).unwrap();
                scalar::dequantize_u8(&bytes[range.clone()], scale, zp, &mut want[range.clone()]);
                assert_same_f32(&got, &want, &what("dequantize u8"), isa);
                let signed: Vec<i8> = bytes.iter().map(|&v| v as i8).collect();
                cv::dequantize_i8_on(isa, &signed[range.clone()], scale, zp as i8, &mut got[range.clone()])
                    .unwrap();
                scalar::dequantize_i8(&signed[range.clone()], scale, zp as i8, &mut want[range.clone()]);
                assert_same_f32(&got, &want, &what("dequantize i8"), isa);

                let q: Vec<f32> = x.iter().map(|&v| if v.is_nan() { 1.5 * scale } else { v }).collect();
                let q = with_edges(q, &quantize_edges(scale), len % 5);
                let (mut got, mut want) = (vec![0u8; MAX + 4], vec![0u8; MAX + 4]);
                cv::quantize_u8_on(isa, &q[range.clone()], scale, zp, &mut got[range.clone()]).unwrap();
                scalar::quantize_u8(&q[range.clone()], scale, zp, &mut want[range.clone()]);
                assert_eq!(got, want, "{}", what("quantize u8"));
                let (mut got, mut want) = (vec![0i8; MAX + 4], vec![0i8; MAX + 4]);
                cv::quantize_i8_on(isa, &q[range.clone()], scale, zp as i8, &mut got[range.clone()]).unwrap();
                scalar::quantize_i8(&q[range.clone()], scale, zp as i8, &mut want[range.clone()]);
                assert_eq!(got, want, "{}", what("quantize i8"));
            }
        }
    }
    // The tiers this run covered, for the CI log.
    println!("conversion tiers exercised: {}", exercised.join(", "));
}

#[test]
fn cast_length_mismatch_is_an_error() {
    for isa in Isa::available() {
        assert!(matches!(
            cv::f32_to_f16_on(isa, &[1.0; 3], &mut [f16::ZERO; 2]),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            cv::bf16_to_f32_on(isa, &[bf16::ZERO; 2], &mut [0.0; 3]),
            Err(Error::ShapeMismatch { .. })
        ));
    }
}

/// ONNX QuantizeLinear evaluated in f64: the f32 quotient (correctly rounded from f64, which is
/// exactly f32 division), rounded half to even, plus the zero point, saturated.
fn quantize_reference(x: f32, scale: f32, zero_point: i32, lo: i32, hi: i32) -> i32 {
    let quotient = (f64::from(x) / f64::from(scale)) as f32;
    let q = f64::from(quotient).round_ties_even() + f64::from(zero_point);
    q.clamp(f64::from(lo), f64::from(hi)) as i32
}

/// Values that exercise the quantizer at `scale`: exact ties k + 0.5 (scaled), near ties,
/// saturation, zero, -0.0, infinities, subnormals, and magnitudes where a float -> i32
/// conversion without a clamp would wrap to `i32::MIN`.
fn quantize_edges(scale: f32) -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        -f32::from_bits(1),
        f32::from_bits(0x007F_FFFF),
        2_147_483_648.0,
        -2_147_483_904.0,
        3e9,
        1e20,
    ];
    // Quotients where a fixed-point shortcut leaves its domain (2^11, 3 * 2^11 below zero, the
    // shifter's own magnitude; for 13 fraction bits 2^9 and 3 * 2^9 below zero), with their
    // neighbours, and the ends of i8 and u8 for every zero point.
    for q in [
        2047.5f64,
        2048.5,
        4096.5,
        -2048.5,
        -4096.5,
        -6143.5,
        -6144.0,
        -6144.5,
        -6145.0,
        -12582912.0,
        127.5,
        128.5,
        255.5,
        256.5,
        383.5,
        511.5,
        512.0,
        512.5,
        1024.5,
        -128.5,
        -255.5,
        -256.5,
        -383.5,
        -511.5,
        -512.5,
        -1535.5,
        -1536.0,
        -1536.5,
        -1537.0,
    ] {
        let x = (q * f64::from(scale)) as f32;
        for ulps in -3..=3 {
            v.push(f32::from_bits((x.to_bits() as i32 + ulps) as u32));
        }
    }
    for k in -300..300 {
        let tie = (k as f32 + 0.5) * scale;
        v.extend([
            tie,
            f32::from_bits(tie.to_bits() + 1),
            f32::from_bits(tie.to_bits().saturating_sub(1)),
            k as f32 * scale,
        ]);
    }
    v
}

const SCALES: [f32; 7] = [1.0, 0.5, 0.1, 0.003_921_569, 3.7e-3, 1e-30, 1e-37];
const ZERO_POINTS_I8: [i8; 4] = [0, -128, 127, 5];
const ZERO_POINTS_U8: [u8; 4] = [0, 128, 255, 3];

#[test]
fn quantize_matches_the_f64_reference_on_random_and_edge_values() {
    let mut rng = Rng(4);
    for isa in Isa::available() {
        for &scale in &SCALES {
            let edges = quantize_edges(scale);
            for len in lengths() {
                let shift = len % 3;
                let base: Vec<f32> = (0..len).map(|_| rng.uniform(300.0 * scale)).collect();
                let x = with_edges(base, &edges, shift);
                for (&zi, &zu) in ZERO_POINTS_I8.iter().zip(&ZERO_POINTS_U8) {
                    let mut yi = vec![0i8; len];
                    cv::quantize_i8_on(isa, &x, scale, zi, &mut yi).unwrap();
                    let mut yu = vec![0u8; len];
                    cv::quantize_u8_on(isa, &x, scale, zu, &mut yu).unwrap();
                    for i in 0..len {
                        let want = quantize_reference(x[i], scale, zi.into(), -128, 127);
                        assert_eq!(
                            i32::from(yi[i]),
                            want,
                            "i8 on {isa}: x = {:e}, scale {scale:e}, zp {zi}",
                            x[i]
                        );
                        let want = quantize_reference(x[i], scale, zu.into(), 0, 255);
                        assert_eq!(
                            i32::from(yu[i]),
                            want,
                            "u8 on {isa}: x = {:e}, scale {scale:e}, zp {zu}",
                            x[i]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn quantize_near_ties_match_the_f64_reference_for_random_scales() {
    // The SIMD path multiplies by 1 / scale and redoes with the division only near half-integers:
    // quotients within a few ulp of k + 1/2, for scales of every magnitude (up to where 1 / scale
    // is subnormal), are where a wrong shortcut would show.
    let mut rng = Rng(0x7135);
    for isa in Isa::available() {
        for round in 0..3000 {
            let scale = match round % 3 {
                0 => f32::from_bits(0x0080_0000 + rng.bits32() % (0x7F7F_FFFF - 0x0080_0000)),
                1 => rng.uniform(1.0).abs().max(1e-6),
                _ => f32::MAX / (1.0 + rng.uniform(4.0).abs()),
            };
            let x: Vec<f32> = (0..64)
                .map(|i| {
                    let k = (rng.bits32() % 400) as f32 - 200.0;
                    let tie = ((f64::from(k) + 0.5) * f64::from(scale)) as f32;
                    let ulps = (i % 9) - 4;
                    if tie.is_finite() {
                        f32::from_bits((tie.to_bits() as i32 + ulps) as u32)
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut y = vec![0i8; x.len()];
            cv::quantize_i8_on(isa, &x, scale, 3, &mut y).unwrap();
            for (&xi, &yi) in x.iter().zip(&y) {
                let want = quantize_reference(xi, scale, 3, -128, 127);
                assert_eq!(i32::from(yi), want, "{isa}: x = {xi:e}, scale {scale:e}");
            }
        }
    }
}

#[test]
fn quantize_edges_in_every_position_of_large_inputs_agree_with_scalar() {
    for isa in Isa::available() {
        for &scale in &SCALES {
            let x = quantize_edges(scale);
            let (mut got, mut want) = (vec![0i8; x.len()], vec![0i8; x.len()]);
            for offset in 0..33 {
                cv::quantize_i8_on(isa, &x[offset..], scale, -3, &mut got[offset..]).unwrap();
                scalar::quantize_i8(&x[offset..], scale, -3, &mut want[offset..]);
                assert_eq!(got, want, "i8 on {isa}, scale {scale:e}, offset {offset}");
            }
        }
    }
}

/// Quantizing `bad` to i8 on `isa` fails naming `first` as its first NaN, and writes nothing.
fn assert_i8_refused(isa: Isa, bad: &[f32], scale: f32, zero_point: i8, first: usize, case: &str) {
    let mut y = vec![7i8; bad.len()];
    let err = cv::quantize_i8_on(isa, bad, scale, zero_point, &mut y).unwrap_err();
    assert!(matches!(err, Error::NonFinite { index, .. } if index == first), "{err} on {isa}, {case}");
    assert!(y.iter().all(|&v| v == 7), "i8 output written on {isa}, {case}");
}

/// Quantizing `bad` to u8 on `isa` fails naming `first` as its first NaN, and writes nothing.
fn assert_u8_refused(isa: Isa, bad: &[f32], scale: f32, zero_point: u8, first: usize, case: &str) {
    let mut y = vec![7u8; bad.len()];
    let err = cv::quantize_u8_on(isa, bad, scale, zero_point, &mut y).unwrap_err();
    assert!(matches!(err, Error::NonFinite { index, .. } if index == first), "{err} on {isa}, {case}");
    assert!(y.iter().all(|&v| v == 7), "u8 output written on {isa}, {case}");
}

#[test]
fn nan_is_an_error_naming_the_first_index_and_nothing_is_written() {
    let mut rng = Rng(5);
    for isa in Isa::available() {
        for len in lengths().filter(|&n| n > 0) {
            let mut x: Vec<f32> = (0..len).map(|_| rng.uniform(10.0)).collect();
            let first = (rng.next() as usize) % len;
            x[first] = if first.is_multiple_of(2) { f32::NAN } else { -f32::from_bits(0x7F80_0001) };
            if first + 1 < len {
                x[len - 1] = f32::NAN;
            }
            assert_eq!(cv::first_nan_on(isa, &x).unwrap(), Some(first), "first_nan on {isa}, len {len}");
            assert_i8_refused(isa, &x, 0.5, 0, first, &format!("len {len}"));
            assert_u8_refused(isa, &x, 0.5, 0, first, &format!("len {len}"));
        }
        let clean: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        assert_eq!(cv::first_nan_on(isa, &clean).unwrap(), None);
        assert_eq!(cv::first_nan_on(isa, &[]).unwrap(), None);
    }
}

/// Inputs longer than the AVX-512 path's one-pass head (16 Ki elements): a NaN in the head, at
/// its border, in the rest or in the tail is found first, and nothing is written; clean inputs
/// agree with the scalar path.
#[test]
fn nan_anywhere_in_long_inputs_is_found_and_nothing_is_written() {
    let mut rng = Rng(9);
    let len = (16 << 10) + 1000 + 7;
    let x: Vec<f32> = (0..len).map(|_| rng.uniform(200.0)).collect();
    for isa in Isa::available() {
        let (mut got, mut want) = (vec![0i8; len], vec![0i8; len]);
        cv::quantize_i8_on(isa, &x, 0.7, 9, &mut got).unwrap();
        scalar::quantize_i8(&x, 0.7, 9, &mut want);
        assert_eq!(got, want, "clean long input on {isa}");
        for first in [0, 5000, (16 << 10) - 1, 16 << 10, (16 << 10) + 500, len - 3, len - 1] {
            let mut bad = x.clone();
            bad[first] = f32::NAN;
            bad[len - 1] = -f32::NAN;
            // 1e-37 takes the division path (2^11 / scale overflows f32).
            for scale in [0.7, 1e-37] {
                assert_i8_refused(isa, &bad, scale, 9, first, &format!("scale {scale}, NaN at {first}"));
            }
            assert_u8_refused(isa, &bad, 0.7, 9, first, &format!("NaN at {first}"));
        }
    }
}

/// A NaN at every position of inputs whose lengths and alignments put it in every part of the
/// AVX-512 path (whole blocks of four vectors, the vectors and the masked elements past the last
/// block), with a second NaN after it: the first one is named and nothing is written. The same
/// inputs without NaN agree with the scalar path.
#[test]
fn nan_at_every_position_and_alignment_is_found_and_nothing_is_written() {
    let mut rng = Rng(0x0a11_9e55);
    let buffer: Vec<f32> = (0..1100).map(|_| rng.uniform(150.0)).collect();
    for isa in Isa::available() {
        for offset in 0..16 {
            for len in [1, 15, 16, 17, 63, 64, 65, 79, 127, 128, 129, 191, 192, 255, 256, 257, 383, 448, 1000]
            {
                let x = &buffer[offset..offset + len];
                let (mut got, mut want) = (vec![0i8; len], vec![0i8; len]);
                cv::quantize_i8_on(isa, x, 0.6, -7, &mut got).unwrap();
                scalar::quantize_i8(x, 0.6, -7, &mut want);
                assert_eq!(got, want, "clean input on {isa}, offset {offset}, length {len}");
                let mut bad = x.to_vec();
                for first in 0..len {
                    bad[first] =
                        if first.is_multiple_of(2) { f32::NAN } else { -f32::from_bits(0x7F80_0001) };
                    let second = first + (len - first) / 2;
                    let kept = bad[second];
                    if second > first {
                        bad[second] = f32::NAN;
                    }
                    let case = format!("offset {offset}, length {len}, NaN at {first}");
                    assert_i8_refused(isa, &bad, 0.6, -7, first, &case);
                    assert_u8_refused(isa, &bad, 0.6, 9, first, &case);
                    bad[second] = kept;
                    bad[first] = x[first];
                }
            }
        }
    }
}

/// Inputs past twice the AVX-512 path's scratch (16 Ki elements): a NaN on either side of the
/// multiples of 64 elements near 16 Ki (where the fused pass into the scratch ends) and 32 Ki, for
/// four alignments, and spread over the rest is named, nothing is written; clean, they agree with
/// the scalar path, for u8 too.
#[test]
fn nan_near_the_borders_of_long_inputs_is_found_and_nothing_is_written() {
    let mut rng = Rng(0xb0d3);
    let len = (32 << 10) + 3000 + 13;
    let buffer: Vec<f32> = (0..len + 16).map(|_| rng.uniform(100.0)).collect();
    for isa in Isa::available() {
        for offset in [0, 3, 4, 8] {
            let x = &buffer[offset..offset + len];
            let (mut got, mut want) = (vec![0u8; len], vec![0u8; len]);
            cv::quantize_u8_on(isa, x, 0.45, 131, &mut got).unwrap();
            scalar::quantize_u8(x, 0.45, 131, &mut want);
            assert_eq!(got, want, "clean long input on {isa}, offset {offset}");
            let mut positions: Vec<usize> = (0..len).step_by(997).chain(len - 70..len).collect();
            for border in [(16 << 10) - 128, (16 << 10) + 3000 / 2 - 64, 32 << 10] {
                positions.extend((border - 32..border + 160).step_by(16).flat_map(|p| [p, p + 1, p + 15]));
            }
            let mut bad = x.to_vec();
            bad[len - 1] = f32::NAN;
            for &first in positions.iter().filter(|&&p| p < len) {
                bad[first] = -f32::NAN;
                assert_i8_refused(isa, &bad, 0.45, 3, first, &format!("offset {offset}, NaN at {first}"));
                bad[first] = if first == len - 1 { f32::NAN } else { x[first] };
            }
        }
    }
}

#[test]
fn bad_scale_is_an_error() {
    for isa in Isa::available() {
        for scale in [0.0, -1.0, f32::NAN, f32::INFINITY, f32::from_bits(1)] {
            let mut y = [0i8; 4];
            assert!(cv::quantize_i8_on(isa, &[1.0; 4], scale, 0, &mut y).is_err(), "scale {scale} on {isa}");
            let mut x = [0.0f32; 4];
            assert!(cv::dequantize_u8_on(isa, &[1; 4], scale, 0, &mut x).is_err(), "scale {scale} on {isa}");
        }
    }
}

/// ONNX DequantizeLinear in f64: the integer difference times the scale is exact in f64, so one
/// rounding to f32 gives the f32 product.
fn dequantize_reference(y: i32, scale: f32, zero_point: i32) -> f32 {
    (f64::from(y - zero_point) * f64::from(scale)) as f32
}

#[test]
fn dequantize_every_byte_matches_the_f64_reference() {
    let mut rng = Rng(6);
    let scales = [1.0, 0.1, 0.003_921_569, 1e-30, f32::MIN_POSITIVE, 3e36];
    for isa in Isa::available() {
        for &scale in &scales {
            for (&zi, &zu) in ZERO_POINTS_I8.iter().zip(&ZERO_POINTS_U8) {
                for len in lengths().chain([256, 300]) {
                    // Every byte value appears for the long lengths; random order for the rest.
                    let bytes: Vec<u8> =
                        (0..len).map(|i| if len >= 256 { i as u8 } else { rng.next() as u8 }).collect();
                    let yi: Vec<i8> = bytes.iter().map(|&b| b as i8).collect();
                    let mut x = vec![0.0f32; len];
                    cv::dequantize_i8_on(isa, &yi, scale, zi, &mut x).unwrap();
                    let want: Vec<f32> =
                        yi.iter().map(|&v| dequantize_reference(v.into(), scale, zi.into())).collect();
                    assert_same_f32(&x, &want, "dequantize i8", isa);
                    cv::dequantize_u8_on(isa, &bytes, scale, zu, &mut x).unwrap();
                    let want: Vec<f32> =
                        bytes.iter().map(|&v| dequantize_reference(v.into(), scale, zu.into())).collect();
                    assert_same_f32(&x, &want, "dequantize u8", isa);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary non-NaN inputs, scales and zero points: every path equals the f64 reference.
    #[test]
    fn quantize_any_input_matches_reference(
        x in proptest::collection::vec(any::<f32>().prop_filter("not NaN", |v| !v.is_nan()), 0..100),
        scale in (1e-6f32..1e3),
        zi in any::<i8>(),
        zu in any::<u8>(),
    ) {
        for isa in Isa::available() {
            let mut yi = vec![0i8; x.len()];
            cv::quantize_i8_on(isa, &x, scale, zi, &mut yi).unwrap();
            let mut yu = vec![0u8; x.len()];
            cv::quantize_u8_on(isa, &x, scale, zu, &mut yu).unwrap();
            for i in 0..x.len() {
                prop_assert_eq!(i32::from(yi[i]), quantize_reference(x[i], scale, zi.into(), -128, 127));
                prop_assert_eq!(i32::from(yu[i]), quantize_reference(x[i], scale, zu.into(), 0, 255));
            }
        }
    }

    /// Quantizing a dequantized tensor gives it back on every path.
    #[test]
    fn quantize_of_dequantize_is_identity(y in proptest::collection::vec(any::<i8>(), 0..100), scale in (1e-6f32..1e3), zp in any::<i8>()) {
        for isa in Isa::available() {
            let mut x = vec![0.0f32; y.len()];
            cv::dequantize_i8_on(isa, &y, scale, zp, &mut x).unwrap();
            let mut back = vec![0i8; y.len()];
            cv::quantize_i8_on(isa, &x, scale, zp, &mut back).unwrap();
            for (b, &v) in back.iter().zip(&y) {
                prop_assert_eq!(*b, v);
            }
        }
    }
}

#[test]
fn min_max_finite_matches_a_plain_fold_at_every_length_and_position() {
    // Lengths 0..=67 cover the 16-lane body and every tail; each special value at every position.
    let mut rng = Rng(21);
    for len in 0..=67usize {
        let base: Vec<f32> = (0..len).map(|_| rng.uniform(1e3)).collect();
        let want = |x: &[f32]| {
            let lo = x.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            (lo, hi, x.iter().all(|v| v.is_finite()))
        };
        assert_eq!(cv::min_max_finite(&base), want(&base), "len {len}");
        for pos in 0..len {
            for special in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 5e3, -5e3] {
                let mut x = base.clone();
                x[pos] = special;
                let (lo, hi, finite) = cv::min_max_finite(&x);
                assert_eq!(finite, special.is_finite(), "len {len} pos {pos} {special}");
                if !special.is_nan() {
                    assert_eq!((lo, hi), (want(&x).0, want(&x).1), "len {len} pos {pos} {special}");
                }
            }
        }
    }
    assert_eq!(cv::min_max_finite(&[]), (f32::INFINITY, f32::NEG_INFINITY, true));
}

/// Every f32 that is not NaN, quantized on every SIMD path against the scalar division, for
/// six (scale, zero point) pairs, the zero points at both ends. About three minutes in release:
/// `cargo test --release --test convert_kernels -- --ignored`.
#[test]
#[ignore = "exhaustive over 2^32 inputs; run in release"]
fn quantize_every_f32_agrees_with_scalar_division() {
    const CHUNK: u64 = 1 << 20;
    for &(scale, zp) in &[(0.8f32, 3i8), (1.0 / 255.0, -128), (0.1, 0), (3.7e-3, 127), (0.75, -5), (1e-30, 1)]
    {
        for isa in Isa::available().into_iter().filter(|&isa| isa != Isa::Scalar) {
            let mut x = Vec::with_capacity(CHUNK as usize);
            let (mut got, mut want) = (vec![0i8; CHUNK as usize], vec![0i8; CHUNK as usize]);
            for start in (0..1u64 << 32).step_by(CHUNK as usize) {
                x.clear();
                x.extend((start..start + CHUNK).map(|b| f32::from_bits(b as u32)).filter(|v| !v.is_nan()));
                let n = x.len();
                cv::quantize_i8_on(isa, &x, scale, zp, &mut got[..n]).unwrap();
                scalar::quantize_i8(&x, scale, zp, &mut want[..n]);
                if let Some(i) = (0..n).find(|&i| got[i] != want[i]) {
                    panic!(
                        "{isa}: x = {:e} ({:#x}), scale {scale:e}, zp {zp}: {} != {}",
                        x[i],
                        x[i].to_bits(),
                        got[i],
                        want[i]
                    );
                }
            }
        }
    }
}
