//! Truncated SVD: exact reconstruction at full rank, error falling with rank, the energy rule and
//! the break-even rule against matrices with known singular values.

use greenai::lowrank::{self, RankChoice};
use greenai::prune::criteria::SplitMix64;
use proptest::prelude::*;

#[test]
fn diagonal_matrix_has_its_sorted_absolute_diagonal_as_singular_values() {
    // diag(1, -4, 2, 3) padded to 4 x 6: singular values 4, 3, 2, 1.
    let mut w = vec![0.0f32; 24];
    for (i, d) in [1.0f32, -4.0, 2.0, 3.0].iter().enumerate() {
        w[i * 6 + i] = *d;
    }
    let f = lowrank::factorize(&w, 4, 6, RankChoice::Rank(2)).unwrap();
    for (s, e) in f.singular_values.iter().zip([4.0, 3.0, 2.0, 1.0]) {
        assert!((s - e).abs() < 1e-12);
    }
    // Error of the best rank-2 approximation: sqrt((2^2 + 1^2) / 30).
    assert!((f.relative_error - (5.0f64 / 30.0).sqrt()).abs() < 1e-6);
    // Energy: 16/30 < 0.6 <= 25/30, so rank 2; 1.0 needs all four.
    assert_eq!(lowrank::factorize(&w, 4, 6, RankChoice::Energy(0.6)).unwrap().rank, 2);
    assert_eq!(lowrank::factorize(&w, 4, 6, RankChoice::Energy(1.0)).unwrap().rank, 4);
    assert_eq!(lowrank::energy_rank(&[4.0, 3.0, 2.0, 1.0], 16.0 / 30.0).unwrap(), 1);
}

#[test]
fn break_even_rule() {
    assert_eq!(lowrank::break_even_rank(100, 100), 50.0);
    assert!(lowrank::is_worth_it(100, 100, 49));
    assert!(!lowrank::is_worth_it(100, 100, 50));
    assert!(!lowrank::is_worth_it(1, 1000, 1));
}

#[test]
fn bad_input_is_refused() {
    let w = [1.0f32, 2.0, 3.0, 4.0];
    assert!(lowrank::factorize(&w, 2, 2, RankChoice::Rank(3)).is_err());
    assert!(lowrank::factorize(&w, 2, 3, RankChoice::Rank(1)).is_err());
    assert!(lowrank::factorize(&w, 2, 2, RankChoice::Energy(0.0)).is_err());
    assert!(lowrank::factorize(&w, 2, 2, RankChoice::Energy(f64::NAN)).is_err());
    assert!(lowrank::factorize(&[1.0, f32::NAN, 0.0, 1.0], 2, 2, RankChoice::Rank(1)).is_err());
    assert!(lowrank::factorize(&[1.0, f32::INFINITY, 0.0, 1.0], 2, 2, RankChoice::Rank(1)).is_err());
    let empty = lowrank::factorize(&[], 0, 5, RankChoice::Energy(0.5)).unwrap();
    assert_eq!((empty.rank, empty.a.len(), empty.b.len()), (0, 0, 0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn full_rank_reconstructs_and_error_falls_with_rank(rows in 1usize..24, cols in 1usize..24, seed: u64) {
        let mut rng = SplitMix64::new(seed);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.below(2_000_001) as f32 / 1e6 - 1.0).collect();
        let full = rows.min(cols);
        let mut last = f64::INFINITY;
        for r in 0..=full {
            let f = lowrank::factorize(&w, rows, cols, RankChoice::Rank(r)).unwrap();
            prop_assert_eq!((f.a.len(), f.b.len()), (rows * r, r * cols));
            // Eckart-Young: the error is the tail energy of the singular values.
            let total: f64 = f.singular_values.iter().map(|s| s * s).sum();
            let tail: f64 = f.singular_values[r..].iter().map(|s| s * s).sum();
            prop_assert!((f.relative_error - (tail / total).sqrt()).abs() < 1e-5);
            prop_assert!(f.relative_error <= last + 1e-6);
            last = f.relative_error;
        }
        prop_assert!(last < 1e-5, "full rank error {}", last);
    }
}
