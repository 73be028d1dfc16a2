//! Packing: B into [`PackedI8`] column panels once, A into row panels per cache block.

use super::blocking::{KU, MR, NR};
use super::check_matrix;
use super::kernel::BLayout;
use crate::error::checked_product;
use crate::{Error, Result};

/// One depth quad of one B panel: 16 columns x 4 consecutive k values, column-major within the
/// quad (`[c0k0 c0k1 c0k2 c0k3 c1k0 ...]`), aligned for vector loads.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct Quad(pub [i8; NR * KU]);

const _: () = assert!(std::mem::size_of::<Quad>() == 64);

/// One quad of one B panel sign-extended to i16 for the exact full-range kernel: for each group
/// of eight columns, the even-k vector then the odd-k vector, i16 lane `2c + h` holding
/// `b[k = 2h (+1)][c]`. Widened once per panel and cache block, then read by every row tile.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct WideQuad(pub [i16; NR * KU]);

const _: () = assert!(std::mem::size_of::<WideQuad>() == 128);

/// B (`k x n`, i8) packed once into the microkernel's layout, with its column sums.
///
/// Columns are grouped in panels of 16 (the last zero-padded); inside a panel, k runs in quads of
/// four (the last zero-padded), each quad one 64-byte [`Quad`]. Packing costs one pass over B; the
/// packed form is what inference reuses for every call (`gemm_u8_packed`, `gemm_i8_packed`,
/// [`QuantLinear`](super::QuantLinear)). The column sums serve zero-point corrections: with
/// `a' = a - z`, `sum_k a'[i][k] b[k][j] = sum_k a b - z * col_sums[j]`.
#[derive(Clone, Debug)]
pub struct PackedI8 {
    k: usize,
    n: usize,
    quads: usize,
    data: Vec<Quad>,
    col_sums: Vec<i32>,
    seven_bit: bool,
    layout: BLayout,
}

impl PackedI8 {
    /// Packs row-major B (`k x n`, leading dimension `ldb >= n`).
    pub fn pack(k: usize, n: usize, b: &[i8], ldb: usize) -> Result<Self> {
        let mut packed = Self::zeroed(0, 0)?;
        packed.repack(k, n, b, ldb)?;
        Ok(packed)
    }

