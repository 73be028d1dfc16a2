//! 2:4 sparse int8 weights for [`QuantLinear`](super::QuantLinear): in every aligned group of
//! four inputs of a weight row at most two values are nonzero, so only two values and their
//! positions are kept and the product does half the multiplies.
//!
//! Layout ([`Sparse24`]): output rows in panels of 16 (the last one padded with zero rows),
//! inputs in blocks of 8 (two groups of four; `in_features % 8 == 0` is required, not padded). Per
//! panel and block, two 64-byte lines: the kept values (lane `r`, bytes `4 r .. 4 r + 4`: row `r`'s
//! two kept values of the block's first group, then the second's) and their positions (the same
//! bytes: each value's input index inside the 16-input chunk the block belongs to, `0 .. 16`).
//! A group with fewer than two nonzeros keeps zeros at unused positions. Panel `p`'s lines start at
//! `2 p blocks`, block `b`'s at `2 b` after that, so a chunk of 16 inputs is four consecutive lines.
//!
//! The AVX-512 kernel (outputs in lanes): per chunk, the lines of two panels stay in registers
//! over a tile of up to six tokens; each token's 16 activation bytes are broadcast to the four
//! 128-bit lanes, `vpshufb` with a block's positions picks each lane's four kept activations, and
//! `vpdpbusd` (u8 activations x i8 weights) adds their products. i8 activations are flipped to u8
//! (`x ^ 0x80 = x + 128`) and the accumulators start from `-128 col_sums`, exact in wrapping i32,
//! so the i32 products equal the dense kernel's bit for bit, and so does `y` after the same epilogue.
//!
//! Other tiers: the scalar tier runs [`Sparse24::product_scalar`] over the same layout; AVX2 and
//! NEON run their dense kernel on the weights decompressed once (kept beside the 2:4 form on first
//! use): the same integers, so the same `y`.

use super::pack::PackedI8;
use crate::error::try_vec;
use crate::{Error, Result};
use std::sync::OnceLock;

/// Output rows per panel (the zmm's 16 i32 lanes).
pub(crate) const PANEL: usize = 16;
/// Inputs per block (two groups of four); `in_features` must be a multiple.
pub(crate) const BLOCK: usize = 8;
/// Inputs per chunk (the 16 activation bytes one broadcast covers: two blocks).
const CHUNK: usize = 16;

/// One 64-byte line of the layout (aligned for the kernel's loads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [u8; 64]);

/// A 2:4 int8 weight matrix (`n` outputs x `k` inputs) in the kernel's layout (see the module notes).
#[derive(Clone, Debug)]
pub(crate) struct Sparse24 {
    n: usize,
    k: usize,
    lines: Vec<Line>,
    /// Per output row, the sum of its integers (as `PackedI8::col_sums`).
    col_sums: Vec<i32>,
    /// The decompressed weights packed for the dense kernels (AVX2, NEON), made on first use.
    dense: OnceLock<PackedI8>,
}

/// Fails unless every aligned group of four in every row of `w` (`rows x cols`, row-major) has
/// at most two nonzero values (`is_zero`), naming the first row and group that does not.
pub(crate) fn check_2_4<T>(w: &[T], rows: usize, cols: usize, is_zero: impl Fn(&T) -> bool) -> Result<()> {
    if !cols.is_multiple_of(BLOCK) {
        return Err(Error::invalid(
            "in_features",
            cols,
            format!("a 2:4 layer needs a multiple of {BLOCK} inputs (pad the weights with zero columns)"),
        ));
    }
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        if let Some(g) = row.chunks_exact(4).position(|g| g.iter().filter(|v| !is_zero(v)).count() > 2) {
            return Err(Error::invalid(
                "w",
                format!("row {r}, group {g} (inputs {} to {})", 4 * g, 4 * g + 3),
                "more than two nonzero values in an aligned group of four: not 2:4",
            ));
        }
    }
    Ok(())
}

/// The error of a tier whose 2:4 kernel does not dequantize in registers.
fn no_dequant(kernel: super::Kernel) -> Error {
    Error::invalid("kernel", kernel.name(), "does not dequantize a 2:4 product")
}

