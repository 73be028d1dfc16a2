//! NEON kernels: a 6 x 16 f32 register tile for GEMM (twenty-four accumulators; B from packed
//! panels or in place), and four-row GEMV.
//! f16 is widened exactly with integer operations and one multiply (no FP16 extension needed).

use super::{as_kind, GemvWeight, Tile, WeightElement, WeightKind};
use core::arch::aarch64::*;
use half::{bf16, f16};

/// Rows of C per microkernel call (twenty-four accumulators with [`NR`]).
pub(super) const MR: usize = 6;
/// Columns of C per microkernel call, and the width of the packed B panels this kernel reads.
pub(super) const NR: usize = 16;
const _: () = assert!(MR == 6, "by_rows! names the row counts 1..=6");

/// Four f16 bit patterns widened exactly to f32 (zeros, subnormals, normals, infinities, NaN).
#[target_feature(enable = "neon")]
#[inline]
fn widen_f16(h: uint16x4_t) -> float32x4_t {
    let w = vmovl_u16(h);
    let sign = vshlq_n_u32::<16>(vandq_u32(w, vdupq_n_u32(0x8000)));
    let magnitude = vandq_u32(w, vdupq_n_u32(0x7fff));
    let shifted = vshlq_n_u32::<13>(magnitude);
    // As an f32, `shifted` is the value scaled by 2^-112 (subnormal f16 become subnormal f32): rescale.
    let finite = vreinterpretq_u32_f32(vmulq_f32(
        vreinterpretq_f32_u32(shifted),
        vdupq_n_f32(f32::from_bits(0x7780_0000)),
    ));
    let special = vorrq_u32(shifted, vdupq_n_u32(0x7f80_0000));
    let is_special = vcgeq_u32(magnitude, vdupq_n_u32(0x7c00));
    vreinterpretq_f32_u32(vorrq_u32(vbslq_u32(is_special, special, finite), sign))
}

/// Eight f32 weights at `p`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load_f32(p: *const f32) -> [float32x4_t; 2] {
    // SAFETY: the caller guarantees 8 readable elements at p.
    unsafe { [vld1q_f32(p), vld1q_f32(p.add(4))] }
}

/// Eight f16 weights at `p`, widened exactly.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load_f16(p: *const f16) -> [float32x4_t; 2] {
    // SAFETY: the caller guarantees 8 readable elements at p.
    let h = unsafe { vld1q_u16(p.cast()) };
    [widen_f16(vget_low_u16(h)), widen_f16(vget_high_u16(h))]
}

/// Eight bf16 weights at `p`, widened exactly.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load_bf16(p: *const bf16) -> [float32x4_t; 2] {
    // SAFETY: the caller guarantees 8 readable elements at p.
    let h = unsafe { vld1q_u16(p.cast()) };
    [
        vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h))),
        vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_high_u16(h))),
    ]
}

/// Eight int8 weights at `p`, as f32.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load_i8(p: *const i8) -> [float32x4_t; 2] {
    // SAFETY: the caller guarantees 8 readable bytes at p.
    let h = vmovl_s8(unsafe { vld1_s8(p) });
    [vcvtq_f32_s32(vmovl_s16(vget_low_s16(h))), vcvtq_f32_s32(vmovl_s16(vget_high_s16(h)))]
}

