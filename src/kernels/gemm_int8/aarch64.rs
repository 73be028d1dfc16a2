//! aarch64 microkernels, one per tier, each an `MR x NR` (5 x 16) tile exact for every u8 A and
//! i8 B, reading the narrow A panel (per quad, MR rows of four k bytes) and the packed B quads
//! (per quad, 16 columns of four consecutive k bytes):
//!
//! - [`kernel`] (NEON): products widened to i16 and i32 with `smull`, k folded with pairwise adds.
//! - [`kernel_dotprod`] (dotprod): `sdot` by element. A 16-byte load of a B quad is four columns
//!   of four k bytes, exactly one `sdot` operand, and one A row's four bytes are one indexed lane.
//!   `sdot` multiplies signed by signed, so A is shifted into i8 as `a' = a ^ 0x80 = a - 128` and
//!   the shift is undone with B's sums: `sum a b = sum a' b + 128 sum b = sum a' b - sum (-128) b`,
//!   where `sum (-128) b` is one more `sdot` per column group and quad against a vector of -128
//!   (shared by the five rows). Every step is a wrapping i32 add of exact products, so the result
//!   is the reference's wrapping sum, bit for bit.
//! - [`kernel_i8mm`] (i8mm): `usmmla` for rows 0-3, a 2x8 u8 block of A times an 8x2 i8 block of
//!   B into a 2x2 i32 block (twice the multiply-adds of a dot instruction), and `sudot` for row 4.
//!   The `usmmla` operands are two quads deep and are assembled from the same packed layouts in
//!   registers (32-bit zips of two quads), so no other packing exists: see [`kernel_i8mm`].
//! - [`kernel_usdot`] (i8mm): `sudot` by element (i8 B vector times an indexed u8 A row), the
//!   dotprod kernel without the shift: the i8mm tier's plain-dot alternative, tested but not
//!   dispatched (a one-line swap in `simd_tile` if a core runs it faster than `usmmla`).
//!
//! The dot and matrix instructions go through `asm!`: their intrinsics (`vdotq_s32`,
//! `vusdotq_s32`, `vusmmlaq_s32`) are unstable in Rust 1.95 (`stdarch_neon_dotprod`,
//! `stdarch_neon_i8mm`), while the instructions assemble under the functions' target features.

use super::blocking::{KU, MR, NR};
use super::pack::Quad;
use std::arch::aarch64::*;
use std::arch::asm;

/// Column groups of four per tile (one 128-bit vector of i32 each).
const GROUPS: usize = NR / 4;

const _: () = assert!(MR == 5 && NR == 16 && KU == 4, "the kernels are written for a 5 x 16 tile of quads");

/// `tile (+)= A B` over `quads` quads on a narrow A panel.
///
/// # Safety
/// NEON must be available; `a` must hold `quads * MR * 4` bytes, `b` `quads` quads, and `c` an
/// `MR x NR` tile with leading dimension `ldc`.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn kernel(
    quads: usize,
    a: *const u8,
    b: *const Quad,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = [[vdupq_n_s32(0); GROUPS]; MR];
    for q in 0..quads {
        // SAFETY: q < quads keeps every read inside the caller's buffers.
        unsafe {
            let bq = b.add(q).cast::<i8>();
            let mut bw = [[vdupq_n_s16(0); 2]; GROUPS];
            for (g, w) in bw.iter_mut().enumerate() {
                let v = vld1q_s8(bq.add(16 * g));
                *w = [vmovl_s8(vget_low_s8(v)), vmovl_high_s8(v)];
            }
            let aq = a.add(q * MR * KU);
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let bits = aq.add(r * KU).cast::<u32>().read_unaligned();
                let a16 = vreinterpretq_s16_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(bits))));
                let a_low = vget_low_s16(a16);
                for (g, [lo, hi]) in bw.iter().enumerate() {
                    let c01 = vpaddq_s32(vmull_s16(vget_low_s16(*lo), a_low), vmull_high_s16(*lo, a16));
                    let c23 = vpaddq_s32(vmull_s16(vget_low_s16(*hi), a_low), vmull_high_s16(*hi, a16));
                    acc_row[g] = vaddq_s32(acc_row[g], vpaddq_s32(c01, c23));
                }
            }
        }
    }
    // SAFETY: the caller guarantees the tile is inside C.
    unsafe { store_rows(&acc, c, ldc, accumulate) };
}

