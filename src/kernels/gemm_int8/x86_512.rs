//! AVX-512 VNNI microkernels: `vpdpbusd` multiplies four u8 by four i8 and adds the four
//! products to an i32 lane without an i16 intermediate, so every kernel here is exact for every
//! input (no 7-bit condition, no widened layouts).
//!
//! - packed: an `R x 16 P` tile (`R <= 5` rows, `P` panels of 16 columns) in `R P` zmm
//!   accumulators; each [`Quad`] is one zmm of 16 columns x 4 k, A's four bytes per row are
//!   broadcast to every lane;
//! - streaming (few rows of A, row-major B, no packing): four rows of B x 64 columns are loaded
//!   and interleaved in registers into four quad vectors, whose lane `l` holds columns
//!   `16 l + 4 v ..` of vector `v`; the accumulators are put back in column order (a 4 x 4
//!   transpose of 128-bit lanes) when stored. Signed A is the signed operand and B is flipped to
//!   u8 (`b ^ 0x80 = b + 128`), corrected per row by `-128 sum_k a`, which the caller folds in.

use super::pack::Quad;
use crate::kernels::prefetch_tile;
use std::arch::x86_64::*;

/// Proof that AVX-512 F/BW/VL/DQ/VNNI (and the AVX2 tier's features) are present: made only by
/// [`Avx512::detect`], held by the AVX-512 kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Avx512(());

impl Avx512 {
    /// The token, when the CPU has the features.
    pub(crate) fn detect() -> Option<Avx512> {
        crate::kernels::Isa::Avx512.is_available().then_some(Avx512(()))
    }
}

/// What the packed kernel does with its finished accumulators instead of storing them: QuantLinear's
/// dequantization, `y = (acc - zero[r] col_sums[j]) as f32 * (scale[r] w_scale[j]) + bias[j]`
/// (wrapping i32, then f32 multiplies and add, unfused: the same bits as the scalar epilogue).
#[derive(Clone, Copy)]
pub(crate) struct Fuse {
    /// The tile's first output, row-major with leading dimension `ldy`.
    pub(crate) y: *mut f32,
    pub(crate) ldy: usize,
    /// The tile's rows' quantization (`R` of them).
    pub(crate) rows: *const super::RowQuant,
    /// The tile's columns' B sums, weight scales and biases (`16 P` of each).
    pub(crate) col_sums: *const i32,
    pub(crate) w_scale: *const f32,
    pub(crate) bias: *const f32,
}

/// Packed kernel on `tiles` row tiles of `R` rows one below the other (A's next tile `a_tile`
/// bytes on, C's and y's `R` rows down, the rows' quantization `R` on): [`tile_vnni`] on each,
/// without a call per tile.
///
/// # Safety
/// [`tile_vnni`]'s contract for every tile.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn kernel_vnni<const R: usize, const P: usize>(
    tiles: usize,
    a_tile: usize,
    quads: usize,
    a: *const u8,
    a_ld: usize,
    a_step: usize,
    b: *const Quad,
    panel_stride: usize,
    bias: *const i32,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
    fuse: Option<&Fuse>,
) {
    for t in 0..tiles {
        let fuse =
            fuse.map(|f| Fuse { y: f.y.wrapping_add(t * R * f.ldy), rows: f.rows.wrapping_add(t * R), ..*f });
        let (a, c) = (a.wrapping_add(t * a_tile), c.wrapping_add(t * R * ldc));
        // SAFETY: the caller's contract, tile by tile.
        unsafe {
            tile_vnni::<R, P>(
                quads,
                a,
                a_ld,
                a_step,
                b,
                panel_stride,
                bias,
                c,
                ldc,
                accumulate,
                fuse.as_ref(),
            )
        }
    }
}