macro_rules! kernels {
    ($microkernel:ident, $dots:ident, $sweep:ident, $t:ty, $load:ident) => {
        /// One `mr x nr` tile of C (`mr <= MR`, `nr <= NR`) from an MR-row panel of packed A and
        /// `kc` rows of NR weights, `tile.b_stride` apart (a packed panel or B in place).
        ///
        /// # Safety
        /// The CPU has NEON; the buffers hold the tile (`Tile::assert_fits`).
        #[target_feature(enable = "neon")]
        #[allow(dead_code)]
        unsafe fn $microkernel(tile: Tile, a: &[f32], b: &[$t], c: &mut [f32]) {
            /// The tile with `R` rows of C in registers (`PF` is unused: no prefetch here).
            #[target_feature(enable = "neon")]
            #[inline]
            unsafe fn rows<const R: usize, const PF: bool>(tile: Tile, a: &[f32], b: &[$t], c: &mut [f32]) {
                let mut acc = [[vdupq_n_f32(0.0); 4]; R];
                let (ap, bp, ldb) = (a.as_ptr(), b.as_ptr(), tile.b_stride);
                for p in 0..tile.kc {
                    // SAFETY: a holds kc * MR elements and b (kc - 1) * b_stride + NR (asserted
                    // by the caller).
                    unsafe {
                        let [b0, b1] = $load(bp.add(p * ldb));
                        let [b2, b3] = $load(bp.add(p * ldb + 8));
                        for (r, row) in acc.iter_mut().enumerate() {
                            let av = *ap.add(p * MR + r);
                            row[0] = vfmaq_n_f32(row[0], b0, av);
                            row[1] = vfmaq_n_f32(row[1], b1, av);
                            row[2] = vfmaq_n_f32(row[2], b2, av);
                            row[3] = vfmaq_n_f32(row[3], b3, av);
                        }
                    }
                }
                if tile.nr == NR {
                    for (r, row) in acc.iter().enumerate() {
                        for (q, &v) in row.iter().enumerate() {
                            // SAFETY: c holds (R - 1) * ldc + NR elements (asserted by the caller).
                            unsafe {
                                let cp = c.as_mut_ptr().add(r * tile.ldc + 4 * q);
                                let v = if tile.accumulate { vaddq_f32(v, vld1q_f32(cp)) } else { v };
                                vst1q_f32(cp, v);
                            }
                        }
                    }
                } else {
                    let mut spill = [[0.0f32; NR]; R];
                    for (dst, row) in spill.iter_mut().zip(&acc) {
                        for (q, &v) in row.iter().enumerate() {
                            // SAFETY: each spill row holds NR = 16 f32.
                            unsafe { vst1q_f32(dst.as_mut_ptr().add(4 * q), v) };
                        }
                    }
                    tile.store(&spill, c);
                }
            }
            super::entry::by_rows!(rows, tile, tile, a, b, c)
        }

        /// Dot products of `R` weight rows (`ldw` apart) with `x`.
        ///
        /// # Safety
        /// The CPU has NEON; `w` holds `(R - 1) * ldw + k` elements and `x` holds `k`.
        #[target_feature(enable = "neon")]
        unsafe fn $dots<const R: usize>(w: &[$t], ldw: usize, k: usize, x: &[f32]) -> [f32; R] {
            let rows: [*const $t; R] = core::array::from_fn(|r| w[r * ldw..].as_ptr());
            let mut acc = [[vdupq_n_f32(0.0); 4]; R];
            let mut j = 0;
            while j + 16 <= k {
                // SAFETY: j + 16 <= k, so every row and x have 16 elements from j.
                unsafe {
                    let xs = [
                        vld1q_f32(x.as_ptr().add(j)),
                        vld1q_f32(x.as_ptr().add(j + 4)),
                        vld1q_f32(x.as_ptr().add(j + 8)),
                        vld1q_f32(x.as_ptr().add(j + 12)),
                    ];
                    for (row, a) in rows.iter().zip(acc.iter_mut()) {
                        let [w0, w1] = $load(row.add(j));
                        let [w2, w3] = $load(row.add(j + 8));
                        a[0] = vfmaq_f32(a[0], w0, xs[0]);
                        a[1] = vfmaq_f32(a[1], w1, xs[1]);
                        a[2] = vfmaq_f32(a[2], w2, xs[2]);
                        a[3] = vfmaq_f32(a[3], w3, xs[3]);
                    }
                }
                j += 16;
            }
            core::array::from_fn(|r| {
                let tail: f32 = (j..k).map(|t| w[r * ldw + t].value() * x[t]).sum();
                let [a0, a1, a2, a3] = acc[r];
                vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3))) + tail
            })
        }

        /// `y[j] += sum_r a[r] * w[r * ldw + j]` for `j < n`: `R` rows of B swept whole, so B
        /// streams from memory row after row (the product of a single row of A).
        ///
        /// # Safety
        /// The CPU has NEON; `w` holds `(R - 1) * ldw + n` elements and `y` `n`.
        #[target_feature(enable = "neon")]
        #[allow(dead_code)]
        unsafe fn $sweep<const R: usize>(w: &[$t], ldw: usize, n: usize, a: [f32; R], y: &mut [f32]) {
            let rows: [*const $t; R] = core::array::from_fn(|r| w[r * ldw..].as_ptr());
            let yp = y.as_mut_ptr();
            let mut j = 0;
            while j + 8 <= n {
                // SAFETY: j + 8 <= n, so every row and y have 8 elements from j.
                unsafe {
                    let (mut y0, mut y1) = (vld1q_f32(yp.add(j)), vld1q_f32(yp.add(j + 4)));
                    for (row, &ar) in rows.iter().zip(&a) {
                        let [w0, w1] = $load(row.add(j));
                        y0 = vfmaq_n_f32(y0, w0, ar);
                        y1 = vfmaq_n_f32(y1, w1, ar);
                    }
                    vst1q_f32(yp.add(j), y0);
                    vst1q_f32(yp.add(j + 4), y1);
                }
                j += 8;
            }
            for t in j..n {
                for (r, &ar) in a.iter().enumerate() {
                    y[t] = ar.mul_add(w[r * ldw + t].value(), y[t]);
                }
            }
        }
    };
}

kernels!(microkernel_f32, dots_f32, sweep_f32, f32, load_f32);
kernels!(microkernel_f16, dots_f16, sweep_f16, f16, load_f16);
kernels!(microkernel_bf16, dots_bf16, sweep_bf16, bf16, load_bf16);
kernels!(microkernel_i8, dots_i8, sweep_i8, i8, load_i8);

super::entry::weight_entry_points!("NEON");
