//! ggml's dot products of a weight row with a quantized activation row (`ggml_vec_dot_*`): the
//! scalar references restate ggml's portable `_generic` versions operation for operation; the
//! SIMD tiers compute the same integer block sums exactly and differ only in the order of the f32
//! sums.

use super::blocks::{f16_get, BlockQ4K, BlockQ4_0, BlockQ6K, BlockQ8K, BlockQ8_0, GgmlType, QK, QK_K};
use super::quantize::{q8_0_block_finite, q8_k_block, scale_min_k4};
use crate::error::try_vec;
use crate::kernels::Isa;
use crate::{Error, Result};

/// `ggml_vec_dot_q4_0_q8_0_generic`.
pub fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let (mut sumi0, mut sumi1) = (0i32, 0i32);
        for j in 0..QK / 2 {
            let v0 = i32::from(xb.qs[j] & 0x0F) - 8;
            let v1 = i32::from(xb.qs[j] >> 4) - 8;
            sumi0 += v0 * i32::from(yb.qs[j]);
            sumi1 += v1 * i32::from(yb.qs[j + QK / 2]);
        }
        let sumi = sumi0 + sumi1;
        sumf += sumi as f32 * f16_get(xb.d).to_f32() * f16_get(yb.d).to_f32();
    }
    sumf
}

/// `ggml_vec_dot_q8_0_q8_0_generic`.
pub fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let sumi: i32 = xb.qs.iter().zip(&yb.qs).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum();
        sumf += sumi as f32 * (f16_get(xb.d).to_f32() * f16_get(yb.d).to_f32());
    }
    sumf
}

/// The i16 sums of each 16 activations of a Q8_K block.
#[inline]
pub(crate) fn bsums(y: &BlockQ8K) -> [i16; QK_K / 16] {
    y.bsums.map(i16::from_le_bytes)
}

/// `ggml_vec_dot_q4_K_q8_K_generic`: eight lanes of i32 sums per super-block, scaled into eight
/// f32 lanes, the minima subtracted per super-block, the lanes added last.
pub fn vec_dot_q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut sums = [0.0f32; 8];
    let mut sumf = 0.0f32;
    for (xb, yb) in x.iter().zip(y) {
        let mut aux8 = [0i8; QK_K];
        for (j, q4) in xb.qs.chunks_exact(32).enumerate() {
            for l in 0..32 {
                aux8[64 * j + l] = (q4[l] & 0xF) as i8;
                aux8[64 * j + 32 + l] = (q4[l] >> 4) as i8;
            }
        }
        let sm: [(u8, u8); 8] = std::array::from_fn(|j| scale_min_k4(j, &xb.scales));
        let bs = bsums(yb);
        let sumi: i32 = (0..QK_K / 16).map(|j| i32::from(bs[j]) * i32::from(sm[j / 2].1)).sum();
        let mut aux32 = [0i32; 8];
        for (j, &(scale, _)) in sm.iter().enumerate() {
            for c in 0..4 {
                for (l, sum) in aux32.iter_mut().enumerate() {
                    let at = 32 * j + 8 * c + l;
                    *sum += i32::from(scale) * (i32::from(yb.qs[at]) * i32::from(aux8[at]));
                }
            }
        }
        let yd = f32::from_le_bytes(yb.d);
        let d = f16_get(xb.d).to_f32() * yd;
        for (s, &a) in sums.iter_mut().zip(&aux32) {
            *s += d * a as f32;
        }
        let dmin = f16_get(xb.dmin).to_f32() * yd;
        sumf -= dmin * sumi as f32;
    }
    for s in sums {
        sumf += s;
    }
    sumf
}

/// The eight 6-bit scales and the eight minima of a Q4_K block, byte `j` of each word for
/// sub-block `j` (ggml's `utmp` unpacking: [`scale_min_k4`] for all eight at once, branch-free).
#[inline]
pub(crate) fn scales_mins_k4(q: &[u8; 12]) -> (u64, u64) {
    const K1: u32 = 0x3f3f_3f3f;
    const K2: u32 = 0x0f0f_0f0f;
    const K3: u32 = 0x0303_0303;
    let word = |i: usize| u32::from_le_bytes([q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]]);
    let (u0, u1, u2) = (word(0), word(1), word(2));
    let scales_hi = (u2 & K2) | (((u0 >> 6) & K3) << 4);
    let mins_hi = ((u2 >> 4) & K2) | (((u1 >> 6) & K3) << 4);
    (u64::from(u0 & K1) | (u64::from(scales_hi) << 32), u64::from(u1 & K1) | (u64::from(mins_hi) << 32))
}