impl Sparse24 {
    /// Packs `w` (`n x k` i8, row-major), which the caller checked with [`check_2_4`].
    pub(crate) fn pack(w: &[i8], n: usize, k: usize) -> Result<Self> {
        let (panels, blocks) = (n.div_ceil(PANEL), k / BLOCK);
        let mut lines = try_vec(2 * panels * blocks, Line([0; 64]))?;
        let mut col_sums = try_vec(n, 0i32)?;
        for (o, sum) in col_sums.iter_mut().enumerate() {
            let row = &w[o * k..(o + 1) * k];
            *sum = row.iter().map(|&v| i32::from(v)).sum();
            let (p, lane) = (o / PANEL, o % PANEL);
            for b in 0..blocks {
                let at = 2 * (p * blocks + b);
                for h in 0..2 {
                    let first = b * BLOCK + 4 * h;
                    let group = &row[first..first + 4];
                    // The nonzeros' positions, then the lowest unused ones (their values are 0),
                    // two in all (check_2_4 allows at most two nonzeros), in input order.
                    let mut two = [0usize; 2];
                    let nonzero = (0..4).filter(|&i| group[i] != 0);
                    let picked = nonzero.chain((0..4).filter(|&i| group[i] == 0)).take(2);
                    for (slot, pos) in two.iter_mut().zip(picked) {
                        *slot = pos;
                    }
                    two.sort_unstable();
                    for (j, &pos) in two.iter().enumerate() {
                        let byte = 4 * lane + 2 * h + j;
                        lines[at].0[byte] = group[pos] as u8;
                        lines[at + 1].0[byte] = ((b % 2) * BLOCK + 4 * h + pos) as u8;
                    }
                }
            }
        }
        Ok(Sparse24 { n, k, lines, col_sums, dense: OnceLock::new() })
    }

    /// Output rows.
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// Inputs.
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Per output row, the sum of its integers.
    pub(crate) fn col_sums(&self) -> &[i32] {
        &self.col_sums
    }

    /// Bytes the 2:4 form holds (values and positions, one byte each, padding included).
    pub(crate) fn held_bytes(&self) -> usize {
        self.lines.len() * std::mem::size_of::<Line>()
    }

    /// Value and input index of row `o`'s kept slot `s` (`0 .. k / 2`, in input order per group).
    fn slot(&self, o: usize, s: usize) -> (i8, usize) {
        let blocks = self.k / BLOCK;
        let (p, lane) = (o / PANEL, o % PANEL);
        let (b, j) = (s / 4, s % 4);
        let at = 2 * (p * blocks + b);
        let byte = 4 * lane + j;
        let value = self.lines[at].0[byte] as i8;
        let index = (b / 2) * CHUNK + usize::from(self.lines[at + 1].0[byte]);
        (value, index)
    }

    /// The weights decompressed (`n x k` i8, row-major).
    pub(crate) fn unpack(&self) -> Result<Vec<i8>> {
        let (n, k) = (self.n, self.k);
        let mut w = try_vec(n * k, 0i8)?;
        for o in 0..n {
            for s in 0..k / 2 {
                let (value, index) = self.slot(o, s);
                w[o * k + index] = value;
            }
        }
        Ok(w)
    }

    /// The weights packed for the dense kernels, decompressed on first use.
    pub(crate) fn dense(&self) -> Result<&PackedI8> {
        if let Some(packed) = self.dense.get() {
            return Ok(packed);
        }
        let packed = PackedI8::pack_transposed(self.n, self.k, &self.unpack()?, self.k)?;
        // Another thread may have set it first: the same weights either way.
        let _ = self.dense.set(packed);
        self.dense.get().ok_or_else(|| Error::invalid("2:4 weights", "dense copy", "could not be kept"))
    }

    /// `c = q W^T` on `kernel`'s 2:4 kernel: AVX-512's, else the scalar one (the caller sends
    /// other tiers to the dense kernel on [`Sparse24::dense`]).
    pub(crate) fn product(&self, kernel: super::Kernel, q: &[u8], rows: usize, signed: bool, c: &mut [i32]) {
        match kernel.tier {
            #[cfg(target_arch = "x86_64")]
            super::kernel::Tier::Avx512(token) => self.product_avx512(token, q, rows, signed, Out::Acc(c)),
            #[cfg(target_arch = "x86_64")]
            super::kernel::Tier::Avx2(_) => self.product_scalar(q, rows, signed, c),
            #[cfg(target_arch = "aarch64")]
            super::kernel::Tier::Neon(_) => self.product_scalar(q, rows, signed, c),
            super::kernel::Tier::Scalar => self.product_scalar(q, rows, signed, c),
        }
    }