/// Writes (or adds) `rows` of four column groups to the tile at `c`.
///
/// # Safety
/// `c` must be valid for reads and writes of `R` rows of NR i32, `ldc` apart.
#[inline(always)]
unsafe fn store_rows<const R: usize>(
    rows: &[[int32x4_t; GROUPS]; R],
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    for (r, row) in rows.iter().enumerate() {
        for (g, &v) in row.iter().enumerate() {
            // SAFETY: (r, 4g..4g+4) is inside the tile (the caller's contract); NEON is
            // part of every aarch64 target.
            unsafe {
                let p = c.add(r * ldc + g * 4);
                let v = if accumulate { vaddq_s32(vld1q_s32(p), v) } else { v };
                vst1q_s32(p, v);
            }
        }
    }
}

/// `$acc.s[j] += sum_u $b.b[4j + u] * $a.b[4 * $lane + u]` with the by-element dot instruction
/// `$op` (`sdot`: both signed; `sudot`: `$b` signed, `$a` unsigned). Must be used inside an
/// `unsafe` block of a function whose target features include the instruction's.
macro_rules! dot_lane {
    ($op:literal, $acc:expr, $b:expr, $a:expr, $lane:literal) => {
        asm!(
            concat!($op, " {acc:v}.4s, {b:v}.16b, {a:v}.4b[", $lane, "]"),
            acc = inout(vreg) $acc,
            b = in(vreg) $b,
            a = in(vreg) $a,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
}

/// The body of the dot-product kernels: the B quad's four column groups, rows 0-3 of A as the
/// four lanes of one vector and row 4 in lane 0 of another, 20 by-element dots per quad.
/// `$shift_a` applies `a ^ 0x80` to A and accumulates the `sum (-128) b` correction (for `sdot`).
macro_rules! dot_tile {
    ($op:literal, $shift_a:literal, $quads:ident, $a:ident, $b:ident, $c:ident, $ldc:ident, $accumulate:ident) => {{
        let mut acc = [[vdupq_n_s32(0); GROUPS]; MR];
        let mut shift_sums = [vdupq_n_s32(0); GROUPS];
        let flip = vdupq_n_u8(0x80);
        let minus_128 = vdupq_n_s8(-128);
        for q in 0..$quads {
            // SAFETY: q < quads keeps every read inside the caller's buffers (`a` holds MR * KU
            // bytes per quad: 16 for rows 0-3, then 4 for row 4); the dot instructions are
            // enabled on the calling function and touch registers only.
            unsafe {
                let bq = $b.add(q).cast::<i8>();
                let bv = [vld1q_s8(bq), vld1q_s8(bq.add(16)), vld1q_s8(bq.add(32)), vld1q_s8(bq.add(48))];
                let aq = $a.add(q * MR * KU);
                let mut a03 = vld1q_u8(aq);
                let mut a4 = vreinterpretq_u8_u32(vdupq_n_u32(aq.add(16).cast::<u32>().read_unaligned()));
                if $shift_a {
                    a03 = veorq_u8(a03, flip);
                    a4 = veorq_u8(a4, flip);
                }
                for (g, &bg) in bv.iter().enumerate() {
                    dot_lane!($op, acc[0][g], bg, a03, 0);
                    dot_lane!($op, acc[1][g], bg, a03, 1);
                    dot_lane!($op, acc[2][g], bg, a03, 2);
                    dot_lane!($op, acc[3][g], bg, a03, 3);
                    dot_lane!($op, acc[4][g], bg, a4, 0);
                    if $shift_a {
                        dot_lane!("sdot", shift_sums[g], bg, minus_128, 0);
                    }
                }
            }
        }
        if $shift_a {
            for row in acc.iter_mut() {
                for (v, &s) in row.iter_mut().zip(&shift_sums) {
                    *v = vsubq_s32(*v, s);
                }
            }
        }
        // SAFETY: the caller guarantees the tile is inside C.
        unsafe { store_rows(&acc, $c, $ldc, $accumulate) };
    }};
}

/// `tile (+)= A B` over `quads` quads with `sdot` (A shifted to i8 and corrected, see the module
/// documentation).
///
/// # Safety
/// The dotprod tier must be available; `a` must hold `quads * MR * 4` bytes, `b` `quads` quads,
/// and `c` an `MR x NR` tile with leading dimension `ldc`.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn kernel_dotprod(
    quads: usize,
    a: *const u8,
    b: *const Quad,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    dot_tile!("sdot", true, quads, a, b, c, ldc, accumulate)
}

/// `tile (+)= A B` over `quads` quads with `sudot` (u8 A times i8 B directly, no correction).
///
/// # Safety
/// The i8mm tier must be available; `a` must hold `quads * MR * 4` bytes, `b` `quads` quads, and
/// `c` an `MR x NR` tile with leading dimension `ldc`.
#[cfg_attr(not(test), allow(dead_code))]
#[target_feature(enable = "neon,dotprod,i8mm")]
pub(crate) unsafe fn kernel_usdot(
    quads: usize,
    a: *const u8,
    b: *const Quad,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    dot_tile!("sudot", false, quads, a, b, c, ldc, accumulate)
}

/// `$acc += $a $b^T` with `usmmla`: `$a` a 2x8 u8 block (one row per 64-bit half), `$b` a 2x8 i8
/// block (one column of B per half), `$acc` the 2x2 i32 block `[r0c0, r0c1, r1c0, r1c1]`. Must be
/// used inside an `unsafe` block of a function with the i8mm feature.
macro_rules! usmmla {
    ($acc:expr, $a:expr, $b:expr) => {
        asm!(
            "usmmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) $acc,
            a = in(vreg) $a,
            b = in(vreg) $b,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
}

/// One eight-deep step of [`kernel_i8mm`]: quads `$b0` and `$b1` (pointers to their bytes) and
/// the 40 A panel bytes at `$aq` (quad q's five rows, then quad q + 1's); 16 `usmmla` for rows
/// 0-3 into `$acc` and 8 `sudot` for row 4 into `$last`. B is loaded a column group at a time and
/// no B vector outlives its group, which keeps the 20 accumulators in registers (at -O3 the
/// scheduler still hoists the loads, for one spill per step).
macro_rules! mmla_step {
    ($acc:ident, $last:ident, $aq:expr, $b0:expr, $b1:expr) => {
        // u32 lanes x0..x9: x_r is row r of quad q, x_{5+r} row r of quad q + 1.
        let v0 = vreinterpretq_u32_u8(vld1q_u8($aq));
        let v1 = vreinterpretq_u32_u8(vld1q_u8($aq.add(16)));
        let v2 = vreinterpretq_u32_u8(vcombine_u8(vld1_u8($aq.add(32)), vdup_n_u8(0)));
        let w = vextq_u32::<1>(v1, v2); // [x5, x6, x7, x8]
        let pairs = [
            vreinterpretq_u8_u32(vzip1q_u32(v0, w)), // rows 0-1: [x0, x5, x1, x6]
            vreinterpretq_u8_u32(vzip2q_u32(v0, w)), // rows 2-3: [x2, x7, x3, x8]
        ];
        for g in 0..GROUPS {
            let (bg0, bg1) = (vld1q_s8($b0.add(16 * g)), vld1q_s8($b1.add(16 * g)));
            // Columns (4g, 4g+1) and (4g+2, 4g+3), each column's eight bytes k0-3 of the first
            // quad then k0-3 of the second: the 32-bit lanes of the two quads interleaved.
            let (b0, b1) = (vreinterpretq_s32_s8(bg0), vreinterpretq_s32_s8(bg1));
            let lo = vreinterpretq_s8_s32(vzip1q_s32(b0, b1));
            let hi = vreinterpretq_s8_s32(vzip2q_s32(b0, b1));
            for (acc_pair, &rows) in $acc.iter_mut().zip(pairs.iter()) {
                usmmla!(acc_pair[2 * g], rows, lo);
                usmmla!(acc_pair[2 * g + 1], rows, hi);
            }
            dot_lane!("sudot", $last[g], bg0, v1, 0); // row 4 of quad q: x4
            dot_lane!("sudot", $last[g], bg1, v2, 1); // row 4 of quad q + 1: x9
        }
    };
}

/// `tile (+)= A B` over `quads` quads with `usmmla` (u8 A times i8 B, 2x8 by 8x2 blocks) for
/// rows 0-3 and `sudot` by element for row 4.
///
/// Two quads make one eight-deep step. The operands are built in registers from the shared packed
/// layouts: B columns `(j, j+1)` of the step are the 32-bit zip of the two quads' column groups
/// (a quad's 16-byte group is four columns of four k bytes); A rows `(r, r+1)` are the 32-bit zip
/// of the two quads' rows (the 40 panel bytes of a quad pair, loaded as 16 + 16 + 8). The fifth
/// row has no partner, so it takes two by-element `sudot` per column group on the unzipped B
/// groups, its four bytes read straight from the A loads: a step is 16 `usmmla` and 8 `sudot`,
/// every lane useful, where [`kernel_usdot`] spends 40 dots. An odd last quad is paired with a
/// zero quad (its A bytes copied into a zeroed 40-byte buffer). The `usmmla` accumulators hold
/// 2x2 blocks; 64-bit zips turn them back into rows at the end.
///
/// # Safety
/// The i8mm tier must be available; `a` must hold `quads * MR * 4` bytes, `b` `quads` quads, and
/// `c` an `MR x NR` tile with leading dimension `ldc`.
#[target_feature(enable = "neon,dotprod,i8mm")]
pub(crate) unsafe fn kernel_i8mm(
    quads: usize,
    a: *const u8,
    b: *const Quad,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    static ZERO_QUAD: Quad = Quad([0; NR * KU]);
    // acc[p][j]: rows (2p, 2p+1) x columns (2j, 2j+1); last: row 4 by column group.
    let mut acc = [[vdupq_n_s32(0); NR / 2]; 2];
    let mut last = [vdupq_n_s32(0); GROUPS];
    let mut q = 0;
    while q + 2 <= quads {
        // SAFETY: quads q and q + 1 exist: 40 bytes of A from q * 20, two quads of B; usmmla and
        // sudot are enabled on this function and touch registers only.
        unsafe {
            let aq = a.add(q * MR * KU);
            mmla_step!(acc, last, aq, b.add(q).cast::<i8>(), b.add(q + 1).cast::<i8>());
        }
        q += 2;
    }
    if q < quads {
        let mut tail = [0u8; 2 * MR * KU];
        // SAFETY: quad q is the last: 20 bytes of A from q * 20 and one quad of B; the second
        // quad of the step is zeros (`tail`'s upper half, ZERO_QUAD).
        unsafe {
            std::ptr::copy_nonoverlapping(a.add(q * MR * KU), tail.as_mut_ptr(), MR * KU);
            let aq = tail.as_ptr();
            mmla_step!(acc, last, aq, b.add(q).cast::<i8>(), (&raw const ZERO_QUAD).cast::<i8>());
        }
    }
    let mut rows = [[vdupq_n_s32(0); GROUPS]; MR];
    for (p, pair) in acc.iter().enumerate() {
        for g in 0..GROUPS {
            let (left, right) = (vreinterpretq_s64_s32(pair[2 * g]), vreinterpretq_s64_s32(pair[2 * g + 1]));
            rows[2 * p][g] = vreinterpretq_s32_s64(vzip1q_s64(left, right));
            rows[2 * p + 1][g] = vreinterpretq_s32_s64(vzip2q_s64(left, right));
        }
    }
    rows[4] = last;
    // SAFETY: the caller guarantees the tile is inside C.
    unsafe { store_rows(&rows, c, ldc, accumulate) };
}

#[cfg(test)]
mod tests {
    use super::super::scalar;
    use super::*;
    use crate::kernels::Isa;

    type Kernel = unsafe fn(usize, *const u8, *const Quad, *mut i32, usize, bool);

    /// The kernels of the tiers this machine (or emulator) has, by name.
    fn kernels() -> Vec<(&'static str, Kernel)> {
        let mut all: Vec<(&'static str, Kernel)> = vec![("neon", kernel as Kernel)];
        if Isa::Dotprod.is_available() {
            all.push(("dotprod sdot", kernel_dotprod));
        }
        if Isa::I8mm.is_available() {
            all.push(("i8mm usmmla", kernel_i8mm));
            all.push(("i8mm sudot", kernel_usdot));
        }
        all
    }

    /// xorshift64*, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn byte(&mut self) -> u8 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        }
    }

    /// Runs every available kernel on the panels, overwriting and accumulating into a C with a
    /// wider leading dimension, against the scalar kernel; C's padding must stay untouched.
    fn check(quads: usize, a: &[u8], b: &[Quad]) {
        assert_eq!((a.len(), b.len()), (quads * MR * KU, quads));
        let mut want = [[0i32; NR]; MR];
        scalar::kernel(quads, a, b, &mut want);
        let ldc = NR + 3;
        for (name, run) in kernels() {
            for accumulate in [false, true] {
                let start = |i: usize| (i as i32).wrapping_mul(-7919) ^ 0x5a5a;
                let mut c: Vec<i32> = (0..MR * ldc).map(start).collect();
                // SAFETY: the tier is available, `a` and `b` hold `quads` quads, `c` MR rows of ldc.
                unsafe { run(quads, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, accumulate) };
                for (i, &got) in c.iter().enumerate() {
                    let (r, j) = (i / ldc, i % ldc);
                    let expected = match (j < NR, accumulate) {
                        (false, _) => start(i),
                        (true, false) => want[r][j],
                        (true, true) => start(i).wrapping_add(want[r][j]),
                    };
                    assert_eq!(
                        got, expected,
                        "{name}, {quads} quads, accumulate {accumulate}, row {r} col {j}"
                    );
                }
            }
        }
    }

    fn quads_of(bytes: &[i8]) -> Vec<Quad> {
        bytes.chunks_exact(NR * KU).map(|q| Quad(q.try_into().unwrap())).collect()
    }

    #[test]
    fn every_tier_kernel_matches_the_scalar_kernel_on_random_panels() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for quads in [0, 1, 2, 3, 4, 5, 7, 8, 31, 127, 128, 129, 300] {
            let a: Vec<u8> = (0..quads * MR * KU).map(|_| rng.byte()).collect();
            let b: Vec<i8> = (0..quads * NR * KU).map(|_| rng.byte() as i8).collect();
            check(quads, &a, &quads_of(&b));
        }
    }

    #[test]
    fn every_tier_kernel_is_exact_at_the_extremes_over_a_long_depth() {
        // k = 16384: 255 * -128 * 16384 = -534773760 per element, inside i32; every product and
        // every pair, quad and dot sum at its extreme.
        let quads = 4096;
        for (a_at, b_at) in [(255u8, -128i8), (255, 127), (0, -128), (128, -128), (127, -128), (128, 127)] {
            check(quads, &vec![a_at; quads * MR * KU], &vec![Quad([b_at; NR * KU]); quads]);
        }
        // Extremes mixed at random, so neighbouring lanes, rows and quads differ.
        let mut rng = Rng(42);
        for quads in [4095, 4096] {
            let a: Vec<u8> =
                (0..quads * MR * KU).map(|_| [0, 127, 128, 255][usize::from(rng.byte() & 3)]).collect();
            let b: Vec<i8> =
                (0..quads * NR * KU).map(|_| [-128, -1, 0, 127][usize::from(rng.byte() & 3)]).collect();
            check(quads, &a, &quads_of(&b));
        }
    }

    #[test]
    fn prints_the_tiers_exercised_and_matches_the_expected_list() {
        let tiers: Vec<&str> = Isa::available().iter().map(|isa| isa.name()).collect();
        let names: Vec<&str> = kernels().iter().map(|(name, _)| *name).collect();
        println!("aarch64 tiers available: {}; int8 kernels tested: {}", tiers.join(","), names.join(", "));
        // The CI leg states what each emulated CPU must offer, so a lost tier fails loudly.
        if let Ok(want) = std::env::var("GREENAI_EXPECT_TIERS") {
            assert_eq!(tiers.join(","), want);
        }
    }
}
