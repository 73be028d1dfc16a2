//! aarch64 tiers of the W4A8 GEMV (one output row on the plain layout) and GEMM (tiles on the
//! blocked layout of [`PackedInt4`]), each body written once and instantiated for NEON (`smull`
//! and `smlal` into i16, `sadalp` into i32) and dotprod (`sdot`, which the i8mm tier runs too).
//!
//! The nibbles are read as `q + 8` (0 to 15) and `(8 + zero) * sum(a)` is subtracted per group, so
//! each group's dot product is the exact integer of the scalar reference; the f32 work per output
//! is the reference's, group after group: `y += (scale * activation scale) * dot`, a multiply and
//! an add (never fused). So every tier gives the scalar reference's bits.
//!
//! The NEON i16 lanes cannot overflow: each product is at most 15 * 127 = 1905 in magnitude and a
//! lane sums at most four of them before `sadalp` widens it. `sdot` goes through `asm!` as in the
//! ggml kernels (its intrinsic is unstable in Rust 1.95).

use super::gemm::{for_each_tile, Operands, PackedInt4, RowActivations, BLOCK, STEP};
use super::Activations;
use core::ops::Range;
use std::arch::aarch64::*;
use std::arch::asm;

/// GEMM tokens per NEON tile: 2 x 4 i32 accumulators, 2 x 4 f32 ones.
const TOKENS_NEON: usize = 2;
/// GEMM tokens per dotprod tile: 4 x 4 i32 accumulators, 4 x 4 f32 ones.
const TOKENS_DOTPROD: usize = 4;

/// `$acc.s[j] += sum_u $lo.b[4j + u] * $a.b[4 L0 + u] + $hi.b[4j + u] * $a.b[4 L1 + u]`: four
/// rows of a blocked step (low and high nibbles) against two activation quads of `$a`, with
/// `smull`/`smlal`, `addp` and `sadalp` (lane `j` of the result is row `j`, as with `sdot`).
macro_rules! pair_neon {
    ($acc:expr, $lo:expr, $hi:expr, $a:expr, $l0:literal, $l1:literal) => {{
        let (lo, hi, a) = ($lo, $hi, vreinterpretq_s32_s8($a));
        let qa = vreinterpretq_s8_s32(vdupq_laneq_s32::<$l0>(a));
        let qb = vreinterpretq_s8_s32(vdupq_laneq_s32::<$l1>(a));
        let rows01 = vmlal_s8(vmull_s8(vget_low_s8(lo), vget_low_s8(qa)), vget_low_s8(hi), vget_low_s8(qb));
        let rows23 = vmlal_high_s8(vmull_high_s8(lo, qa), hi, qb);
        $acc = vpadalq_s16($acc, vpaddq_s16(rows01, rows23));
    }};
}

