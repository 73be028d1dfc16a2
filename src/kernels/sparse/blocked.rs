//! What the x86 tiers' 2:4 kernels share: the byte layout of 2:4 positions, and the blocked
//! 2:4 x many-columns product (x packed into micro-panels, loops over row, depth and column
//! blocks), into which each tier plugs its register tile.

/// For one byte of 2:4 positions (four 2-bit fields, low bits first: two kept values in each of
/// two groups of four), which of the byte's eight columns each kept value sits in: the second
/// group's fields offset by 4. The one definition of the byte layout the 2:4 kernels decode.
#[inline(always)]
pub(super) const fn columns_2_4(byte: usize) -> [usize; 4] {
    [byte & 3, (byte >> 2) & 3, 4 + ((byte >> 4) & 3), 4 + ((byte >> 6) & 3)]
}

/// One register tile of the blocked product: `out` = (`out` if `accumulate`) + `rows` matrix
/// rows' kept values over one depth block of `8 bytes` columns times the micro-panel rows their
/// positions pick.
pub(super) struct Tile {
    /// The first row's kept values from the depth block's start; row `i` at `i * row_values`.
    pub values: *const f32,
    /// Kept values per matrix row (`cols / 2`).
    pub row_values: usize,
    /// The first row's position bytes from the depth block's start; row `i` at `i * row_fields`.
    pub fields: *const u8,
    /// Position bytes per matrix row (`cols / 8`).
    pub row_fields: usize,
    /// Position bytes of the depth block per row (its columns / 8).
    pub bytes: usize,
    /// The packed micro-panel: `8 bytes` rows of the tier's `nr` floats.
    pub micro: *const f32,
    /// The output tile: `rows` rows of `nr` floats, `ld` apart.
    pub out: *mut f32,
    /// Floats between output rows.
    pub ld: usize,
    /// Whether `out` already holds a partial sum to add to.
    pub accumulate: bool,
    /// Live rows, `1 ..= mr`.
    pub rows: usize,
}

/// A tier's register tile for [`spmm_2_4_blocked`].
pub(super) struct Blocking {
    /// Most rows per tile.
    pub mr: usize,
    /// Columns per tile and micro-panel (a multiple of the tier's vector width).
    pub nr: usize,
    /// Columns per depth block (a multiple of 8): the micro-panel, `depth x nr` floats, stays in L1.
    pub depth: usize,
    /// Runs one tile.
    ///
    /// # Safety
    /// The tier's CPU features are available, and every pointer of the [`Tile`] is valid for the
    /// extents its fields state, with `rows <= mr` and the micro-panel `nr` wide.
    pub tile: unsafe fn(&Tile),
}

/// Rows of one row block: their kept values in a depth block stay in L2 while the column blocks
/// run over them, and their tile of y (at most `ROWS x ncols`) across the depth blocks.
const ROWS: usize = 256;