/// Packed kernel: `tile (+)= bias + A B` over `quads` quads for an `R x 16 P` tile, panel `p`
/// of B at `b + p * panel_stride` quads, every row starting from the `16 P` column values at
/// `bias` (none when null); A's row `r`, quad `q` at `a + q a_step + r a_ld` (the narrow panel:
/// `a_step = MR KU`, `a_ld = KU`; row-major u8 A: `KU` and its leading dimension). With `fuse`,
/// the tile is dequantized into `fuse.y` and C is not touched.
///
/// # Safety
/// AVX-512 F/BW/VNNI must be available; `R <= MR`; `a` must hold the four bytes of every quad
/// `q < quads` of rows `r < R` at those offsets; each of the `P` panels `quads` quads; `bias` null
/// or valid for `16 P` i32; without `fuse`, `c` an `R x 16 P` tile with leading dimension `ldc`;
/// with it, `fuse.y` an `R x 16 P` f32 tile (`ldy` apart), `fuse.rows` valid for `R`, the column
/// pointers for `16 P`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn tile_vnni<const R: usize, const P: usize>(
    quads: usize,
    a: *const u8,
    a_ld: usize,
    a_step: usize,
    b: *const Quad,
    panel_stride: usize,
    bias: *const i32,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
    fuse: Option<&Fuse>,
) {
    if fuse.is_none() {
        prefetch_tile(c, R, ldc, 16 * P);
    }
    let start: [__m512i; P] = core::array::from_fn(|p| match bias.is_null() {
        true => _mm512_setzero_si512(),
        // SAFETY: a non-null bias holds 16 P values (the caller's contract).
        false => unsafe { _mm512_loadu_si512(bias.add(16 * p).cast()) },
    });
    let mut acc = [start; R];
    let mut aq = a;
    for q in 0..quads {
        // SAFETY: q < quads keeps the quads and the A bytes inside the caller's buffers; Quad is
        // 64-byte aligned.
        unsafe {
            let bv: [__m512i; P] = core::array::from_fn(|p| {
                let quad = b.add(p * panel_stride + q);
                _mm512_load_si512(quad.cast())
            });
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(aq.add(r * a_ld).cast::<i32>().read_unaligned());
                for (acc, &bv) in acc_row.iter_mut().zip(&bv) {
                    *acc = _mm512_dpbusd_epi32(*acc, av, bv);
                }
            }
            aq = aq.wrapping_add(a_step);
        }
    }
    if let Some(f) = fuse {
        for p in 0..P {
            // SAFETY: the column pointers hold 16 P values and `rows` R (the caller's contract);
            // the f32 tile is inside y; unaligned access is allowed.
            unsafe {
                let sums = _mm512_loadu_si512(f.col_sums.add(16 * p).cast());
                let w_scale = _mm512_loadu_ps(f.w_scale.add(16 * p));
                let bias = _mm512_loadu_ps(f.bias.add(16 * p));
                for (r, row) in acc.iter().enumerate() {
                    let quant = *f.rows.add(r);
                    let shift = _mm512_mullo_epi32(_mm512_set1_epi32(quant.zero), sums);
                    let centred = _mm512_cvtepi32_ps(_mm512_sub_epi32(row[p], shift));
                    let scale = _mm512_mul_ps(_mm512_set1_ps(quant.scale), w_scale);
                    let v = _mm512_add_ps(_mm512_mul_ps(centred, scale), bias);
                    _mm512_storeu_ps(f.y.add(r * f.ldy + 16 * p), v);
                }
            }
        }
        return;
    }
    for (r, row) in acc.iter().enumerate() {
        for (p, &v) in row.iter().enumerate() {
            // SAFETY: the caller guarantees the tile is inside C; unaligned access is allowed.
            unsafe {
                let out = c.add(r * ldc + 16 * p).cast::<__m512i>();
                let v = if accumulate { _mm512_add_epi32(_mm512_loadu_si512(out), v) } else { v };
                _mm512_storeu_si512(out, v);
            }
        }
    }
}

/// The operands of the streaming kernel: what A is, which fixes which operand of `vpdpbusd` B is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamSign {
    /// A u8 (unsigned operand, broadcast), B i8 as it is.
    UnsignedA,
    /// A i8 (signed operand, broadcast), B flipped to u8; the caller adds `-128 sum_k a` per row.
    SignedA,
}