    /// Whether [`Sparse24::product_dequant`] runs on `kernel` (AVX-512).
    pub(crate) fn can_dequant(kernel: super::Kernel) -> bool {
        #[cfg(target_arch = "x86_64")]
        return matches!(kernel.tier, super::kernel::Tier::Avx512(_));
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = kernel;
            false
        }
    }

    /// `y = dequant(q W^T)` on the AVX-512 2:4 kernel, the dequantization in registers
    /// (`Dequant`'s formula, the same bits as the scalar epilogue; exact while the depth is at
    /// most the caller's i32 bound), for a `kernel` [`Sparse24::can_dequant`] accepts; elsewhere
    /// an error and nothing written.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    pub(crate) fn product_dequant(
        &self,
        kernel: super::Kernel,
        q: &[u8],
        signed: bool,
        dequant: super::Dequant<'_>,
    ) -> Result<()> {
        match kernel.tier {
            #[cfg(target_arch = "x86_64")]
            super::kernel::Tier::Avx512(token) => {
                self.product_avx512(token, q, dequant.rows.len(), signed, Out::Dequant(dequant));
                Ok(())
            }
            #[cfg(target_arch = "x86_64")]
            super::kernel::Tier::Avx2(_) => Err(no_dequant(kernel)),
            #[cfg(target_arch = "aarch64")]
            super::kernel::Tier::Neon(_) => Err(no_dequant(kernel)),
            super::kernel::Tier::Scalar => Err(no_dequant(kernel)),
        }
    }

    /// `c = q W^T` (`rows x n` i32, wrapping) for `rows` quantized rows `q` (`rows x k`, u8 or
    /// i8 as `signed` says), one kept slot at a time: the portable kernel.
    pub(crate) fn product_scalar(&self, q: &[u8], rows: usize, signed: bool, c: &mut [i32]) {
        let (n, k) = (self.n, self.k);
        for i in 0..rows {
            let x = &q[i * k..(i + 1) * k];
            for o in 0..n {
                let mut sum = 0i32;
                for s in 0..k / 2 {
                    let (value, index) = self.slot(o, s);
                    let a = if signed { i32::from(x[index] as i8) } else { i32::from(x[index]) };
                    sum = sum.wrapping_add(a.wrapping_mul(i32::from(value)));
                }
                c[i * n + o] = sum;
            }
        }
    }

    /// The AVX-512 2:4 product into i32 `c` or dequantized into `y`.
    #[cfg(target_arch = "x86_64")]
    fn product_avx512(
        &self,
        token: super::x86_512::Avx512,
        q: &[u8],
        rows: usize,
        signed: bool,
        out: Out<'_>,
    ) {
        let _ = token;
        let (n, k) = (self.n, self.k);
        assert!(q.len() >= rows * k, "checked by the caller");
        let (base, ldc, fuse): (*mut u32, usize, _) = match out {
            Out::Acc(c) => {
                assert!(c.len() >= rows * n, "checked by the caller");
                (c.as_mut_ptr().cast(), n, None)
            }
            Out::Dequant(d) => {
                let fits = d.rows.len() == rows
                    && d.w_scale.len() >= n
                    && d.bias.len() >= n
                    && (rows == 0 || d.ldy >= n && d.y.len() >= (rows - 1) * d.ldy + n);
                assert!(fits, "checked by the caller");
                (d.y.as_mut_ptr().cast(), d.ldy, Some((d.rows, d.w_scale, d.bias)))
            }
        };
        let blocks = k / BLOCK;
        let panels = n.div_ceil(PANEL);
        let mut p = 0;
        while p < panels {
            let two = p + 2 <= panels;
            let mut t = 0;
            while t < rows {
                let tokens = (rows - t).min(TOKENS);
                let (o, at) = (p * PANEL, t * ldc + p * PANEL);
                let fused = fuse.map(|(quant, w_scale, bias)| Fused {
                    rows: quant[t..].as_ptr(),
                    w_scale: w_scale[o..].as_ptr(),
                    bias: bias[o..].as_ptr(),
                });
                let args = Args {
                    blocks,
                    lines: self.lines[2 * p * blocks..].as_ptr(),
                    panel_stride: 2 * blocks,
                    x: q[t * k..].as_ptr(),
                    ldx: k,
                    col_sums: self.col_sums[o..].as_ptr(),
                    out: base.wrapping_add(at),
                    ldc,
                    cols: n - o,
                    fused,
                };
                // SAFETY: the token proves AVX-512 F/BW/VNNI; the panels' lines, `tokens` rows of
                // q from row t, `tokens` rows of c (or y) from (t, 16 p) and the column sums,
                // scales, biases from 16 p lie inside the buffers checked above (stores and the
                // column loads masked to the `cols` columns left).
                unsafe { dispatch(two, tokens, signed, &args) };
                t += tokens;
            }
            p += if two { 2 } else { 1 };
        }
    }
}