    /// Packs row-major B into this handle, reusing its memory (the plain API's per-thread buffer:
    /// a fresh `k x n` allocation costs a page fault per 4 KiB, more than the packing itself).
    /// On error the handle is left empty.
    pub(crate) fn repack(&mut self, k: usize, n: usize, b: &[i8], ldb: usize) -> Result<()> {
        if let Err(error) = check_matrix("b", b.len(), k, n, ldb) {
            self.reset(0, 0, true)?;
            return Err(error);
        }
        // Where the AVX-512 strips will cover every quad, old contents need not be zeroed first.
        let covered = n.is_multiple_of(64) && k.is_multiple_of(KU) && self.strips_available();
        self.reset(k, n, !covered)?;
        let packed = self;
        if k == 0 || n == 0 {
            return Ok(());
        }
        // The AVX-512 tier packs whole strips of 64 columns over whole quads in registers; the
        // rest (last columns, a last partial quad) is done here.
        let (strip_cols, strip_quads, (mut low, mut high)) = packed.pack_strips(b, ldb);
        // Column sums and the 7-bit test in one sequential pass over the rows.
        for kk in 0..k {
            let first = if kk < strip_quads * KU { strip_cols } else { 0 };
            let row = &b[kk * ldb + first..kk * ldb + n];
            for (sum, &v) in packed.col_sums[first..].iter_mut().zip(row) {
                *sum = sum.wrapping_add(i32::from(v));
                low = low.min(v);
                high = high.max(v);
            }
        }
        packed.seven_bit = low >= -64 && high <= 63;
        // Quads in blocks of 16 (64 rows of B read side by side), each panel's 16 quads of the
        // block written contiguously.
        let quads = packed.quads;
        for q0 in (0..quads).step_by(16) {
            for (p, panel) in packed.data.chunks_exact_mut(quads).enumerate() {
                let (j0, width) = (p * NR, NR.min(n - p * NR));
                let first = if j0 < strip_cols { strip_quads.max(q0) } else { q0 };
                for (q, quad) in panel.iter_mut().enumerate().take(quads.min(q0 + 16)).skip(first) {
                    #[cfg(target_arch = "x86_64")]
                    if width == NR && (q + 1) * KU <= k {
                        let at = |u: usize| &b[(q * KU + u) * ldb + j0..(q * KU + u) * ldb + j0 + NR];
                        *quad = transpose_quad([at(0), at(1), at(2), at(3)]);
                        continue;
                    }
                    for u in 0..KU.min(k - q * KU) {
                        let kk = q * KU + u;
                        for (j, &v) in b[kk * ldb + j0..kk * ldb + j0 + width].iter().enumerate() {
                            quad.0[j * KU + u] = v;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether [`PackedI8::pack_strips`] packs on this tier.
    fn strips_available(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return super::x86_512::Avx512::detect().is_some()
            && crate::kernels::Isa::active() >= crate::kernels::Isa::Avx512;
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// On the AVX-512 tier, packs every whole 64-column strip of B over its whole quads and
    /// sums those columns over those rows; returns the columns and quads covered and the
    /// smallest and largest byte seen (`(0, 0, (0, 0))` on other tiers).
    fn pack_strips(&mut self, b: &[i8], ldb: usize) -> (usize, usize, (i8, i8)) {
        #[cfg(target_arch = "x86_64")]
        if self.strips_available() {
            let (strips, quads) = (self.n / 64, self.k / KU);
            let (mut low, mut high) = (0i8, 0i8);
            // 32 rows at a time across all strips: few streams for the prefetcher, pages in the TLB.
            for q0 in (0..quads).step_by(8) {
                let qn = 8.min(quads - q0);
                for s in 0..strips {
                    let Some(sums) = self.col_sums[64 * s..].first_chunk_mut::<64>() else { break };
                    let out = self.data[4 * s * self.quads + q0..].as_mut_ptr();
                    let rows = &b[q0 * KU * ldb + 64 * s..];
                    // SAFETY: the token proves AVX-512 VNNI; the block's 4 qn rows of 64 bytes lie
                    // in b (checked against k x n), its four panels' quads q0.. in data.
                    let (l, h) =
                        unsafe { super::x86_512::pack_strip(rows.as_ptr(), ldb, qn, out, self.quads, sums) };
                    (low, high) = (low.min(l), high.max(h));
                }
            }
            return (64 * strips, quads, (low, high));
        }
        let _ = (b, ldb);
        (0, 0, (0, 0))
    }

    /// Packs B = W^T from row-major W (`n x k`, leading dimension `ldw >= k`): a linear layer's
    /// weight as stored by PyTorch and ONNX (one row per output channel).
    pub fn pack_transposed(n: usize, k: usize, w: &[i8], ldw: usize) -> Result<Self> {
        check_matrix("w", w.len(), n, k, ldw)?;
        let mut packed = Self::zeroed(k, n)?;
        if k == 0 || n == 0 {
            return Ok(packed);
        }
        let quads = packed.quads;
        let PackedI8 { data, col_sums, seven_bit, .. } = &mut packed;
        for (j, sum) in col_sums.iter_mut().enumerate() {
            let panel = &mut data[(j / NR) * quads..(j / NR + 1) * quads];
            for (kk, &v) in w[j * ldw..j * ldw + k].iter().enumerate() {
                *seven_bit &= (-64..=63).contains(&v);
                *sum = sum.wrapping_add(i32::from(v));
                panel[kk / KU].0[(j % NR) * KU + kk % KU] = v;
            }
        }
        Ok(packed)
    }

    /// An all-zero B of `k x n` in [`BLayout::Quad16x4`] (column sums 0, 7-bit).
    fn zeroed(k: usize, n: usize) -> Result<Self> {
        let layout = BLayout::Quad16x4;
        let mut packed = PackedI8 {
            k: 0,
            n: 0,
            quads: 0,
            data: Vec::new(),
            col_sums: Vec::new(),
            seven_bit: true,
            layout,
        };
        packed.reset(k, n, true)?;
        Ok(packed)
    }

    /// Makes this handle a B of `k x n` in [`BLayout::Quad16x4`] with zero column sums, keeping
    /// its memory; the quads are all zero with `zero`, else zero only past what it held before.
    fn reset(&mut self, k: usize, n: usize, zero: bool) -> Result<()> {
        let quads = k.div_ceil(KU);
        let len = checked_product("packed B", &[n.div_ceil(NR), quads])?;
        let grow = |have: usize, want: usize| want.saturating_sub(have);
        if zero {
            self.data.clear();
        }
        self.data.truncate(len);
        self.data
            .try_reserve_exact(grow(self.data.capacity(), len))
            .map_err(|_| Error::OutOfMemory { bytes: len.saturating_mul(64) })?;
        self.data.resize(len, Quad([0; NR * KU]));
        self.col_sums.clear();
        self.col_sums
            .try_reserve_exact(grow(self.col_sums.capacity(), n))
            .map_err(|_| Error::OutOfMemory { bytes: n.saturating_mul(4) })?;
        self.col_sums.resize(n, 0);
        (self.k, self.n, self.quads, self.seven_bit, self.layout) = (k, n, quads, true, BLayout::Quad16x4);
        Ok(())
    }

    /// Bytes of memory the handle holds.
    pub(crate) fn held_bytes(&self) -> usize {
        self.data.capacity() * std::mem::size_of::<Quad>() + self.col_sums.capacity() * 4
    }

    /// The layout B was packed in: a kernel that does not read it refuses the handle.
    pub fn layout(&self) -> BLayout {
        self.layout
    }

    /// The same data relabelled with another layout (to test that kernels refuse it).
    #[cfg(test)]
    pub(crate) fn relabelled(mut self, layout: BLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Depth (rows of B).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of B.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `sum_k b[k][j]` for every column `j` (wrapping in i32, exact for k < 2^24).
    pub fn col_sums(&self) -> &[i32] {
        &self.col_sums
    }

    /// Whether every value lies in [-64, 63], so that `vpmaddubsw` cannot saturate with any u8 A:
    /// products with such B take the fastest exact path.
    pub fn is_seven_bit(&self) -> bool {
        self.seven_bit
    }

    /// Quads per panel (k rounded up to a multiple of four, over four).
    pub(crate) fn quads(&self) -> usize {
        self.quads
    }

    /// Number of 16-column panels.
    pub(crate) fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// The quads `q0..` of panel `p`.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn panel_from(&self, p: usize, q0: usize) -> &[Quad] {
        &self.data[p * self.quads + q0..(p + 1) * self.quads]
    }

    /// Quads `q0..q0 + qn` of the `count` panels from `p` (`p + count <= panels`).
    pub(crate) fn panels_from(&self, p: usize, count: usize, q0: usize, qn: usize) -> Panels<'_> {
        let span = (count - 1) * self.quads + qn;
        Panels {
            data: &self.data[p * self.quads + q0..p * self.quads + q0 + span],
            count,
            stride: self.quads,
            quads: qn,
        }
    }
}

/// Consecutive B panels seen from one depth block: panel `i`'s `quads` quads start at
/// `data[i * stride]`.
#[derive(Clone, Copy)]
pub(crate) struct Panels<'a> {
    data: &'a [Quad],
    /// Read by the multi-panel AVX-512 tiles only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) count: usize,
    /// Read by the multi-panel AVX-512 tiles only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) stride: usize,
    pub(crate) quads: usize,
}

impl<'a> Panels<'a> {
    /// The first panel's quads.
    pub(crate) fn first(&self) -> &'a [Quad] {
        &self.data[..self.quads]
    }
}

/// Four rows of 16 B bytes as one [`Quad`] (column-major 4 x 16), with SSE2 byte and word
/// interleaves.
#[cfg(target_arch = "x86_64")]
#[inline]
fn transpose_quad(rows: [&[i8]; KU]) -> Quad {
    use std::arch::x86_64::*;
    assert!(rows.iter().all(|r| r.len() >= NR));
    let mut quad = Quad([0; NR * KU]);
    // SAFETY: SSE2 is part of every x86_64 target; each row holds 16 bytes (asserted) and the
    // quad 64, written as four unaligned 16-byte stores.
    unsafe {
        let [r0, r1, r2, r3] = rows.map(|r| _mm_loadu_si128(r.as_ptr().cast()));
        let (t0, t1) = (_mm_unpacklo_epi8(r0, r1), _mm_unpackhi_epi8(r0, r1));
        let (t2, t3) = (_mm_unpacklo_epi8(r2, r3), _mm_unpackhi_epi8(r2, r3));
        let out = quad.0.as_mut_ptr().cast::<__m128i>();
        _mm_storeu_si128(out, _mm_unpacklo_epi16(t0, t2));
        _mm_storeu_si128(out.add(1), _mm_unpackhi_epi16(t0, t2));
        _mm_storeu_si128(out.add(2), _mm_unpacklo_epi16(t1, t3));
        _mm_storeu_si128(out.add(3), _mm_unpackhi_epi16(t1, t3));
    }
    quad
}

/// An A element: the kernels read u8; i8 is shifted by +128 (and the result corrected with B's
/// column sums), which is exact.
pub trait AElement: Copy + Send + Sync + 'static {
    /// The element as the kernels' u8.
    fn to_kernel_u8(self) -> u8;
    /// The offset added by [`AElement::to_kernel_u8`] (0 or 128).
    const SHIFT: i32;
    /// The element's value as i16 (the streaming kernel multiplies it unshifted).
    fn widen(self) -> i16;
    /// The slice as the kernels' bytes, where that needs no conversion (u8).
    fn kernel_bytes(a: &[Self]) -> Option<&[u8]> {
        let _ = a;
        None
    }
}

impl AElement for u8 {
    #[inline(always)]
    fn to_kernel_u8(self) -> u8 {
        self
    }
    const SHIFT: i32 = 0;
    #[inline(always)]
    fn widen(self) -> i16 {
        i16::from(self)
    }
    fn kernel_bytes(a: &[u8]) -> Option<&[u8]> {
        Some(a)
    }
}

impl AElement for i8 {
    #[inline(always)]
    fn to_kernel_u8(self) -> u8 {
        (self as u8) ^ 0x80
    }
    const SHIFT: i32 = 128;
    #[inline(always)]
    fn widen(self) -> i16 {
        i16::from(self)
    }
}

/// Whether every kernel byte of the block (rows, k range) is <= 127.
pub(crate) fn block_is_seven_bit<T: AElement>(
    a: &[T],
    lda: usize,
    rows: std::ops::Range<usize>,
    ks: std::ops::Range<usize>,
) -> bool {
    let mut or = 0u8;
    for i in rows {
        for &v in &a[i * lda + ks.start..i * lda + ks.end] {
            or |= v.to_kernel_u8();
        }
    }
    or < 0x80
}

/// Packs rows `rows` and k values `ks` of A into row panels of [`MR`]: for each quad, MR rows of
/// four bytes. Missing rows and k values are zero. `out` holds `ceil(rows/MR) * quads * MR * 4`.
pub(crate) fn pack_a_narrow<T: AElement>(
    a: &[T],
    lda: usize,
    rows: std::ops::Range<usize>,
    ks: std::ops::Range<usize>,
    out: &mut [u8],
) {
    pack_a(a, lda, rows, ks, out, [0, 1, 2, 3], |v| v);
}

#[cfg(target_arch = "x86_64")]
/// Packs like [`pack_a_narrow`] but widened to i16 for the exact full-range kernel: for each quad
/// and row, `[a0, a2, a1, a3]` (even k pair, then odd k pair).
pub(crate) fn pack_a_wide<T: AElement>(
    a: &[T],
    lda: usize,
    rows: std::ops::Range<usize>,
    ks: std::ops::Range<usize>,
    out: &mut [i16],
) {
    pack_a(a, lda, rows, ks, out, [0, 2, 1, 3], i16::from);
}

/// The packing both layouts share: k value `u` of a quad goes to slot `slot[u]` of its row's four,
/// as `element(kernel byte)`. Whole quads are copied four values at a time; a panel is zeroed first
/// only when it has missing rows or a partial last quad.
fn pack_a<T: AElement, O: Copy + Default>(
    a: &[T],
    lda: usize,
    rows: std::ops::Range<usize>,
    ks: std::ops::Range<usize>,
    out: &mut [O],
    slot: [usize; KU],
    element: impl Fn(u8) -> O,
) {
    let quads = ks.len().div_ceil(KU);
    let whole = ks.len() / KU;
    let panel_len = quads * MR * KU;
    for (pi, r0) in rows.clone().step_by(MR).enumerate() {
        let panel = &mut out[pi * panel_len..(pi + 1) * panel_len];
        let present = MR.min(rows.end - r0);
        if present < MR || whole < quads {
            panel.fill(O::default());
        }
        for r in 0..present {
            let row = &a[(r0 + r) * lda + ks.start..(r0 + r) * lda + ks.end];
            let (body, rest) = row.split_at(whole * KU);
            for (quad, src) in panel.chunks_exact_mut(MR * KU).zip(body.chunks_exact(KU)) {
                let dst = &mut quad[r * KU..(r + 1) * KU];
                for (&at, &v) in slot.iter().zip(src) {
                    dst[at] = element(v.to_kernel_u8());
                }
            }
            for (&at, &v) in slot.iter().zip(rest) {
                panel[whole * MR * KU + r * KU + at] = element(v.to_kernel_u8());
            }
        }
    }
}