/// Streaming kernel: row `r` of an `R x 64` tile becomes `(accumulate ? tile : 0) + init[r] +
/// (A B)[r]` over `quads` quads of k, B read row-major where it lies.
///
/// `a` holds each row's quads as i32 (four bytes of k, zero past k), `a_ld` quads apart; the
/// caller passes its per-row correction in `init` on the first block of k, zeros after.
///
/// # Safety
/// AVX-512 F/BW/VNNI must be available; `R <= 6`; `b` must be valid for 64 bytes at
/// `b + (4 q + u) ldb` for every `q < quads`, `u < 4`; `c` an `R x 64` tile, `ldc` apart.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn kernel_stream_vnni<const R: usize>(
    sign: StreamSign,
    quads: usize,
    a: *const i32,
    a_ld: usize,
    init: &[i32; R],
    b: *const i8,
    ldb: usize,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    let flip = _mm512_set1_epi8(i8::MIN);
    let mut acc = [[_mm512_setzero_si512(); 4]; R];
    for q in 0..quads {
        // SAFETY: q < quads keeps the four B rows and the A quads inside the caller's buffers;
        // the prefetch addresses may lie anywhere (a prefetch never faults).
        unsafe {
            let rows: [__m512i; 4] = core::array::from_fn(|u| {
                let row = b.add((4 * q + u) * ldb);
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(8 * ldb).cast());
                _mm512_loadu_si512(row.cast())
            });
            let rows = match sign {
                StreamSign::UnsignedA => rows,
                StreamSign::SignedA => rows.map(|r| _mm512_xor_si512(r, flip)),
            };
            let bq = interleave_rows(rows);
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(a.add(r * a_ld + q).read());
                for (acc, &bv) in acc_row.iter_mut().zip(&bq) {
                    *acc = match sign {
                        StreamSign::UnsignedA => _mm512_dpbusd_epi32(*acc, av, bv),
                        StreamSign::SignedA => _mm512_dpbusd_epi32(*acc, bv, av),
                    };
                }
            }
        }
    }
    for (r, q) in acc.iter().enumerate() {
        let cols = transpose_lanes(*q);
        let base = _mm512_set1_epi32(init[r]);
        for (g, &v) in cols.iter().enumerate() {
            // SAFETY: the caller guarantees the R x 64 tile is inside C; unaligned access is allowed.
            unsafe {
                let out = c.add(r * ldc + 16 * g).cast::<__m512i>();
                let old = if accumulate { _mm512_add_epi32(_mm512_loadu_si512(out), base) } else { base };
                _mm512_storeu_si512(out, _mm512_add_epi32(old, v));
            }
        }
    }
}

/// Banded streaming kernel: one band of `4 QB` rows of B (`QB` quads; `rows` of them present,
/// the rest read as zero) across `width` columns, added into the `R x width` accumulators at
/// `acc` (zeroed first when `first`). The accumulators stay in [`interleave_rows`]' order: strip
/// `s` of 64 columns is `acc[(s R + r) 4 + v]`, row `r`, quad vector `v`; [`band_finish_vnni`]
/// puts them back in column order once, after the last band. Every row of the band is
/// prefetched `ahead` bytes further along (into the next band's rows near the end), into L2.
///
/// `a` holds row `r`'s `QB` quads of this band at `a + r a_ld` (zero past k); with
/// [`StreamSign::SignedA`] the caller adds `-128 sum_k a` per row. A last strip narrower than 64
/// columns is read with masked loads.
///
/// # Safety
/// AVX-512 F/BW/VNNI must be available; `1 <= R <= 6`; `FULL` exactly when `rows` is `4 QB`;
/// `a` valid for `QB` i32 at `a + r a_ld`, `r < R`; `b` valid for `width` bytes at `b + u ldb`
/// for every `u < rows`; `acc` for `4 R ceil(width / 64)` vectors.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn kernel_band_vnni<const R: usize, const QB: usize, const FULL: bool>(
    sign: StreamSign,
    rows: usize,
    a: *const i32,
    a_ld: usize,
    b: *const i8,
    ldb: usize,
    width: usize,
    acc: *mut __m512i,
    first: bool,
    ahead: usize,
) {
    // SAFETY: `a` holds QB quads per row (the caller's contract).
    let av: [[__m512i; QB]; R] = core::array::from_fn(|r| {
        core::array::from_fn(|i| unsafe { _mm512_set1_epi32(a.add(r * a_ld + i).read()) })
    });
    let band = Band { sign, rows, av, b, ldb, width, acc, first, ahead };
    let strips = width / 64;
    for s in 0..strips {
        // SAFETY: strip s < width / 64 lies inside the caller's rows and accumulators.
        unsafe { band.strip::<FULL>(s, None) };
    }
    let tail = width % 64;
    if tail > 0 {
        // SAFETY: the masked loads read only the `tail` present columns of the last strip.
        unsafe { band.strip::<FULL>(strips, Some((1u64 << tail) - 1)) };
    }
}

/// One call of [`kernel_band_vnni`]: its arguments, A broadcast.
struct Band<const R: usize, const QB: usize> {
    sign: StreamSign,
    rows: usize,
    av: [[__m512i; QB]; R],
    b: *const i8,
    ldb: usize,
    width: usize,
    acc: *mut __m512i,
    first: bool,
    ahead: usize,
}