/// As [`pair_neon`] with two `sdot` by element. Must be used inside an `unsafe` block of a
/// function with the dotprod feature.
macro_rules! pair_sdot {
    ($acc:expr, $lo:expr, $hi:expr, $a:expr, $l0:literal, $l1:literal) => {
        asm!(
            "sdot {acc:v}.4s, {lo:v}.16b, {a:v}.4b[{l0}]",
            "sdot {acc:v}.4s, {hi:v}.16b, {a:v}.4b[{l1}]",
            acc = inout(vreg) $acc,
            lo = in(vreg) $lo,
            hi = in(vreg) $hi,
            a = in(vreg) $a,
            l0 = const $l0,
            l1 = const $l1,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
}

/// One GEMV output: per group the exact integer `sum (q + 8) a - (8 + zero) sum(a)` over 32
/// columns a step (16 bytes: even columns in the low nibbles, odd in the high; the activations
/// split by `ld2`), then the scalar reference's f32 update.
macro_rules! row_body {
    ($dot:ident, $row:ident, $group:ident, $scales:ident, $zeros:ident, $act:ident) => {{
        let (flip, low) = (vdupq_n_u8(0x88), vdupq_n_u8(0x0F));
        let mut y = 0.0f32;
        for (g, (bytes, a)) in $row.chunks($group / 2).zip($act.q.chunks($group)).enumerate() {
            let (mut even, mut odd) = (vdupq_n_s32(0), vdupq_n_s32(0));
            for (b, a) in bytes.chunks_exact(16).zip(a.chunks_exact(32)) {
                // SAFETY: b holds 16 bytes and a 32 values; `sdot` (where used) is enabled on the
                // calling function and touches registers only.
                unsafe {
                    let u = veorq_u8(vld1q_u8(b.as_ptr()), flip);
                    let a = vld2q_s8(a.as_ptr());
                    $dot!(even, vreinterpretq_s8_u8(vandq_u8(u, low)), a.0);
                    $dot!(odd, vreinterpretq_s8_u8(vshrq_n_u8::<4>(u)), a.1);
                }
            }
            let offset = (8 + $zeros.map_or(0, |z| i32::from(z[g]))).wrapping_mul($act.sum[g]);
            let isum = vaddvq_s32(vaddq_s32(even, odd)).wrapping_sub(offset);
            y += $scales[g] * $act.scale[g] * isum as f32;
        }
        y
    }};
}

/// One GEMV output on NEON.
///
/// # Safety
/// `row` holds `cols / 2` bytes with `cols` and `group` multiples of 32, `scales` (and `zeros`)
/// one entry per group, `act` quantized for `cols` columns in groups of `group`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn row_neon(
    row: &[u8],
    group: usize,
    scales: &[f32],
    zeros: Option<&[i8]>,
    act: &Activations,
) -> f32 {
    row_body!(dot16_neon, row, group, scales, zeros, act)
}

/// One GEMV output with `sdot`.
///
/// # Safety
/// As [`row_neon`]; the dotprod tier is available.
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn row_dotprod(
    row: &[u8],
    group: usize,
    scales: &[f32],
    zeros: Option<&[i8]>,
    act: &Activations,
) -> f32 {
    row_body!(dot16_sdot, row, group, scales, zeros, act)
}

/// One 64-byte step at `$w` (16 rows as four registers of 4 rows) against activation quads
/// `$l0` (low nibbles) and `$l1` (high) of each token's register in `$a`, into `$isum`.
macro_rules! step4 {
    ($pair:ident, $w:expr, $a:expr, $isum:expr, $low:expr, $l0:literal, $l1:literal) => {
        for i in 0..4 {
            // SAFETY: the step's 64 bytes lie in the block (see the tile's contract); `sdot`
            // (where used) is enabled on the calling function and touches registers only.
            unsafe {
                let v = vld1q_u8($w.add(16 * i));
                let (lo, hi) =
                    (vreinterpretq_s8_u8(vandq_u8(v, $low)), vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)));
                for (s, &a) in $isum.iter_mut().zip(&$a) {
                    $pair!(s[i], lo, hi, a, $l0, $l1);
                }
            }
        }
    };
}

/// `T` tokens from `$t0` against block `$b` (16 rows from `16 b`): per group the i32 sums less
/// `(8 + zero) * sum(a)`, then per output `y += (scale * activation scale) * dot`; writes
/// `y[t * ldy ..]` for the rows that exist.
macro_rules! tile_body {
    ($pair:ident, $T:ident, $o:ident, $b:ident, $t0:ident, $y:ident, $ldy:ident) => {{
        let (p, act) = ($o.p, $o.act);
        let (cols, group, groups) = (p.cols, p.group, p.groups);
        let low = vdupq_n_u8(0x0F);
        let steps = cols / STEP;
        // SAFETY (every pointer below): block b's steps lie in `data`, tokens t0..t0 + T in `act`,
        // columns c..c + 16 (two steps) or c..c + 8 (the last step of a group) within the group,
        // params (b, g) in `scales` and `zoff`.
        let mut w = unsafe { p.data.as_ptr().add($b * steps * 4 * BLOCK) };
        let a0 = unsafe { act.q.as_ptr().add($t0 * cols) };
        let mut acc = [[vdupq_n_f32(0.0); 4]; $T];
        for g in 0..groups {
            let end = ((g + 1) * group).min(cols);
            let mut isum = [[vdupq_n_s32(0); 4]; $T];
            let mut c = g * group;
            let mut a = [vdupq_n_s8(0); $T];
            while c + 2 * STEP <= end {
                for (t, a) in a.iter_mut().enumerate() {
                    // SAFETY: token t0 + t exists and c + 16 <= end <= cols.
                    *a = unsafe { vld1q_s8(a0.add(t * cols + c)) };
                }
                // SAFETY: the second step of the two, in block b.
                let w1 = unsafe { w.add(4 * BLOCK) };
                step4!($pair, w, a, isum, low, 0, 1);
                step4!($pair, w1, a, isum, low, 2, 3);
                // SAFETY: the next step of block b, or one past its last (never read).
                w = unsafe { w.add(8 * BLOCK) };
                c += 2 * STEP;
            }
            if c < end {
                // One step left (a group of an odd count of 8 columns).
                for (t, a) in a.iter_mut().enumerate() {
                    // SAFETY: token t0 + t exists and c + 8 = end <= cols.
                    *a = unsafe { vcombine_s8(vld1_s8(a0.add(t * cols + c)), vdup_n_s8(0)) };
                }
                step4!($pair, w, a, isum, low, 0, 1);
                // SAFETY: as above.
                w = unsafe { w.add(4 * BLOCK) };
            }
            let pi = ($b * groups + g) * BLOCK;
            // SAFETY: params (b, g) hold 16 scales and 16 offsets in `scales` and `zoff`.
            let (sw, zo) = unsafe {
                let s = p.scales.as_ptr().add(pi);
                let z = vld1q_s8(p.zoff.as_ptr().add(pi));
                let (zl, zh) = (vmovl_s8(vget_low_s8(z)), vmovl_high_s8(z));
                (
                    [vld1q_f32(s), vld1q_f32(s.add(4)), vld1q_f32(s.add(8)), vld1q_f32(s.add(12))],
                    [
                        vmovl_s16(vget_low_s16(zl)),
                        vmovl_high_s16(zl),
                        vmovl_s16(vget_low_s16(zh)),
                        vmovl_high_s16(zh),
                    ],
                )
            };
            for (t, (s, acc)) in isum.iter().zip(&mut acc).enumerate() {
                let ai = ($t0 + t) * groups + g;
                let (sum, scale) = (act.sum[ai], act.scale[ai]);
                for i in 0..4 {
                    let dot = vmlsq_n_s32(s[i], zo[i], sum);
                    let f = vmulq_n_f32(sw[i], scale);
                    acc[i] = vaddq_f32(acc[i], vmulq_f32(f, vcvtq_f32_s32(dot)));
                }
            }
        }
        let live = (p.rows - $b * BLOCK).min(BLOCK);
        for (t, acc) in acc.iter().enumerate() {
            let mut out = [0.0f32; BLOCK];
            for (i, v) in acc.iter().enumerate() {
                // SAFETY: out holds 16 values.
                unsafe { vst1q_f32(out.as_mut_ptr().add(4 * i), *v) };
            }
            // SAFETY: token t's run holds the block's `live` rows.
            unsafe { core::ptr::copy_nonoverlapping(out.as_ptr(), $y.add(t * $ldy), live) };
        }
    }};
}

