//! Few rows of A times row-major B, B read where it lies: no packing pass, no packed copy.
//!
//! For the decode step (m = 1) and small batches, packing all of B costs more than the product:
//! one pass reading B and one writing the copy, then the kernel reads the copy again. Here each
//! B byte is read once per group of up to `STREAM_ROWS` rows of A, straight from the caller's
//! matrix, and widened in registers (`x86::kernel_stream`). The loops run k in blocks of
//! `STREAM_PAIRS` pairs outermost and columns inside, so B is read row after row (a few dozen
//! sequential streams, prefetched) and C, a few rows of i32, stays in cache between blocks.
//! Signed A is multiplied as is (i16 products), so the i8 path needs no shift and no column sums.
//!
//! On AVX-512, up to `STREAM_BAND_MAX_ROWS` rows of A (the decode step), B is swept band by band
//! instead: 8 or 16 rows across a whole panel of columns, in memory order, each row group's
//! accumulators kept in L2 in the kernel's interleaved order and put back in column order once
//! at the end (`x86_512::kernel_band_vnni`); the rows ahead are prefetched into L2.

#[cfg(target_arch = "x86_64")]
use super::blocking::{STREAM_PAIRS, STREAM_ROWS};
use super::kernel::{Kernel, Tier};
#[cfg(target_arch = "x86_64")]
use super::CPtr;
use super::{AElement, Update};
#[cfg(target_arch = "x86_64")]
use crate::error::try_vec;
use crate::Result;
#[cfg(target_arch = "x86_64")]
use std::ops::Range;

/// `C (+)= A B` for A `m x k` and row-major B `k x n`, arguments checked and nonzero.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_stream<T: AElement>(
    kernel: Kernel,
    update: Update,
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    lda: usize,
    b: &[i8],
    ldb: usize,
    c: &mut [i32],
    ldc: usize,
) -> Result<()> {
    let accumulate = update == Update::Accumulate;
    match kernel.tier {
        Tier::Scalar => {
            stream_scalar(m, n, k, a, lda, b, ldb, c, ldc, accumulate);
            Ok(())
        }
        #[cfg(target_arch = "x86_64")]
        Tier::Avx2(avx2) => {
            let pairs = k.div_ceil(2);
            let mut a_pairs = try_vec(m * pairs, 0i32)?;
            for i in 0..m {
                let row = &a[i * lda..i * lda + k];
                for (p, out) in a_pairs[i * pairs..(i + 1) * pairs].iter_mut().enumerate() {
                    let lo = row[2 * p].widen();
                    let hi = row.get(2 * p + 1).map_or(0, |v| v.widen());
                    *out = i32::from(lo as u16) | (i32::from(hi as u16) << 16);
                }
            }
            let cp = CPtr(c.as_mut_ptr());
            let job = Stream { m, k, a_pairs: &a_pairs, b, ldb, c: cp, ldc, accumulate };
            // SAFETY (for each `run` below): the token proves AVX2; the caller checked B (k x n,
            // ldb) and C (m x n, ldc) against their slices; column ranges are disjoint.
            let whole = || unsafe { job.run(avx2, 0..n) };
            #[cfg(feature = "parallel")]
            {
                use rayon::prelude::*;
                let macs = m.saturating_mul(n).saturating_mul(k);
                let threads =
                    if macs >= super::blocking::PARALLEL_MIN_MACS { rayon::current_num_threads() } else { 1 };
                let units = n.div_ceil(64);
                let parts = threads.min(units);
                if parts > 1 {
                    (0..parts)
                        .into_par_iter()
                        .map(|t| (units * t / parts * 64).min(n)..(units * (t + 1) / parts * 64).min(n))
                        // SAFETY: as above; each part writes its own columns of C.
                        .for_each(|cols| unsafe { job.run(avx2, cols) });
                } else {
                    whole();
                }
            }
            #[cfg(not(feature = "parallel"))]
            whole();
            Ok(())
        }
        #[cfg(target_arch = "x86_64")]
        Tier::Avx512(avx512) => vnni::gemm_stream(avx512, accumulate, m, n, k, a, lda, b, ldb, c, ldc),
        #[cfg(target_arch = "aarch64")]
        Tier::Neon(_) => unreachable_stream(),
    }
}