impl<const R: usize, const QB: usize> Band<R, QB> {
    /// Strip `s` (columns `64 s ..`), the bytes selected by `mask` when given, all 64 otherwise.
    ///
    /// # Safety
    /// [`kernel_band_vnni`]'s contract; strip `s` is inside `width` (its first `mask` bytes with
    /// a mask).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
    #[inline]
    unsafe fn strip<const FULL: bool>(&self, s: usize, mask: Option<u64>) {
        let j = 64 * s;
        let at = self.acc.wrapping_add(4 * R * s);
        let flip = _mm512_set1_epi8(i8::MIN);
        // SAFETY: the strip's accumulators, rows and columns are inside the caller's buffers; a
        // masked load reads only its selected bytes; a prefetch never faults.
        unsafe {
            let mut acc: [[__m512i; 4]; R] = match self.first {
                true => [[_mm512_setzero_si512(); 4]; R],
                false => core::array::from_fn(|r| core::array::from_fn(|v| *at.add(4 * r + v))),
            };
            for i in 0..QB {
                let rows: [__m512i; 4] = core::array::from_fn(|u| {
                    let row = 4 * i + u;
                    if !FULL && row >= self.rows {
                        return _mm512_setzero_si512();
                    }
                    let p = self.b.add(row * self.ldb + j);
                    match mask {
                        None => _mm512_loadu_si512(p.cast()),
                        Some(mask) => _mm512_maskz_loadu_epi8(mask, p),
                    }
                });
                let rows = match self.sign {
                    StreamSign::UnsignedA => rows,
                    StreamSign::SignedA => rows.map(|r| _mm512_xor_si512(r, flip)),
                };
                let bq = interleave_rows(rows);
                for (acc_row, av) in acc.iter_mut().zip(&self.av) {
                    for (acc, &bv) in acc_row.iter_mut().zip(&bq) {
                        *acc = match self.sign {
                            StreamSign::UnsignedA => _mm512_dpbusd_epi32(*acc, av[i], bv),
                            StreamSign::SignedA => _mm512_dpbusd_epi32(*acc, bv, av[i]),
                        };
                    }
                }
            }
            // The same columns `ahead` bytes on, in this band's rows or wrapped to the next's.
            let (base, col) = match j + self.ahead < self.width {
                true => (self.b, j + self.ahead),
                false => (self.b.wrapping_add(4 * QB * self.ldb), j + self.ahead - self.width),
            };
            for u in 0..4 * QB {
                _mm_prefetch::<_MM_HINT_T2>(base.wrapping_add(u * self.ldb + col).cast());
            }
            for (r, acc_row) in acc.iter().enumerate() {
                for (v, &x) in acc_row.iter().enumerate() {
                    *at.add(4 * r + v) = x;
                }
            }
        }
    }
}

/// After the last band: row `r` of the `R x width` tile at `c` becomes `(accumulate ? c : 0) +
/// init[r] + acc` with [`kernel_band_vnni`]'s accumulators put back in column order.
///
/// # Safety
/// AVX-512 F/BW must be available; `acc` valid for `4 R ceil(width / 64)` vectors; `c` for an
/// `R x width` tile, `ldc` apart (masked stores write only its columns).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn band_finish_vnni<const R: usize>(
    acc: *const __m512i,
    width: usize,
    init: &[i32; R],
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    for s in 0..width.div_ceil(64) {
        for (r, &init) in init.iter().enumerate() {
            // SAFETY: strip s's accumulators are inside `acc`; each group's masked load and store
            // touch only columns below `width` of row r of the tile.
            unsafe {
                let at = acc.add(4 * (R * s + r));
                let cols = transpose_lanes(core::array::from_fn(|v| *at.add(v)));
                let base = _mm512_set1_epi32(init);
                for (g, &v) in cols.iter().enumerate() {
                    let col = 64 * s + 16 * g;
                    if col >= width {
                        break;
                    }
                    let mask: __mmask16 = if width - col >= 16 { !0 } else { (1 << (width - col)) - 1 };
                    let out = c.add(r * ldc + col);
                    let old = match accumulate {
                        true => _mm512_add_epi32(_mm512_maskz_loadu_epi32(mask, out), base),
                        false => base,
                    };
                    _mm512_mask_storeu_epi32(out, mask, _mm512_add_epi32(old, v));
                }
            }
        }
    }
}

/// Four rows of 64 B bytes interleaved into four quad vectors: 128-bit lane `l` of vector `v`
/// holds columns `16 l + 4 v .. + 4`, each as its four bytes of k (the [`Quad`] order).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn interleave_rows(rows: [__m512i; 4]) -> [__m512i; 4] {
    let t0 = _mm512_unpacklo_epi8(rows[0], rows[1]);
    let t1 = _mm512_unpackhi_epi8(rows[0], rows[1]);
    let t2 = _mm512_unpacklo_epi8(rows[2], rows[3]);
    let t3 = _mm512_unpackhi_epi8(rows[2], rows[3]);
    [
        _mm512_unpacklo_epi16(t0, t2),
        _mm512_unpackhi_epi16(t0, t2),
        _mm512_unpacklo_epi16(t1, t3),
        _mm512_unpackhi_epi16(t1, t3),
    ]
}

