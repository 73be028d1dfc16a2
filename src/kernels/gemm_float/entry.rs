//! The weight-format dispatch every instruction set's GEMM and GEMV share, written once as a macro
//! and instantiated by `x86.rs` and `aarch64.rs` over their own `microkernel_*` and `dots_*`
//! (which the `kernels!` macro of each file defines).

/// Defines `microkernel`, `gemv` and `gemv_i8` over the calling module's `microkernel_{f32,f16,bf16}`
/// and `dots_{f32,f16,bf16,i8}`; `$cpu` names the features the safety contracts require.
macro_rules! weight_entry_points {
    ($cpu:literal) => {
        /// One MR x NR tile of C from packed panels of any weight format.
        ///
        /// # Safety
        #[doc = concat!("The CPU has ", $cpu, "; the buffers hold the tile (`Tile::assert_fits`).")]
        pub(crate) unsafe fn microkernel<W: WeightElement>(tile: Tile, a: &[f32], b: &[W], c: &mut [f32]) {
            // SAFETY: the kind names W's concrete type; the CPU and buffers are the caller's contract.
            unsafe {
                match W::KIND {
                    WeightKind::F32 => microkernel_f32(tile, a, as_kind(b), c),
                    WeightKind::F16 => microkernel_f16(tile, a, as_kind(b), c),
                    WeightKind::Bf16 => microkernel_bf16(tile, a, as_kind(b), c),
                }
            }
        }

        /// Rows per GEMV group: 4 rows x 2 accumulators keep eight FMA chains in flight.
        const ROWS: usize = 4;

        /// `y = W x` over `n` rows, ROWS at a time, then one at a time; `scale(i)` multiplies output `i`.
        macro_rules! gemv_rows {
            ($dots:ident, $n:expr, $k:expr, $w:expr, $ldw:expr, $x:expr, $y:expr, $scale:expr) => {{
                let (n, k, w, ldw, x, y) = ($n, $k, $w, $ldw, $x, $y);
                let mut i = 0;
                while i + ROWS <= n {
                    // SAFETY: the caller checked w holds n rows of k (ldw apart) and x holds k.
                    let d: [f32; ROWS] = unsafe { $dots(&w[i * ldw..], ldw, k, x) };
                    for (r, v) in d.into_iter().enumerate() {
                        y[i + r] = $scale(i + r) * v;
                    }
                    i += ROWS;
                }
                while i < n {
                    // SAFETY: as above, for one row.
                    let [v]: [f32; 1] = unsafe { $dots(&w[i * ldw..], ldw, k, x) };
                    y[i] = $scale(i) * v;
                    i += 1;
                }
            }};
        }

        /// `y = W x` for f32, f16 or bf16 weights.
        ///
        /// # Safety
        #[doc = concat!("The CPU has ", $cpu, "; `w` holds `n` rows of `k` (`ldw` apart), `x` `k`, `y` `n`.")]
        pub(crate) unsafe fn gemv<W: WeightElement>(
            n: usize,
            k: usize,
            w: &[W],
            ldw: usize,
            x: &[f32],
            y: &mut [f32],
        ) {
            let one = |_| 1.0f32;
            match W::KIND {
                WeightKind::F32 => {
                    // SAFETY: the kind names W's concrete type.
                    let w = unsafe { as_kind::<W, f32>(w) };
                    gemv_rows!(dots_f32, n, k, w, ldw, x, y, one)
                }
                WeightKind::F16 => {
                    // SAFETY: the kind names W's concrete type.
                    let w = unsafe { as_kind::<W, f16>(w) };
                    gemv_rows!(dots_f16, n, k, w, ldw, x, y, one)
                }
                WeightKind::Bf16 => {
                    // SAFETY: the kind names W's concrete type.
                    let w = unsafe { as_kind::<W, bf16>(w) };
                    gemv_rows!(dots_bf16, n, k, w, ldw, x, y, one)
                }
            }
        }

        /// Rows of B per call of `sweep_*` in [`sweep`].
        const SWEEP_ROWS: usize = 4;

        /// `y = a B` for a single row `a` (`k`) and B `k x n` (rows `ldb` apart), B swept whole
        /// rows at a time so that it streams from memory in order; `y` (`n`) is overwritten.
        ///
        /// # Safety
        #[doc = concat!("The CPU has ", $cpu, "; `a` holds `k`, `b` `(k - 1) * ldb + n` (when `k > 0`), `y` `n`.")]
        pub(crate) unsafe fn sweep<W: WeightElement>(
            k: usize,
            n: usize,
            a: &[f32],
            b: &[W],
            ldb: usize,
            y: &mut [f32],
        ) {
            /// Sweeps `$b` (of the concrete weight type) with `$sweep`.
            macro_rules! sweep_with {
                ($sweep:ident, $b:expr) => {{
                    let b = $b;
                    let mut p = 0;
                    while p + SWEEP_ROWS <= k {
                        let rows: [f32; SWEEP_ROWS] = core::array::from_fn(|r| a[p + r]);
                        // SAFETY: rows p .. p + SWEEP_ROWS of B hold n weights each, ldb apart
                        // (the caller's contract), and y holds n.
                        unsafe { $sweep::<SWEEP_ROWS>(&b[p * ldb..], ldb, n, rows, y) };
                        p += SWEEP_ROWS;
                    }
                    while p < k {
                        // SAFETY: as above, for one row.
                        unsafe { $sweep::<1>(&b[p * ldb..], ldb, n, [a[p]], y) };
                        p += 1;
                    }
                }};
            }
            y[..n].fill(0.0);
            match W::KIND {
                // SAFETY (each arm): the kind names W's concrete type.
                WeightKind::F32 => sweep_with!(sweep_f32, unsafe { as_kind::<W, f32>(b) }),
                WeightKind::F16 => sweep_with!(sweep_f16, unsafe { as_kind::<W, f16>(b) }),
                WeightKind::Bf16 => sweep_with!(sweep_bf16, unsafe { as_kind::<W, bf16>(b) }),
            }
        }

        /// `y_i = scale_i * (W x)_i` for int8 weights.
        ///
        /// # Safety
        /// As [`gemv`], and `scales` holds `n`.
        pub(crate) unsafe fn gemv_i8(
            n: usize,
            k: usize,
            w: &[i8],
            ldw: usize,
            scales: &[f32],
            x: &[f32],
            y: &mut [f32],
        ) {
            gemv_rows!(dots_i8, n, k, w, ldw, x, y, |i: usize| scales[i])
        }
    };
}
pub(super) use weight_entry_points;

