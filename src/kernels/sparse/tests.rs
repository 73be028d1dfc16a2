//! Every available tier (the scalar reference included) against a float64 product:
//! `|got - exact| <= kept * (2^-23 * sum_k |a_k x_k| + 2^-149)` per output (twice the unit
//! roundoff per stored term, a bound any f32 summation order meets, and the absolute error of
//! products that round into the subnormals), on raw CSR and 2:4 arrays built here.

use super::*;
use crate::kernels::Isa;

/// Small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Mostly values in [-1, 1); one in eight an edge value (huge, tiny, subnormal, signed zero).
    fn value(&mut self) -> f32 {
        const EDGE: [f32; 7] = [1e18, -1e18, f32::MIN_POSITIVE, -3.0e-39, 0.0, -0.0, 65504.0];
        if self.below(8) == 0 {
            EDGE[self.below(EDGE.len())]
        } else {
            (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }
    }
    fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.value()).collect()
    }
}

/// A dense `rows x cols` matrix as CSR arrays (density in percent) and the same matrix dense.
struct CsrArrays {
    row_ptr: Vec<u32>,
    col_idx: Vec<u32>,
    values: Vec<f32>,
    dense: Vec<f32>,
}

fn random_csr(rng: &mut Rng, rows: usize, cols: usize, density: usize) -> CsrArrays {
    let mut a =
        CsrArrays { row_ptr: vec![0], col_idx: vec![], values: vec![], dense: vec![0.0; rows * cols] };
    for r in 0..rows {
        for c in 0..cols {
            if rng.below(100) < density {
                let v = rng.value();
                a.col_idx.push(c as u32);
                a.values.push(v);
                a.dense[r * cols + c] = v;
            }
        }
        a.row_ptr.push(a.values.len() as u32);
    }
    a
}

/// A random 2:4 matrix: kept values, their packed 2-bit positions, and the dense matrix.
fn random_2_4(rng: &mut Rng, rows: usize, cols: usize) -> (Vec<f32>, Vec<u8>, Vec<f32>) {
    let slots = rows * cols / 2;
    let mut values = Vec::with_capacity(slots);
    let mut positions = vec![0u8; slots.div_ceil(4)];
    let mut dense = vec![0.0; rows * cols];
    for g in 0..rows * cols / 4 {
        let first = rng.below(3);
        let second = first + 1 + rng.below(3 - first);
        for (s, p) in [first, second].into_iter().enumerate() {
            let slot = 2 * g + s;
            let v = rng.value();
            values.push(v);
            dense[4 * g + p] = v;
            positions[slot / 4] |= (p as u8) << (2 * (slot % 4));
        }
    }
    (values, positions, dense)
}

/// Checks `y` against the float64 product of dense `a (rows x cols)` and `x (cols x ncols)`,
/// `kept` the most stored values of a row.
fn check(
    y: &[f32],
    a: &[f32],
    x: &[f32],
    (rows, cols, ncols): (usize, usize, usize),
    kept: usize,
    what: &str,
) {
    assert_eq!(y.len(), rows * ncols);
    for r in 0..rows {
        for c in 0..ncols {
            let (mut s, mut mag) = (0.0f64, 0.0f64);
            for k in 0..cols {
                let t = f64::from(a[r * cols + k]) * f64::from(x[k * ncols + c]);
                s += t;
                mag += t.abs();
            }
            let got = f64::from(y[r * ncols + c]);
            // Plus half the smallest subnormal per product that rounds into the subnormals.
            let bound = kept as f64 * (f64::from(f32::EPSILON) * mag + f64::from(f32::from_bits(1)));
            assert!((got - s).abs() <= bound, "{what}: y[{r}, {c}] = {got}, exact {s}, bound {bound}");
        }
    }
}

/// `x` of `len` floats at an odd float offset of its buffer (no vector alignment).
fn unaligned(rng: &mut Rng, len: usize) -> Vec<f32> {
    let mut buf = rng.vec(len + 1);
    buf.remove(0);
    buf
}

/// Column counts: 0, 1, every tail 1..15 past a whole register, around the 128-column pass.
const NCOLS: &[usize] =
    &[0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 18, 23, 31, 32, 33, 47, 63, 64, 65, 127, 128, 129, 131, 143];

#[test]
fn csr_every_tier_matches_float64() {
    let mut rng = Rng(0x5eed_0001);
    for &ncols in NCOLS {
        for &(rows, cols, density) in
            &[(0, 5, 50), (1, 1, 100), (3, 17, 40), (13, 131, 30), (2, 40, 100), (5, 0, 50)]
        {
            let a = random_csr(&mut rng, rows, cols, density);
            let view = CsrRef::new(rows, cols, &a.row_ptr, &a.col_idx, &a.values).unwrap();
            let x = unaligned(&mut rng, cols * ncols);
            let kept = a.row_ptr.windows(2).map(|w| (w[1] - w[0]) as usize).max().unwrap_or(0);
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; rows * ncols + 1];
                csr_spmm_on(isa, &view, &x, ncols, &mut y[1..]).unwrap();
                let what = format!("csr {isa} {rows}x{cols}x{ncols}");
                if ncols > 0 {
                    check(&y[1..], &a.dense, &x, (rows, cols, ncols), kept, &what);
                }
                assert!(y[0].is_nan(), "{what}: wrote before y");
            }
        }
    }
}