/// NEON does not stream: `Kernel::stream_max_rows` is 0 there, so the driver never calls this.
#[cfg(target_arch = "aarch64")]
fn unreachable_stream() -> Result<()> {
    Err(crate::Error::invalid("kernel", "neon", "has no streaming small-m kernel"))
}

/// The portable streaming loop (the Scalar tier's): row by row, k by k, a row of B at a time.
#[allow(clippy::too_many_arguments)]
fn stream_scalar<T: AElement>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    lda: usize,
    b: &[i8],
    ldb: usize,
    c: &mut [i32],
    ldc: usize,
    accumulate: bool,
) {
    for i in 0..m {
        let out = &mut c[i * ldc..i * ldc + n];
        if !accumulate {
            out.fill(0);
        }
        for (kk, &av) in a[i * lda..i * lda + k].iter().enumerate() {
            let av = i32::from(av.widen());
            for (o, &bv) in out.iter_mut().zip(&b[kk * ldb..kk * ldb + n]) {
                *o = o.wrapping_add(av * i32::from(bv));
            }
        }
    }
}

/// One streaming product on AVX2, shared by the threads.
#[cfg(target_arch = "x86_64")]
struct Stream<'a> {
    m: usize,
    k: usize,
    /// Row `i`'s pair `p` is `(a[i][2p], a[i][2p + 1])` as two i16 (0 past k), `pairs` per row.
    a_pairs: &'a [i32],
    b: &'a [i8],
    ldb: usize,
    c: CPtr,
    ldc: usize,
    accumulate: bool,
}