/// Runs `$body::<R, PF>` for the tile's row count `R` (1..=MR) and `PF` = whether B is read in
/// place (strided, so prefetched ahead) rather than from a packed panel.
macro_rules! by_rows {
    ($body:ident, $tile:expr, $($arg:expr),*) => {{
        let strided = $tile.b_stride != NR;
        // SAFETY: forwarded from the caller's contract (CPU features and buffer extents).
        unsafe {
            match ($tile.mr, strided) {
                (1, false) => $body::<1, false>($($arg),*),
                (2, false) => $body::<2, false>($($arg),*),
                (3, false) => $body::<3, false>($($arg),*),
                (4, false) => $body::<4, false>($($arg),*),
                (5, false) => $body::<5, false>($($arg),*),
                (6, false) => $body::<6, false>($($arg),*),
                (1, true) => $body::<1, true>($($arg),*),
                (2, true) => $body::<2, true>($($arg),*),
                (3, true) => $body::<3, true>($($arg),*),
                (4, true) => $body::<4, true>($($arg),*),
                (5, true) => $body::<5, true>($($arg),*),
                (6, true) => $body::<6, true>($($arg),*),
                (mr, _) => unreachable!("tile of {mr} rows (asserted 1..={MR})"),
            }
        }
    }};
}
pub(super) use by_rows;