#[test]
fn csr_gathers_every_tail_length() {
    // One column: the gather path, stored values per row 0 .. 70 (whole 16- and 32-lane steps,
    // every masked tail), prime and larger-than-a-step row lengths.
    let mut rng = Rng(0x5eed_0002);
    let cols = 211;
    for nnz in 0..70 {
        let mut picked: Vec<u32> = (0..cols as u32).collect();
        for i in 0..nnz {
            picked.swap(i, i + rng.below(cols - i));
        }
        let col_idx = picked[..nnz].to_vec();
        let values = rng.vec(nnz);
        let mut dense = vec![0.0; cols];
        for (&c, &v) in col_idx.iter().zip(&values) {
            dense[c as usize] = v;
        }
        let row_ptr = [0, nnz as u32];
        let view = CsrRef::new(1, cols, &row_ptr, &col_idx, &values).unwrap();
        let x = unaligned(&mut rng, cols);
        for isa in Isa::available() {
            let mut y = [f32::NAN];
            csr_spmv_on(isa, &view, &x, &mut y).unwrap();
            check(&y, &dense, &x, (1, cols, 1), nnz, &format!("spmv {isa} nnz {nnz}"));
        }
    }
}

#[test]
fn two_four_every_tier_matches_float64() {
    let mut rng = Rng(0x5eed_0003);
    // cols % 8 == 0 (the x86 2:4 kernels: 1 to 3 trailing field bytes past the 4-byte steps,
    // depth blocks of 64, 128 and 256 crossed) and cols % 8 == 4 (the CSR row kernel fallback).
    let shapes = [
        (1, 8),
        (3, 16),
        (2, 24),
        (5, 40),
        (7, 56),
        (4, 72),
        (2, 136),
        (3, 264),
        (1, 520),
        (2, 4),
        (5, 12),
        (3, 100),
        (0, 8),
        (3, 0),
    ];
    for &ncols in NCOLS {
        for &(rows, cols) in &shapes {
            let (values, positions, dense) = random_2_4(&mut rng, rows, cols);
            let view = NmRef::new(rows, cols, 2, 4, &values, &positions).unwrap();
            let x = unaligned(&mut rng, cols * ncols);
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; rows * ncols];
                nm_spmm_on(isa, &view, &x, ncols, &mut y).unwrap();
                check(
                    &y,
                    &dense,
                    &x,
                    (rows, cols, ncols),
                    cols / 2,
                    &format!("2:4 {isa} {rows}x{cols}x{ncols}"),
                );
            }
        }
    }
}

#[test]
fn two_four_blocked_product_crosses_row_blocks() {
    // 263 rows: past one 256-row block and not a multiple of any tile height (3, 4, 6, 8).
    let mut rng = Rng(0x5eed_0004);
    let (rows, cols) = (263, 72);
    let (values, positions, dense) = random_2_4(&mut rng, rows, cols);
    let view = NmRef::new(rows, cols, 2, 4, &values, &positions).unwrap();
    for ncols in [1, 9, 16, 29, 67] {
        let x = unaligned(&mut rng, cols * ncols);
        for isa in Isa::available() {
            let mut y = vec![f32::NAN; rows * ncols];
            nm_spmm_on(isa, &view, &x, ncols, &mut y).unwrap();
            check(&y, &dense, &x, (rows, cols, ncols), cols / 2, &format!("2:4 {isa} {rows}x{cols}x{ncols}"));
        }
    }
}

#[test]
fn general_n_m_decodes_positions() {
    // 3:8 (3-bit positions across byte boundaries) and 1:3 (2 bits, not a power of two).
    let mut rng = Rng(0x5eed_0005);
    for &(n, m) in &[(3usize, 8usize), (1, 3), (4, 4)] {
        let (rows, groups, ncols) = (5, 7, 19);
        let cols = groups * m;
        let bits = nm_index_bits(m) as usize;
        let slots = rows * groups * n;
        let mut positions = vec![0u8; (slots * bits).div_ceil(8)];
        let values = rng.vec(slots);
        let mut dense = vec![0.0; rows * cols];
        for g in 0..rows * groups {
            let mut picked: Vec<usize> = (0..m).collect();
            for i in 0..n {
                picked.swap(i, i + rng.below(m - i));
            }
            for (s, &p) in picked[..n].iter().enumerate() {
                let slot = g * n + s;
                dense[g * m + p] = values[slot];
                for b in 0..bits {
                    if (p >> b) & 1 == 1 {
                        positions[(slot * bits + b) / 8] |= 1 << ((slot * bits + b) % 8);
                    }
                }
            }
        }
        let view = NmRef::new(rows, cols, n, m, &values, &positions).unwrap();
        let x = unaligned(&mut rng, cols * ncols);
        for isa in Isa::available() {
            let mut y = vec![f32::NAN; rows * ncols];
            nm_spmm_on(isa, &view, &x, ncols, &mut y).unwrap();
            check(&y, &dense, &x, (rows, cols, ncols), groups * n, &format!("{n}:{m} {isa}"));
        }
    }
}