/// A 2:4 compressed matrix whose rows' position fields start on a byte (`cols % 8 == 0`) times
/// `ncols` columns: `y (rows x ncols) = a (rows x cols) * x (cols x ncols)`, blocked as a dense
/// GEMM is. Per depth block, `x` is packed into micro-panels of `nr` columns (zero-padded);
/// `mr x nr` tiles of `y` are accumulated in registers by the tier's tile, each kept value
/// broadcast and multiplied with the micro-panel row its 2-bit field picks. Half the
/// multiply-adds of the dense product, each fed from L1.
///
/// # Safety
/// The CPU features of `blocking.tile`'s tier are available; `cols % 8 == 0`, `cols > 0`,
/// `values.len() == rows * cols / 2`, `fields.len() == rows * cols / 8`,
/// `x.len() == cols * ncols`, `y.len() == rows * ncols`; `blocking.depth` is a positive multiple
/// of 8 and `blocking.nr` positive.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn spmm_2_4_blocked(
    blocking: &Blocking,
    values: &[f32],
    fields: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    ncols: usize,
    y: &mut [f32],
) -> crate::Result<()> {
    debug_assert!(cols.is_multiple_of(8) && blocking.depth.is_multiple_of(8));
    debug_assert_eq!(values.len(), rows * cols / 2);
    debug_assert_eq!(fields.len(), rows * cols / 8);
    debug_assert_eq!(x.len(), cols * ncols);
    debug_assert_eq!(y.len(), rows * ncols);
    let Blocking { mr, nr, depth: max_depth, tile } = *blocking;
    let blocks = ncols.div_ceil(nr);
    // All of x, packed once: depth block by depth block, each as `blocks` micro-panels.
    let panel_len = crate::error::checked_product("2:4 packed x", &[cols, blocks, nr])?;
    let mut panel_buf = crate::error::try_vec(panel_len + 16, 0.0f32)?;
    // Micro-panel rows start on a cache line, so no vector load splits one.
    let skip = panel_buf.as_ptr().align_offset(64).min(16);
    let panel = &mut panel_buf[skip..skip + panel_len];
    for (kb, block) in panel.chunks_mut(max_depth * blocks * nr).enumerate() {
        let (k0, depth) = (kb * max_depth, block.len() / (blocks * nr));
        for (jb, micro) in block.chunks_exact_mut(depth * nr).enumerate() {
            let (c0, width) = (jb * nr, nr.min(ncols - jb * nr));
            for (kk, dst) in micro.chunks_exact_mut(nr).enumerate() {
                dst[..width].copy_from_slice(&x[(k0 + kk) * ncols + c0..][..width]);
                dst[width..].fill(0.0);
            }
        }
    }
    let mut edge = crate::error::try_vec(mr * nr, 0.0f32)?;
    let (row_values, row_fields) = (cols / 2, cols / 8);
    for r0 in (0..rows).step_by(ROWS) {
        let row_end = rows.min(r0 + ROWS);
        for k0 in (0..cols).step_by(max_depth) {
            let depth = max_depth.min(cols - k0);
            let accumulate = k0 > 0;
            for jb in 0..blocks {
                let (c0, width) = (jb * nr, nr.min(ncols - jb * nr));
                let micro = panel[k0 * blocks * nr + jb * depth * nr..][..depth * nr].as_ptr();
                let mut r = r0;
                while r < row_end {
                    let live = mr.min(row_end - r);
                    // Full tiles go straight to y; a partial column block through `edge`.
                    let (out, ld) = if width == nr {
                        (y[r * ncols + c0..].as_mut_ptr(), ncols)
                    } else {
                        if accumulate {
                            for i in 0..live {
                                edge[i * nr..][..width].copy_from_slice(&y[(r + i) * ncols + c0..][..width]);
                            }
                        }
                        (edge.as_mut_ptr(), nr)
                    };
                    let t = Tile {
                        values: values[r * row_values + k0 / 2..].as_ptr(),
                        row_values,
                        fields: fields[r * row_fields + k0 / 8..].as_ptr(),
                        row_fields,
                        bytes: depth / 8,
                        micro,
                        out,
                        ld,
                        accumulate,
                        rows: live,
                    };
                    // SAFETY: the tier's features (contract); rows r .. r + live exist, so each
                    // has row_values kept values and row_fields bytes from its depth block's
                    // start; the micro-panel holds depth rows of nr floats; `out` holds `live`
                    // rows of nr floats at stride ld (y: c0 + nr <= ncols when width == nr; else
                    // `edge`, mr * nr floats).
                    unsafe { tile(&t) };
                    if width < nr {
                        for i in 0..live {
                            y[(r + i) * ncols + c0..][..width].copy_from_slice(&edge[i * nr..][..width]);
                        }
                    }
                    r += live;
                }
            }
        }
    }
    Ok(())
}

/// Runs `$tile::<R, $nv>($t)` for the live row count `R` of `$t` (1 ..= `$mr`, a literal up to 8).
macro_rules! by_rows {
    ($tile:ident, $nv:expr, $t:expr, 8) => {
        match $t.rows {
            1 => $tile::<1, $nv>($t),
            2 => $tile::<2, $nv>($t),
            3 => $tile::<3, $nv>($t),
            4 => $tile::<4, $nv>($t),
            5 => $tile::<5, $nv>($t),
            6 => $tile::<6, $nv>($t),
            7 => $tile::<7, $nv>($t),
            _ => $tile::<8, $nv>($t),
        }
    };
    ($tile:ident, $nv:expr, $t:expr, 6) => {
        match $t.rows {
            1 => $tile::<1, $nv>($t),
            2 => $tile::<2, $nv>($t),
            3 => $tile::<3, $nv>($t),
            4 => $tile::<4, $nv>($t),
            5 => $tile::<5, $nv>($t),
            _ => $tile::<6, $nv>($t),
        }
    };
    ($tile:ident, $nv:expr, $t:expr, 4) => {
        match $t.rows {
            1 => $tile::<1, $nv>($t),
            2 => $tile::<2, $nv>($t),
            3 => $tile::<3, $nv>($t),
            _ => $tile::<4, $nv>($t),
        }
    };
    ($tile:ident, $nv:expr, $t:expr, 3) => {
        match $t.rows {
            1 => $tile::<1, $nv>($t),
            2 => $tile::<2, $nv>($t),
            _ => $tile::<3, $nv>($t),
        }
    };
}
pub(super) use by_rows;