/// Where the AVX-512 product goes.
#[cfg(target_arch = "x86_64")]
enum Out<'a> {
    /// i32 products, `rows x n`, row-major.
    Acc(&'a mut [i32]),
    /// Dequantized into `y` as `Dequant` says.
    Dequant(super::Dequant<'a>),
}

/// Tokens per register tile of the AVX-512 kernel.
#[cfg(target_arch = "x86_64")]
const TOKENS: usize = 6;

/// The per-row and per-column operands of the fused dequantization, from the tile's first
/// row and column.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Fused {
    rows: *const super::RowQuant,
    w_scale: *const f32,
    bias: *const f32,
}

/// The AVX-512 tile's operands.
#[cfg(target_arch = "x86_64")]
struct Args {
    blocks: usize,
    lines: *const Line,
    panel_stride: usize,
    x: *const u8,
    ldx: usize,
    col_sums: *const i32,
    /// i32 C, or f32 y with `fused`.
    out: *mut u32,
    ldc: usize,
    cols: usize,
    fused: Option<Fused>,
}

/// Runs the tile for 1 or 2 panels, `tokens` tokens (1 to [`TOKENS`]), u8 or i8 activations.
///
/// # Safety
/// As [`tile`].
#[cfg(target_arch = "x86_64")]
unsafe fn dispatch(two: bool, tokens: usize, signed: bool, a: &Args) {
    macro_rules! by_tokens {
        ($p:literal, $s:literal) => {
            match tokens {
                1 => tile::<$p, 1, $s>(a),
                2 => tile::<$p, 2, $s>(a),
                3 => tile::<$p, 3, $s>(a),
                4 => tile::<$p, 4, $s>(a),
                5 => tile::<$p, 5, $s>(a),
                _ => tile::<$p, 6, $s>(a),
            }
        };
    }
    const _: () = assert!(TOKENS == 6, "dispatch covers 1 to 6 tokens");
    // SAFETY: the caller's contract.
    unsafe {
        match (two, signed) {
            (true, true) => by_tokens!(2, true),
            (true, false) => by_tokens!(2, false),
            (false, true) => by_tokens!(1, true),
            (false, false) => by_tokens!(1, false),
        }
    }
}