#[test]
fn bad_arrays_are_errors_and_nothing_is_written() {
    let (vals, cols) = ([1.0f32, 2.0, 3.0], [0u32, 2, 1]);
    assert!(CsrRef::new(2, 3, &[0, 2, 3], &cols, &vals).is_ok());
    assert!(CsrRef::new(2, 3, &[0, 2], &cols, &vals).is_err(), "short row_ptr");
    assert!(CsrRef::new(2, 3, &[0, 2, 3, 3], &cols, &vals).is_err(), "long row_ptr");
    assert!(CsrRef::new(2, 3, &[1, 2, 3], &cols, &vals).is_err(), "first offset not 0");
    assert!(CsrRef::new(2, 3, &[0, 2, 2], &cols, &vals).is_err(), "last offset not nnz");
    assert!(CsrRef::new(2, 3, &[0, 4, 3], &cols, &vals).is_err(), "decreasing offsets");
    assert!(CsrRef::new(2, 2, &[0, 2, 3], &cols, &vals).is_err(), "column out of range");
    assert!(CsrRef::new(2, 3, &[0, 2, 3], &cols[..2], &vals).is_err(), "fewer indices than values");
    assert!(CsrRef::new(usize::MAX, 3, &[0], &[], &[]).is_err(), "rows + 1 overflows");
    assert!(CsrRef::new(0, 1 << 31, &[0], &[], &[]).is_err(), "columns past i32");
    assert!(CsrRef::new(0, 0, &[0], &[], &[]).is_ok());

    let (values, fields) = ([1.0f32, 2.0, 3.0, 4.0], [0b1101_0100u8]);
    assert!(NmRef::new(1, 8, 2, 4, &values, &fields).is_ok());
    assert!(NmRef::new(1, 8, 2, 4, &values[..3], &fields).is_err(), "short values");
    assert!(NmRef::new(1, 8, 2, 4, &values, &[]).is_err(), "short positions");
    assert!(NmRef::new(1, 8, 2, 4, &values, &[0, 0]).is_err(), "long positions");
    assert!(NmRef::new(1, 6, 2, 4, &values, &fields).is_err(), "cols not divisible by m");
    assert!(NmRef::new(1, 8, 5, 4, &values, &fields).is_err(), "n > m");
    assert!(NmRef::new(1, 8, 0, 0, &[], &[]).is_err(), "m = 0");
    assert!(NmRef::new(1, 512, 1, 512, &[0.0], &[0, 0]).is_err(), "m > 256");
    // 1:3 stores 2-bit positions, so 3 is representable and out of range.
    assert!(NmRef::new(1, 3, 1, 3, &[1.0], &[2]).is_ok());
    assert!(NmRef::new(1, 3, 1, 3, &[1.0], &[3]).is_err(), "position past the group");
    assert!(NmRef::new(usize::MAX, 4, 4, 4, &[], &[]).is_err(), "slot count overflows");

    let csr = CsrRef::new(2, 3, &[0, 2, 3], &cols, &vals).unwrap();
    let nm = NmRef::new(1, 8, 2, 4, &values, &fields).unwrap();
    for isa in Isa::available() {
        let mut y = [7.0f32; 4];
        assert!(csr_spmm_on(isa, &csr, &[1.0; 5], 2, &mut y).is_err(), "short x");
        assert!(csr_spmm_on(isa, &csr, &[1.0; 6], 2, &mut y[..3]).is_err(), "short y");
        assert!(nm_spmm_on(isa, &nm, &[1.0; 7], 1, &mut y[..1]).is_err(), "short x");
        assert!(nm_spmm_on(isa, &nm, &[1.0; 16], 2, &mut y[..3]).is_err(), "short y");
        assert_eq!(y, [7.0; 4], "{isa}: written on error");
    }
}

#[test]
fn sparse_beats_dense_on_follows_each_tiers_crossovers() {
    for isa in Isa::ALL.iter().copied() {
        let t = match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => &AVX512_CSR,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => &ZEN3_CSR,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon | Isa::Dotprod | Isa::I8mm => &ZEN3_CSR,
            Isa::Scalar => &ZEN3_CSR,
        };
        for (ncols, at) in [(1, t.one), (16, t.sixteen), (128, t.many)] {
            assert!(sparse_beats_dense_on(isa, SparseFormat::Csr, 1024, 1024, ncols, at), "{isa} {ncols}");
            assert!(
                !sparse_beats_dense_on(isa, SparseFormat::Csr, 1024, 1024, ncols, at - 0.05),
                "{isa} {ncols}"
            );
        }
        assert!(!sparse_beats_dense_on(isa, SparseFormat::Csr, 0, 1024, 16, 0.9));
        assert!(!sparse_beats_dense_on(isa, SparseFormat::Csr, 1024, 1024, 16, 1.5));
    }
}