/// The 4 x 4 transpose of 128-bit lanes: lane `l` of output `v` is lane `v` of input `l`, so
/// [`interleave_rows`]'s vectors become whole 16-column groups (output `g` = columns `16 g ..`).
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose_lanes(v: [__m512i; 4]) -> [__m512i; 4] {
    let u0 = _mm512_shuffle_i32x4::<0b01_00_01_00>(v[0], v[1]);
    let u1 = _mm512_shuffle_i32x4::<0b01_00_01_00>(v[2], v[3]);
    let u2 = _mm512_shuffle_i32x4::<0b11_10_11_10>(v[0], v[1]);
    let u3 = _mm512_shuffle_i32x4::<0b11_10_11_10>(v[2], v[3]);
    [
        _mm512_shuffle_i32x4::<0b10_00_10_00>(u0, u1),
        _mm512_shuffle_i32x4::<0b11_01_11_01>(u0, u1),
        _mm512_shuffle_i32x4::<0b10_00_10_00>(u2, u3),
        _mm512_shuffle_i32x4::<0b11_01_11_01>(u2, u3),
    ]
}

/// How far along each row of B the packer prefetches: the strips to its right, which the next
/// calls read (rows are a page apart, too many streams for the hardware prefetcher; k = n =
/// 4096, m = 128, one thread: plain 11.1 -> 10.3 ms at 256 bytes, 10.7 at 512, 10.8 at 1024).
const PACK_PREFETCH_BYTES: usize = 256;

/// Packs 64 columns of row-major B (`b` at the strip's first column) over `quads` whole quads
/// (`4 quads` rows) into four consecutive panels, `panel_stride` quads apart from `out`; adds
/// each column's sum to `sums` and returns the smallest and largest byte read.
///
/// # Safety
/// AVX-512 F/BW/VNNI must be available; `b` must be valid for 64 bytes at `b + r ldb` for every
/// `r < 4 quads`; `out + g panel_stride + q` valid for every `g < 4`, `q < quads`; `sums` for 64.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
pub(crate) unsafe fn pack_strip(
    b: *const i8,
    ldb: usize,
    quads: usize,
    out: *mut Quad,
    panel_stride: usize,
    sums: &mut [i32; 64],
) -> (i8, i8) {
    let ones = _mm512_set1_epi8(1);
    let (mut low, mut high) = (_mm512_set1_epi8(i8::MAX), _mm512_set1_epi8(i8::MIN));
    let mut acc = [_mm512_setzero_si512(); 4];
    for q in 0..quads {
        // SAFETY: q < quads keeps the four rows and the four output quads inside the caller's
        // buffers; the stores are unaligned, a prefetch never faults.
        unsafe {
            let rows: [__m512i; 4] = core::array::from_fn(|u| {
                let row = b.add((4 * q + u) * ldb);
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(PACK_PREFETCH_BYTES).cast());
                _mm512_loadu_si512(row.cast())
            });
            for r in rows {
                low = _mm512_min_epi8(low, r);
                high = _mm512_max_epi8(high, r);
            }
            for (g, quad) in transpose_lanes(interleave_rows(rows)).into_iter().enumerate() {
                acc[g] = _mm512_dpbusd_epi32(acc[g], ones, quad);
                _mm512_storeu_si512(out.add(g * panel_stride + q).cast(), quad);
            }
        }
    }
    for (sum, part) in sums.chunks_exact_mut(16).zip(acc) {
        // SAFETY: the chunk holds 16 i32.
        unsafe {
            let at = sum.as_mut_ptr().cast::<__m512i>();
            _mm512_storeu_si512(at, _mm512_add_epi32(_mm512_loadu_si512(at), part));
        }
    }
    let (mut lows, mut highs) = ([0i8; 64], [0i8; 64]);
    // SAFETY: each array holds 64 bytes.
    unsafe {
        _mm512_storeu_si512(lows.as_mut_ptr().cast(), low);
        _mm512_storeu_si512(highs.as_mut_ptr().cast(), high);
    }
    (lows.into_iter().min().unwrap_or(0), highs.into_iter().max().unwrap_or(0))
}