/// `T` tokens x `16 P` outputs: `x W^T` over every block, the panels' lines in registers per
/// chunk (see the module notes), stored as i32 or, with `fused`, dequantized into f32 y. With `S`,
/// x is i8 and flipped to u8, the accumulators starting from `-128 col_sums`. Columns from `cols`
/// on are neither read nor stored.
///
/// # Safety
/// AVX-512 F/BW/VNNI available; `lines + p panel_stride` holds `2 blocks` lines for `p < P`;
/// `x + t ldx` holds `8 blocks` bytes for `t < T`; `out + t ldc` holds `min(cols, 16 P)` values
/// for `t < T`, and `col_sums` (and `fused`'s column pointers) as many; `fused.rows` holds `T`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile<const P: usize, const T: usize, const S: bool>(a: &Args) {
    use std::arch::x86_64::*;
    let mask = |p: usize| -> __mmask16 {
        let live = a.cols.saturating_sub(PANEL * p).min(PANEL);
        ((1u32 << live) - 1) as __mmask16
    };
    let flip = _mm512_set1_epi8(i8::MIN);
    // SAFETY (every masked load of a column operand): the unmasked lanes lie inside it (the
    // caller's contract); masked-off ones are not read.
    let col_sums: [__m512i; P] =
        core::array::from_fn(|p| unsafe { _mm512_maskz_loadu_epi32(mask(p), a.col_sums.add(PANEL * p)) });
    // i8 activations flipped to u8 add 128 col_sums: start from minus that (wrapping).
    let start = match S {
        true => col_sums.map(|s| _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32::<7>(s))),
        false => [_mm512_setzero_si512(); P],
    };
    let mut acc = [start; T];
    let line = |p: usize, i: usize| -> __m512i {
        // SAFETY: i < 2 blocks lines of panel p < P (the callers below), 64-byte aligned.
        unsafe { _mm512_load_si512(a.lines.add(p * a.panel_stride + i).cast()) }
    };
    let chunks = a.blocks / 2;
    for ch in 0..chunks {
        let w: [[__m512i; 4]; P] = core::array::from_fn(|p| core::array::from_fn(|i| line(p, 4 * ch + i)));
        for (t, acc) in acc.iter_mut().enumerate() {
            // SAFETY: 16 bytes of token t's chunk ch lie inside its row.
            let x = unsafe { _mm_loadu_si128(a.x.add(t * a.ldx + CHUNK * ch).cast()) };
            let mut x = _mm512_broadcast_i32x4(x);
            if S {
                x = _mm512_xor_si512(x, flip);
            }
            for (acc, w) in acc.iter_mut().zip(&w) {
                *acc = _mm512_dpbusd_epi32(*acc, _mm512_shuffle_epi8(x, w[1]), w[0]);
                *acc = _mm512_dpbusd_epi32(*acc, _mm512_shuffle_epi8(x, w[3]), w[2]);
            }
        }
    }
    if a.blocks % 2 == 1 {
        // The last block alone: its 8 bytes (positions 0 .. 8 of the chunk).
        let w: [[__m512i; 2]; P] =
            core::array::from_fn(|p| core::array::from_fn(|i| line(p, 4 * chunks + i)));
        for (t, acc) in acc.iter_mut().enumerate() {
            // SAFETY: the row's last 8 bytes.
            let x = unsafe { _mm_loadl_epi64(a.x.add(t * a.ldx + CHUNK * chunks).cast()) };
            let mut x = _mm512_broadcast_i32x4(x);
            if S {
                x = _mm512_xor_si512(x, flip);
            }
            for (acc, w) in acc.iter_mut().zip(&w) {
                *acc = _mm512_dpbusd_epi32(*acc, _mm512_shuffle_epi8(x, w[1]), w[0]);
            }
        }
    }
    let Some(f) = a.fused else {
        for (t, acc) in acc.iter().enumerate() {
            for (p, &v) in acc.iter().enumerate() {
                // SAFETY: the unmasked lanes lie inside c's row t (the caller's contract).
                unsafe { _mm512_mask_storeu_epi32(a.out.add(t * a.ldc + PANEL * p).cast(), mask(p), v) };
            }
        }
        return;
    };
    // As x86_512's fused kernel and the scalar epilogue: (acc - zero col_sums) as f32 times
    // (row scale x weight scale), plus bias, unfused.
    for p in 0..P {
        // SAFETY: as the column sums above.
        let (w_scale, bias) = unsafe {
            (
                _mm512_maskz_loadu_ps(mask(p), f.w_scale.add(PANEL * p)),
                _mm512_maskz_loadu_ps(mask(p), f.bias.add(PANEL * p)),
            )
        };
        for (t, acc) in acc.iter().enumerate() {
            // SAFETY: `rows` holds T (the caller's contract).
            let quant = unsafe { *f.rows.add(t) };
            let shift = _mm512_mullo_epi32(_mm512_set1_epi32(quant.zero), col_sums[p]);
            let centred = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[p], shift));
            let scale = _mm512_mul_ps(_mm512_set1_ps(quant.scale), w_scale);
            let v = _mm512_add_ps(_mm512_mul_ps(centred, scale), bias);
            // SAFETY: the unmasked lanes lie inside y's row t (the caller's contract).
            unsafe { _mm512_mask_storeu_ps(a.out.add(t * a.ldc + PANEL * p).cast(), mask(p), v) };
        }
    }
}

#[cfg(test)]
#[path = "sparse24_tests.rs"]
mod tests;
