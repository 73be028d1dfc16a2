//! Packing: B into [`PackedI8`] column panels once, A into row panels per cache block.

use super::blocking::{KU, MR, NR};
use super::check_matrix;
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

/// How a B source is laid out in memory, so that packing reads it sequentially.
#[derive(Clone, Copy)]
enum Source {
    /// `b[k][j]`: k rows of n.
    RowMajor,
    /// `w[j][k]`: n rows of k (B = W^T).
    Transposed,
}

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
}

impl PackedI8 {
    /// Packs row-major B (`k x n`, leading dimension `ldb >= n`).
    pub fn pack(k: usize, n: usize, b: &[i8], ldb: usize) -> Result<Self> {
        check_matrix("b", b.len(), k, n, ldb)?;
        Self::from_fn(k, n, Source::RowMajor, |kk, j| b[kk * ldb + j])
    }

    /// Packs B = W^T from row-major W (`n x k`, leading dimension `ldw >= k`): a linear layer's
    /// weight as stored by PyTorch and ONNX (one row per output channel).
    pub fn pack_transposed(n: usize, k: usize, w: &[i8], ldw: usize) -> Result<Self> {
        check_matrix("w", w.len(), n, k, ldw)?;
        Self::from_fn(k, n, Source::Transposed, |kk, j| w[j * ldw + kk])
    }

    /// Packs from `at(k, j)`, visiting the source in its memory order.
    fn from_fn(k: usize, n: usize, order: Source, at: impl Fn(usize, usize) -> i8) -> Result<Self> {
        let quads = k.div_ceil(KU);
        let panels = n.div_ceil(NR);
        let len = checked_product("packed B", &[panels, quads])?;
        let mut data = Vec::new();
        data.try_reserve_exact(len).map_err(|_| Error::OutOfMemory { bytes: len.saturating_mul(64) })?;
        data.resize(len, Quad([0; NR * KU]));
        let mut col_sums = crate::error::try_vec(n, 0i32)?;
        let mut seven_bit = true;
        let mut put = |kk: usize, j: usize| {
            let v = at(kk, j);
            seven_bit &= (-64..=63).contains(&v);
            col_sums[j] = col_sums[j].wrapping_add(i32::from(v));
            data[(j / NR) * quads + kk / KU].0[(j % NR) * KU + kk % KU] = v;
        };
        match order {
            Source::RowMajor => (0..k).for_each(|kk| (0..n).for_each(|j| put(kk, j))),
            Source::Transposed => (0..n).for_each(|j| (0..k).for_each(|kk| put(kk, j))),
        }
        Ok(PackedI8 { k, n, quads, data, col_sums, seven_bit })
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
    pub(crate) fn panel_from(&self, p: usize, q0: usize) -> &[Quad] {
        &self.data[p * self.quads + q0..(p + 1) * self.quads]
    }
}

/// An A element: the kernels read u8; i8 is shifted by +128 (and the result corrected with B's
/// column sums), which is exact.
pub trait AElement: Copy + Send + Sync + 'static {
    /// The element as the kernels' u8.
    fn to_kernel_u8(self) -> u8;
    /// The offset added by [`AElement::to_kernel_u8`] (0 or 128).
    const SHIFT: i32;
}

impl AElement for u8 {
    #[inline(always)]
    fn to_kernel_u8(self) -> u8 {
        self
    }
    const SHIFT: i32 = 0;
}

impl AElement for i8 {
    #[inline(always)]
    fn to_kernel_u8(self) -> u8 {
        (self as u8) ^ 0x80
    }
    const SHIFT: i32 = 128;
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