#[cfg(target_arch = "x86_64")]
impl Stream<'_> {
    /// Computes columns `cols` of C.
    ///
    /// # Safety
    /// `b` and `c` hold the `k x n` and `m x n` matrices their leading dimensions describe; no
    /// one else touches columns `cols` of C during the call.
    unsafe fn run(&self, avx2: super::x86::Avx2, cols: Range<usize>) {
        let _ = avx2;
        let (m, k, ldb, ldc) = (self.m, self.k, self.ldb, self.ldc);
        let pairs = k.div_ceil(2);
        let whole_pairs = k / 2;
        let full_end = cols.start + (cols.len() / 16) * 16;
        let groups = m.div_ceil(STREAM_ROWS);
        let group = |g: usize| (m * g / groups)..(m * (g + 1) / groups);
        let mut tail_b = [0i8; 2 * STREAM_PAIRS * 16];
        let mut tail_c = [0i32; STREAM_ROWS * 16];
        for p0 in (0..pairs).step_by(STREAM_PAIRS) {
            let pn = STREAM_PAIRS.min(pairs - p0);
            // Pairs of this block with both rows of B present; an odd k leaves one half pair.
            let both = pn.min(whole_pairs.saturating_sub(p0));
            let add = self.accumulate || p0 > 0;
            for j0 in (cols.start..full_end).step_by(16) {
                for g in 0..groups {
                    let rows = group(g);
                    let a_at = self.a_pairs[rows.start * pairs + p0..].as_ptr();
                    // SAFETY: rows 2 p0 .. 2 (p0 + both) of B exist and hold columns j0..j0 + 16
                    // (j0 + 16 <= n); the tile (rows, j0..j0 + 16) lies in C; AVX2 is present.
                    unsafe {
                        let b_at = self.b.as_ptr().add(2 * p0 * ldb + j0);
                        let c_at = self.c.0.add(rows.start * ldc + j0);
                        stream_tile(rows.len(), both, a_at, pairs, b_at, ldb, c_at, ldc, add, g == 0);
                        if both < pn {
                            // The last row of B pairs with itself, times a zero A half.
                            let last = self.b.as_ptr().add((k - 1) * ldb + j0);
                            stream_tile(
                                rows.len(),
                                1,
                                a_at.add(both),
                                pairs,
                                last,
                                0,
                                c_at,
                                ldc,
                                true,
                                false,
                            );
                        }
                    }
                }
            }
            if full_end < cols.end {
                // The last < 16 columns: the block's rows of B copied, zero-padded, to 16 wide.
                let width = cols.end - full_end;
                tail_b.fill(0);
                for r in 2 * p0..k.min(2 * (p0 + pn)) {
                    let src = &self.b[r * ldb + full_end..r * ldb + cols.end];
                    tail_b[(r - 2 * p0) * 16..(r - 2 * p0) * 16 + width].copy_from_slice(src);
                }
                for g in 0..groups {
                    let rows = group(g);
                    let a_at = self.a_pairs[rows.start * pairs + p0..].as_ptr();
                    // SAFETY: `tail_b` holds 2 pn rows of 16 and `tail_c` rows.len() rows of 16;
                    // AVX2 is present.
                    unsafe {
                        stream_tile(
                            rows.len(),
                            pn,
                            a_at,
                            pairs,
                            tail_b.as_ptr(),
                            16,
                            tail_c.as_mut_ptr(),
                            16,
                            false,
                            false,
                        )
                    };
                    for r in 0..rows.len() {
                        for j in 0..width {
                            // SAFETY: (rows.start + r, full_end + j) is inside C and these columns.
                            unsafe {
                                let out = self.c.0.add((rows.start + r) * ldc + full_end + j);
                                let v = tail_c[r * 16 + j];
                                *out = if add { (*out).wrapping_add(v) } else { v };
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Calls `x86::kernel_stream::<R>` with `R = rows` (1 to [`STREAM_ROWS`]).
///
/// # Safety
/// As `x86::kernel_stream`, for `rows` rows.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn stream_tile(
    rows: usize,
    pairs: usize,
    a: *const i32,
    a_ld: usize,
    b: *const i8,
    ldb: usize,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
    prefetch: bool,
) {
    use super::x86::kernel_stream;
    const _: () = assert!(STREAM_ROWS == 6, "stream_tile dispatches 1 to 6 rows");
    // SAFETY: the caller's contract, for `rows` rows.
    unsafe {
        match rows {
            1 => kernel_stream::<1>(pairs, a, a_ld, b, ldb, c, ldc, accumulate, prefetch),
            2 => kernel_stream::<2>(pairs, a, a_ld, b, ldb, c, ldc, accumulate, prefetch),
            3 => kernel_stream::<3>(pairs, a, a_ld, b, ldb, c, ldc, accumulate, prefetch),
            4 => kernel_stream::<4>(pairs, a, a_ld, b, ldb, c, ldc, accumulate, prefetch),
            5 => kernel_stream::<5>(pairs, a, a_ld, b, ldb, c, ldc, accumulate, prefetch),
            _ => kernel_stream::<6>(pairs, a, a_ld, b, ldb, c, ldc, accumulate, prefetch),
        }
    }
}

/// The AVX-512 streaming driver: k in quads (`vpdpbusd`), 64 columns per kernel call.
#[cfg(target_arch = "x86_64")]
mod vnni {
    /// `$call!(R)` with the literal `R` equal to `$rows` (1 to [`STREAM_ROWS_VNNI`], which is 6).
    macro_rules! with_rows {
        ($rows:expr, $call:ident) => {
            match $rows {
                1 => $call!(1),
                2 => $call!(2),
                3 => $call!(3),
                4 => $call!(4),
                5 => $call!(5),
                _ => $call!(6),
            }
        };
    }

    #[cfg(feature = "parallel")]
    use super::super::blocking::PARALLEL_MIN_MACS;
    use super::super::blocking::{
        STREAM_BAND_MAX_ROWS, STREAM_BAND_PREFETCH_BYTES, STREAM_BAND_SCRATCH_BYTES, STREAM_QUADS_VNNI,
        STREAM_ROWS_VNNI,
    };
    use super::super::x86_512::{band_finish_vnni, kernel_band_vnni, kernel_stream_vnni, Avx512, StreamSign};
    use super::super::{AElement, CPtr};
    use crate::error::try_vec;
    use crate::Result;
    use std::arch::x86_64::{__m512i, _mm512_setzero_si512};
    use std::ops::Range;

    /// Columns per kernel call.
    const STRIP: usize = 64;

    /// `C (+)= A B`, arguments checked and nonzero.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_stream<T: AElement>(
        avx512: Avx512,
        accumulate: bool,
        m: usize,
        n: usize,
        k: usize,
        a: &[T],
        lda: usize,
        b: &[i8],
        ldb: usize,
        c: &mut [i32],
        ldc: usize,
    ) -> Result<()> {
        let sign = if T::SHIFT == 0 { StreamSign::UnsignedA } else { StreamSign::SignedA };
        let quads = k.div_ceil(4);
        // Whole bands of the tallest kind per row (the banded kernel reads all quads of the last).
        let a_ld = k.div_ceil(4 * BAND_QUADS_MAX) * BAND_QUADS_MAX;
        let mut a_quads = try_vec(m * a_ld, 0i32)?;
        let mut init = try_vec(m, 0i32)?;
        for i in 0..m {
            let row = &a[i * lda..i * lda + k];
            let mut sum = 0i32;
            for (q, out) in a_quads[i * a_ld..i * a_ld + quads].iter_mut().enumerate() {
                let mut bytes = [0u8; 4];
                for (byte, v) in bytes.iter_mut().zip(&row[4 * q..k.min(4 * q + 4)]) {
                    // The raw byte: u8 as it is, i8 two's complement (the kernel's signed operand).
                    *byte = v.widen() as u8;
                    sum = sum.wrapping_add(i32::from(v.widen()));
                }
                *out = i32::from_le_bytes(bytes);
            }
            // B flipped to u8 adds 128 sum_k a to each column of the row.
            init[i] = if sign == StreamSign::SignedA { sum.wrapping_mul(-128) } else { 0 };
        }
        let job = Job {
            sign,
            m,
            k,
            a_quads: &a_quads,
            a_ld,
            init: &init,
            b,
            ldb,
            c: CPtr(c.as_mut_ptr()),
            ldc,
            accumulate,
        };
        // SAFETY (for each `run` below): the token proves AVX-512 VNNI; the caller checked B
        // (k x n, ldb) and C (m x n, ldc) against their slices; column ranges are disjoint.
        let whole = || unsafe { job.run(avx512, 0..n) };
        #[cfg(feature = "parallel")]
        {
            use rayon::prelude::*;
            let macs = m.saturating_mul(n).saturating_mul(k);
            let threads = if macs >= PARALLEL_MIN_MACS { rayon::current_num_threads() } else { 1 };
            let units = n.div_ceil(STRIP);
            let parts = threads.min(units);
            if parts > 1 {
                return (0..parts)
                    .into_par_iter()
                    .map(|t| (units * t / parts * STRIP).min(n)..(units * (t + 1) / parts * STRIP).min(n))
                    // SAFETY: as above; each part writes its own columns of C.
                    .try_for_each(|cols| unsafe { job.run(avx512, cols) });
            }
        }
        whole()
    }

    /// One streaming product, shared by the threads.
    struct Job<'a> {
        sign: StreamSign,
        m: usize,
        k: usize,
        /// Row `i`'s quad `q` is bytes `a[i][4q..4q + 4]` (0 past k), at `i a_ld + q`.
        a_quads: &'a [i32],
        /// Quads per row of `a_quads`: `ceil(k / 4)` rounded up to whole bands of `BAND_QUADS_MAX`.
        a_ld: usize,
        /// Per row, what the first block of k adds (the signed-A correction).
        init: &'a [i32],
        b: &'a [i8],
        ldb: usize,
        c: CPtr,
        ldc: usize,
        accumulate: bool,
    }

    // SAFETY: the job only reads its slices; `c` is written in disjoint column ranges per thread.
    unsafe impl Sync for Job<'_> {}

    impl Job<'_> {
        /// Computes columns `cols` of C.
        ///
        /// # Safety
        /// `b` and `c` hold the `k x n` and `m x n` matrices their leading dimensions describe;
        /// no one else touches columns `cols` of C during the call.
        unsafe fn run(&self, avx512: Avx512, cols: Range<usize>) -> Result<()> {
            let (m, k, ldb, ldc) = (self.m, self.k, self.ldb, self.ldc);
            if m <= STREAM_BAND_MAX_ROWS {
                // Row groups of at most STREAM_ROWS_VNNI, each sweeping B once.
                let groups = m.div_ceil(STREAM_ROWS_VNNI);
                for g in 0..groups {
                    // SAFETY: the caller's contract; the group has 1 to STREAM_ROWS_VNNI rows.
                    unsafe {
                        self.run_bands(avx512, (m * g / groups)..(m * (g + 1) / groups), cols.clone())?
                    };
                }
                return Ok(());
            }
            let (quads, a_ld) = (k.div_ceil(4), self.a_ld);
            let whole_quads = k / 4;
            let full_end = cols.start + (cols.len() / STRIP) * STRIP;
            let groups = m.div_ceil(STREAM_ROWS_VNNI);
            let group = |g: usize| (m * g / groups)..(m * (g + 1) / groups);
            // The rows of a last partial quad, zero-padded to four, for these columns.
            let width = cols.len().div_ceil(STRIP) * STRIP;
            let mut last_quad = Vec::new();
            if whole_quads < quads {
                last_quad = try_vec(4 * width, 0i8)?;
                for r in 4 * whole_quads..k {
                    let dst = &mut last_quad[(r - 4 * whole_quads) * width..][..cols.len()];
                    dst.copy_from_slice(&self.b[r * ldb + cols.start..r * ldb + cols.end]);
                }
            }
            let mut tail_b = [0i8; 4 * STREAM_QUADS_VNNI * STRIP];
            let mut tail_c = [0i32; STREAM_ROWS_VNNI * STRIP];
            let zeros = [0i32; STREAM_ROWS_VNNI];
            let block = STREAM_QUADS_VNNI;
            for q0 in (0..quads).step_by(block) {
                let qn = block.min(quads - q0);
                let both = qn.min(whole_quads.saturating_sub(q0));
                let add = self.accumulate || q0 > 0;
                let init_of = |rows: &Range<usize>| {
                    if q0 == 0 {
                        &self.init[rows.clone()]
                    } else {
                        &zeros[..rows.len()]
                    }
                };
                for j0 in (cols.start..full_end).step_by(STRIP) {
                    for g in 0..groups {
                        let rows = group(g);
                        let a_at = self.a_quads[rows.start * a_ld + q0..].as_ptr();
                        // SAFETY: rows 4 q0 .. 4 (q0 + both) of B exist and hold columns j0..j0 + 64;
                        // the last quad's rows are in `last_quad`, `width` apart, column j0 - cols.start
                        // of it; the tile (rows, j0..j0 + 64) lies in C; AVX-512 VNNI is present.
                        unsafe {
                            let c_at = self.c.0.add(rows.start * ldc + j0);
                            let b_at = self.b.as_ptr().add(4 * q0 * ldb + j0);
                            let first = init_of(&rows);
                            if both > 0 {
                                tile(
                                    self.sign,
                                    rows.len(),
                                    both,
                                    a_at,
                                    a_ld,
                                    first,
                                    b_at,
                                    ldb,
                                    c_at,
                                    ldc,
                                    add,
                                );
                            }
                            if both < qn {
                                let last = last_quad.as_ptr().add(j0 - cols.start);
                                let (init, add) =
                                    if both == 0 { (first, add) } else { (&zeros[..rows.len()], true) };
                                tile(
                                    self.sign,
                                    rows.len(),
                                    1,
                                    a_at.add(both),
                                    a_ld,
                                    init,
                                    last,
                                    width,
                                    c_at,
                                    ldc,
                                    add,
                                );
                            }
                        }
                    }
                }
                if full_end < cols.end {
                    // The last < 64 columns: the block's rows of B copied, zero-padded, to 64 wide.
                    let tail = cols.end - full_end;
                    tail_b.fill(0);
                    for r in 4 * q0..k.min(4 * (q0 + qn)) {
                        let src = &self.b[r * ldb + full_end..r * ldb + cols.end];
                        tail_b[(r - 4 * q0) * STRIP..][..tail].copy_from_slice(src);
                    }
                    for g in 0..groups {
                        let rows = group(g);
                        let a_at = self.a_quads[rows.start * a_ld + q0..].as_ptr();
                        // SAFETY: `tail_b` holds 4 qn rows of 64 and `tail_c` rows.len() rows of 64;
                        // AVX-512 VNNI is present.
                        unsafe {
                            let (b_at, c_at) = (tail_b.as_ptr(), tail_c.as_mut_ptr());
                            tile(
                                self.sign,
                                rows.len(),
                                qn,
                                a_at,
                                a_ld,
                                init_of(&rows),
                                b_at,
                                STRIP,
                                c_at,
                                STRIP,
                                false,
                            )
                        };
                        for r in 0..rows.len() {
                            for j in 0..tail {
                                // SAFETY: (rows.start + r, full_end + j) is inside C and these columns.
                                unsafe {
                                    let out = self.c.0.add((rows.start + r) * ldc + full_end + j);
                                    let v = tail_c[r * STRIP + j];
                                    *out = if add { (*out).wrapping_add(v) } else { v };
                                }
                            }
                        }
                    }
                }
            }
            Ok(())
        }

        /// [`Job::run`] for rows `rows_a` of A and C (at most [`STREAM_ROWS_VNNI`]): B swept band by band (8 or 16
        /// rows across all columns, in memory order, see [`band_quads`]), panels of columns at a
        /// time whose accumulators fit in [`STREAM_BAND_SCRATCH_BYTES`].
        ///
        /// # Safety
        /// As [`Job::run`]; `rows_a` is inside `0..self.m`, 1 to `STREAM_ROWS_VNNI` rows.
        unsafe fn run_bands(&self, avx512: Avx512, rows_a: Range<usize>, cols: Range<usize>) -> Result<()> {
            let _ = avx512;
            let (m, k, ldb) = (rows_a.len(), self.k, self.ldb);
            let panel = (STREAM_BAND_SCRATCH_BYTES / (m * 4 * STRIP) * STRIP).max(STRIP);
            // SAFETY: an all-zero vector is a valid __m512i.
            let zero = unsafe { _mm512_setzero_si512() };
            let mut acc: Vec<__m512i> = try_vec(4 * m * panel.min(cols.len()).div_ceil(STRIP), zero)?;
            let quads = band_quads(ldb);
            let band_rows = 4 * quads;
            let bands = k.div_ceil(band_rows);
            for p0 in cols.clone().step_by(panel) {
                let width = panel.min(cols.end - p0);
                for band in 0..bands {
                    let rows = band_rows.min(k - band * band_rows);
                    // SAFETY: rows band * band_rows .. + rows of B exist and hold columns p0 ..
                    // p0 + width (inside cols, inside n); `a_quads` holds `quads` quads of this band
                    // per row (a_ld is whole bands of BAND_QUADS_MAX, a multiple of `quads`); `acc`
                    // holds 4 m ceil(width / 64) vectors; AVX-512 VNNI is present.
                    unsafe {
                        let a_at = self.a_quads.as_ptr().add(rows_a.start * self.a_ld + quads * band);
                        let b_at = self.b.as_ptr().add(band * band_rows * ldb + p0);
                        let at = acc.as_mut_ptr();
                        band_call(self.sign, m, quads, rows, a_at, self.a_ld, b_at, ldb, width, at, band == 0)
                    };
                }
                // SAFETY: `acc` holds the panel's accumulators; the tile (rows_a, p0..p0 + width)
                // lies in C and in these columns; `init` holds a value per row.
                unsafe {
                    let c_at = self.c.0.add(rows_a.start * self.ldc + p0);
                    let init = &self.init[rows_a.clone()];
                    band_finish(m, acc.as_ptr(), width, init, c_at, self.ldc, self.accumulate)
                };
            }
            Ok(())
        }
    }

    /// The tallest band: 4 quads (16 rows of B).
    const BAND_QUADS_MAX: usize = 4;

    /// Quads per band for rows of B `ldb` bytes apart: 4 (16 rows) when those rows fall in
    /// different L1 sets (at most two per 64-byte set index of a 4 KiB page), else 2. Rows a
    /// multiple of 4 KiB apart share one set of the 8-way L1: 16 of them evict each other (k = 4096,
    /// m = 1, one thread, B in L3, standalone sweep at load ~4: n = ldb = 4096 8 rows 0.48-0.58
    /// ms, 16 rows 0.79-0.89; ldb = 4160: 0.54 / 0.48-0.52, 32 rows 0.42, a read 0.42).
    fn band_quads(ldb: usize) -> usize {
        let mut sets = [0u8; 64];
        for u in 0..4 * BAND_QUADS_MAX {
            sets[u * ldb / 64 % 64] += 1;
        }
        if sets.iter().all(|&s| s <= 2) {
            BAND_QUADS_MAX
        } else {
            2
        }
    }

    /// Calls `kernel_band_vnni::<R, QB, FULL>` with `R = rows_a` (1 to [`STREAM_ROWS_VNNI`]),
    /// `QB = quads` (2 or [`BAND_QUADS_MAX`]) and `FULL` when the band has all `4 quads` rows.
    ///
    /// # Safety
    /// As `kernel_band_vnni`, for `rows_a` rows of A, `quads` quads and `rows` rows of B.
    #[allow(clippy::too_many_arguments)]
    unsafe fn band_call(
        sign: StreamSign,
        rows_a: usize,
        quads: usize,
        rows: usize,
        a: *const i32,
        a_ld: usize,
        b: *const i8,
        ldb: usize,
        width: usize,
        acc: *mut __m512i,
        first: bool,
    ) {
        const _: () = assert!(STREAM_ROWS_VNNI == 6, "band_call dispatches 1 to 6 rows");
        const _: () = assert!(BAND_QUADS_MAX == 4, "band_call dispatches 2 or 4 quads");
        let ahead = STREAM_BAND_PREFETCH_BYTES;
        macro_rules! call {
            ($r:literal) => {
                match (quads == BAND_QUADS_MAX, rows == 4 * quads) {
                    (true, true) => {
                        kernel_band_vnni::<$r, 4, true>(sign, rows, a, a_ld, b, ldb, width, acc, first, ahead)
                    }
                    (true, false) => kernel_band_vnni::<$r, 4, false>(
                        sign, rows, a, a_ld, b, ldb, width, acc, first, ahead,
                    ),
                    (false, true) => {
                        kernel_band_vnni::<$r, 2, true>(sign, rows, a, a_ld, b, ldb, width, acc, first, ahead)
                    }
                    (false, false) => kernel_band_vnni::<$r, 2, false>(
                        sign, rows, a, a_ld, b, ldb, width, acc, first, ahead,
                    ),
                }
            };
        }
        // SAFETY: the caller's contract, for `rows_a` rows.
        unsafe { with_rows!(rows_a, call) }
    }

    /// Calls `band_finish_vnni::<R>` with `R = rows` (1 to [`STREAM_ROWS_VNNI`]).
    ///
    /// # Safety
    /// As `band_finish_vnni`, for `rows` rows; `init` holds `rows` values.
    unsafe fn band_finish(
        rows: usize,
        acc: *const __m512i,
        width: usize,
        init: &[i32],
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    ) {
        macro_rules! call {
            ($r:literal) => {{
                let init: &[i32; $r] = init[..$r].try_into().expect("rows values");
                band_finish_vnni::<$r>(acc, width, init, c, ldc, accumulate)
            }};
        }
        // SAFETY: the caller's contract, for `rows` rows.
        unsafe { with_rows!(rows, call) }
    }

    /// Calls `kernel_stream_vnni::<R>` with `R = rows` (1 to [`STREAM_ROWS_VNNI`]).
    ///
    /// # Safety
    /// As `kernel_stream_vnni`, for `rows` rows; `init` holds `rows` values.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        sign: StreamSign,
        rows: usize,
        quads: usize,
        a: *const i32,
        a_ld: usize,
        init: &[i32],
        b: *const i8,
        ldb: usize,
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    ) {
        const _: () = assert!(STREAM_ROWS_VNNI == 6, "tile dispatches 1 to 6 rows");
        macro_rules! call {
            ($r:literal) => {{
                let init: &[i32; $r] = init[..$r].try_into().expect("rows values");
                kernel_stream_vnni::<$r>(sign, quads, a, a_ld, init, b, ldb, c, ldc, accumulate)
            }};
        }
        // SAFETY: the caller's contract, for `rows` rows.
        unsafe { with_rows!(rows, call) }
    }
}