/// `T` tokens from `t0` against block `b` on NEON (see [`tile_body`]).
///
/// # Safety
/// `p` is blocked, `t0 + T` tokens exist in `act`, `y` points at `T` runs (`ldy` apart) of as
/// many outputs as block `b` has rows.
#[target_feature(enable = "neon")]
unsafe fn tile_neon<const T: usize>(o: &Operands<'_>, b: usize, t0: usize, y: *mut f32, ldy: usize) {
    tile_body!(pair_neon, T, o, b, t0, y, ldy)
}

/// `T` tokens from `t0` against block `b` with `sdot`.
///
/// # Safety
/// As [`tile_neon`]; the dotprod tier is available.
#[target_feature(enable = "neon,dotprod")]
unsafe fn tile_dotprod<const T: usize>(o: &Operands<'_>, b: usize, t0: usize, y: *mut f32, ldy: usize) {
    tile_body!(pair_sdot, T, o, b, t0, y, ldy)
}

/// The GEMM on NEON for the rows of `blocks`: token tiles of 2.
///
/// # Safety
/// `p` is blocked, `blocks` within its blocks, `act` holds `m` token rows and `y` `m` runs `ldy`
/// apart of the outputs of rows `16 blocks.start` up to `16 blocks.end` (or `p.rows`).
#[target_feature(enable = "neon")]
pub(super) unsafe fn gemm_neon(
    p: &PackedInt4,
    act: &RowActivations,
    m: usize,
    y: &mut [f32],
    ldy: usize,
    blocks: Range<usize>,
) {
    let o = Operands { p, act };
    for_each_tile(&o, m, TOKENS_NEON, y, ldy, blocks, |n, b, t0, yt| {
        // SAFETY: the function's contract, for tokens t0..t0 + n and block b (`yt` their run).
        unsafe {
            if n == 2 {
                tile_neon::<2>(&o, b, t0, yt, ldy)
            } else {
                tile_neon::<1>(&o, b, t0, yt, ldy)
            }
        }
    });
}

/// The GEMM with `sdot` for the rows of `blocks`: token tiles of 4.
///
/// # Safety
/// As [`gemm_neon`]; the dotprod tier is available.
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn gemm_dotprod(
    p: &PackedInt4,
    act: &RowActivations,
    m: usize,
    y: &mut [f32],
    ldy: usize,
    blocks: Range<usize>,
) {
    let o = Operands { p, act };
    for_each_tile(&o, m, TOKENS_DOTPROD, y, ldy, blocks, |n, b, t0, yt| {
        // SAFETY: the function's contract, for tokens t0..t0 + n and block b (`yt` their run).
        unsafe {
            match n {
                4 => tile_dotprod::<4>(&o, b, t0, yt, ldy),
                3 => tile_dotprod::<3>(&o, b, t0, yt, ldy),
                2 => tile_dotprod::<2>(&o, b, t0, yt, ldy),
                _ => tile_dotprod::<1>(&o, b, t0, yt, ldy),
            }
        }
    });
}