/// The 6-bit values of a Q6_K block less 32, in element order (as ggml's `_generic` unpacks them).
#[inline]
pub(crate) fn q6_k_values(xb: &BlockQ6K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for (n, (ql, qh)) in xb.ql.chunks_exact(64).zip(xb.qh.chunks_exact(32)).enumerate() {
        let a = &mut a[128 * n..128 * n + 128];
        for l in 0..32 {
            a[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            a[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    a
}

/// `ggml_vec_dot_q6_K_q8_K_generic`.
pub fn vec_dot_q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut sums = [0.0f32; 8];
    for (xb, yb) in x.iter().zip(y) {
        let aux8 = q6_k_values(xb);
        let mut aux32 = [0i32; 8];
        for (j, &scale) in xb.scales.iter().enumerate() {
            for c in 0..2 {
                for (l, sum) in aux32.iter_mut().enumerate() {
                    let at = 16 * j + 8 * c + l;
                    *sum += i32::from(scale) * (i32::from(yb.qs[at]) * i32::from(aux8[at]));
                }
            }
        }
        let d = f16_get(xb.d).to_f32() * f32::from_le_bytes(yb.d);
        for (s, &a) in sums.iter_mut().zip(&aux32) {
            *s += d * a as f32;
        }
    }
    let mut sumf = 0.0f32;
    for s in sums {
        sumf += s;
    }
    sumf
}

/// A row of activations quantized to a weight type's partner format, with what the SIMD kernels
/// read beside the blocks.
pub(crate) enum Activations {
    /// Q8_0 blocks (for Q4_0 and Q8_0 weights), each block's scale as f32, and the layout of the
    /// AVX-512 Q4_0 kernel.
    Q8_0 { blocks: Vec<BlockQ8_0>, d: Vec<f32>, split: Q4Split },
    /// Q8_K blocks (for the K types), with the sums of each 32 values (pairs of `bsums`).
    Q8K { blocks: Vec<BlockQ8K>, sums32: Vec<[i16; 8]> },
}

/// Q8_0 activations laid out for the AVX-512 Q4_0 kernel, whose 64-byte step holds the nibbles
/// of four blocks (each block's 16 low nibbles, elements 0-15, then in another register its 16
/// high ones, elements 16-31), so that each i32 lane of `vpdpbusd` belongs to one block.
#[derive(Default)]
pub(crate) struct Q4Split {
    /// Per block its elements 0-15.
    pub low: Vec<i8>,
    /// Per block its elements 16-31.
    pub high: Vec<i8>,
    /// Per block its scale, four times (one per lane).
    pub d: Vec<f32>,
    /// Per block `-8 * sum(q)` (less the nibbles' offset) in its first lane, 0 in the other three.
    pub minus_offset: Vec<i32>,
}

impl Q4Split {
    /// Whether the Q4_0 kernel of `isa` reads this layout (else it stays empty).
    fn read_on(isa: Isa) -> bool {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => false,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::Dotprod | Isa::I8mm => false,
            Isa::Scalar => false,
        }
    }

    fn new(blocks: &[BlockQ8_0], d: &[f32]) -> Result<Q4Split> {
        let n = blocks.len();
        let mut split = Q4Split {
            low: try_vec(16 * n, 0)?,
            high: try_vec(16 * n, 0)?,
            d: try_vec(4 * n, 0.0)?,
            minus_offset: try_vec(4 * n, 0)?,
        };
        for (i, (b, &d)) in blocks.iter().zip(d).enumerate() {
            split.low[16 * i..16 * i + 16].copy_from_slice(&b.qs[..16]);
            split.high[16 * i..16 * i + 16].copy_from_slice(&b.qs[16..]);
            split.d[4 * i..4 * i + 4].fill(d);
            split.minus_offset[4 * i] = -8 * b.qs.iter().map(|&q| i32::from(q)).sum::<i32>();
        }
        Ok(split)
    }
}

impl Activations {
    /// `x` (which must be finite: an error names the first value that is not) quantized to `ty`'s
    /// activation format as ggml's reference quantizer does (`quantize_row_q8_0_ref` for
    /// Q4_0/Q8_0, `quantize_row_q8_K_ref` for Q4_K/Q6_K), with the extra layout `isa`'s kernel
    /// reads.
    pub(crate) fn quantize(isa: Isa, ty: GgmlType, x: &[f32]) -> Result<Activations> {
        crate::kernels::math::check_finite("x", x)?;
        let per = ty.block_elems();
        let nb = x.len() / per;
        match ty {
            GgmlType::Q4_0 | GgmlType::Q8_0 => {
                let mut blocks = try_vec(nb, BlockQ8_0 { d: [0; 2], qs: [0; QK] })?;
                let mut d = try_vec(nb, 0.0f32)?;
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: callers pass an available tier.
                    Isa::Avx512 => unsafe { super::x86_512::q8_0_blocks(x, &mut blocks, &mut d) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: as above.
                    Isa::Avx2 => unsafe { super::x86::q8_0_blocks(x, &mut blocks, &mut d) },
                    #[cfg(target_arch = "aarch64")]
                    Isa::Neon | Isa::Dotprod | Isa::I8mm => q8_0_blocks(x, &mut blocks, &mut d),
                    Isa::Scalar => q8_0_blocks(x, &mut blocks, &mut d),
                }
                let split = if ty == GgmlType::Q4_0 && Q4Split::read_on(isa) {
                    Q4Split::new(&blocks, &d)?
                } else {
                    Q4Split::default()
                };
                Ok(Activations::Q8_0 { blocks, d, split })
            }
            GgmlType::Q4K | GgmlType::Q6K => {
                let mut blocks = try_vec(nb, bytemuck::Zeroable::zeroed())?;
                let mut sums32 = try_vec(nb, [0i16; 8])?;
                for ((xb, yb), s) in x.chunks_exact(per).zip(blocks.iter_mut()).zip(sums32.iter_mut()) {
                    q8_k_block(xb, yb);
                    let bs = bsums(yb);
                    *s = std::array::from_fn(|j| bs[2 * j] + bs[2 * j + 1]);
                }
                Ok(Activations::Q8K { blocks, sums32 })
            }
            GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_1 | GgmlType::Q8K => {
                Err(unsupported(ty))
            }
        }
    }
}

/// Q8_0 blocks of the finite `x` ([`q8_0_block_finite`], ggml's reference bits) and their scales
/// as f32: the body each tier compiles.
#[inline(always)]
pub(crate) fn q8_0_blocks(x: &[f32], blocks: &mut [BlockQ8_0], d: &mut [f32]) {
    for ((xb, yb), d) in x.chunks_exact(QK).zip(blocks).zip(d) {
        q8_0_block_finite(xb, yb);
        *d = f16_get(yb.d).to_f32();
    }
}

/// The error for a type without a dot product here.
pub(crate) fn unsupported(ty: GgmlType) -> Error {
    Error::invalid(
        "type",
        ty.name(),
        "no dot product for this type: GEMV takes Q4_0 = 2, Q8_0 = 8, Q4_K = 12 and Q6_K = 14",
    )
}

/// The dot product of the weight row `w` (whole blocks of `ty`) with `act` on `isa`; the caller
/// checked that `w` and `act` hold the same number of elements and that `isa` is available.
/// (Q4_0's `split` serves the AVX-512 kernel only.)
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(crate) fn row_dot(isa: Isa, ty: GgmlType, w: &[u8], act: &Activations) -> Result<f32> {
    Ok(match (ty, act) {
        (GgmlType::Q4_0, Activations::Q8_0 { blocks, d, split }) => {
            let x: &[BlockQ4_0] = bytemuck::cast_slice(w);
            match isa {
                Isa::Scalar => vec_dot_q4_0_q8_0(x, blocks),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the caller checked the tier is available; x and blocks have equal lengths.
                Isa::Avx2 => unsafe { super::x86::q4_0_q8_0(x, blocks, d) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above; `split` was made from `blocks`.
                Isa::Avx512 => unsafe { super::x86_512::q4_0_q8_0(x, blocks, split) },
                #[cfg(target_arch = "aarch64")]
                // SAFETY: NEON is part of every aarch64 target; the lengths as above.
                Isa::Neon => unsafe { super::aarch64::q4_0_q8_0(x, blocks, d) },
                #[cfg(target_arch = "aarch64")]
                // SAFETY: the caller checked the tier (i8mm implies dotprod); the lengths as above.
                Isa::Dotprod | Isa::I8mm => unsafe { super::aarch64::q4_0_q8_0_dotprod(x, blocks, d) },
            }
        }
        (GgmlType::Q8_0, Activations::Q8_0 { blocks, d, .. }) => {
            let x: &[BlockQ8_0] = bytemuck::cast_slice(w);
            match isa {
                Isa::Scalar => vec_dot_q8_0_q8_0(x, blocks),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the caller checked the tier is available; x and blocks have equal lengths.
                Isa::Avx2 => unsafe { super::x86::q8_0_q8_0(x, blocks, d) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                Isa::Avx512 => unsafe { super::x86_512::q8_0_q8_0(x, blocks, d) },
                #[cfg(target_arch = "aarch64")]
                // SAFETY: NEON is part of every aarch64 target; the lengths as above.
                Isa::Neon => unsafe { super::aarch64::q8_0_q8_0(x, blocks, d) },
                #[cfg(target_arch = "aarch64")]
                // SAFETY: the caller checked the tier (i8mm implies dotprod); the lengths as above.
                Isa::Dotprod | Isa::I8mm => unsafe { super::aarch64::q8_0_q8_0_dotprod(x, blocks, d) },
            }
        }
        (GgmlType::Q4K, Activations::Q8K { blocks, sums32 }) => {
            let x: &[BlockQ4K] = bytemuck::cast_slice(w);
            match isa {
                Isa::Scalar => vec_dot_q4_k_q8_k(x, blocks),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the caller checked the tier is available; x and blocks have equal lengths.
                Isa::Avx2 => unsafe { super::x86::q4_k_q8_k(x, blocks, sums32) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                Isa::Avx512 => unsafe { super::x86_512::q4_k_q8_k(x, blocks, sums32) },
                #[cfg(target_arch = "aarch64")]
                // SAFETY: NEON is part of every aarch64 target; the lengths as above.
                Isa::Neon => unsafe { super::aarch64::q4_k_q8_k(x, blocks, sums32) },
                #[cfg(target_arch = "aarch64")]
                // SAFETY: the caller checked the tier (i8mm implies dotprod); the lengths as above.
                Isa::Dotprod | Isa::I8mm => unsafe { super::aarch64::q4_k_q8_k_dotprod(x, blocks, sums32) },
            }
        }
        (GgmlType::Q6K, Activations::Q8K { blocks, .. }) => {
            let x: &[BlockQ6K] = bytemuck::cast_slice(w);
            match isa {
                Isa::Scalar => vec_dot_q6_k_q8_k(x, blocks),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the caller checked the tier is available; x and blocks have equal lengths.
                Isa::Avx2 => unsafe { super::x86::q6_k_q8_k(x, blocks) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                Isa::Avx512 => unsafe { super::x86_512::q6_k_q8_k(x, blocks) },
                #[cfg(target_arch = "aarch64")]
                // SAFETY: NEON is part of every aarch64 target; the lengths as above.
                Isa::Neon => unsafe { super::aarch64::q6_k_q8_k(x, blocks) },
                #[cfg(target_arch = "aarch64")]
                // SAFETY: the caller checked the tier (i8mm implies dotprod); the lengths as above.
                Isa::Dotprod | Isa::I8mm => unsafe { super::aarch64::q6_k_q8_k_dotprod(x, blocks) },
            }
        }
        // `Activations::quantize` pairs each type with its format; no other pair reaches here.
        _ => return Err(unsupported(ty)),
    })
}

/// The dot product of one weight row `w` (bytes of whole `ty` blocks) with the f32 row `x`,
/// quantized to `ty`'s activation format as ggml does, on `isa` (as ggml's `vec_dot` after
/// `from_float`). `x.len()` must be the row's element count and `x` finite.
pub fn vec_dot_on(isa: Isa, ty: GgmlType, w: &[u8], x: &[f32]) -> Result<f32> {
    isa.ensure_available()?;
    let bytes = ty.row_bytes(x.len())?;
    if w.len() != bytes {
        return Err(Error::invalid(
            "w",
            format!("{} bytes", w.len()),
            format!("the row takes {bytes} bytes"),
        ));
    }
    let act = Activations::quantize(isa, ty, x)?;
    row_dot(isa, ty, w, &act)
}
