//! SIMD kernels behind safe slice APIs, with one cached choice of instruction set.
//!
//! Each kernel family has a scalar reference (the definition), an AVX2+FMA+F16C path for x86-64
//! and a NEON path for aarch64. The safe functions check their arguments and call the path chosen
//! once per process by [`Isa::active`]; `GREENAI_ISA=scalar|avx2|neon` forces a path (a forced
//! path the machine lacks falls back to the best one it has). Functions ending in `_on` take an
//! explicit [`Isa`], so tests and benchmarks can compare paths in one process.

pub mod convert;
pub mod gemm_float;
pub mod gemm_int8;
pub mod math;
pub mod sparse;

use crate::{Error, Result};
use std::sync::OnceLock;

/// Asks for the lines of a `rows x cols` tile of a matrix with leading dimension `ld` (elements),
/// at the start of a microkernel: the rows of an output tile lie a leading dimension apart and,
/// for products of megabytes, miss at the tile's final loads and stores. A prefetch never faults,
/// so any address may be given.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_tile<T>(tile: *const T, rows: usize, ld: usize, cols: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for r in 0..rows {
        let row = tile.wrapping_add(r * ld);
        // SAFETY: SSE is part of every x86_64 target, and a prefetch reads nothing architecturally.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(row.cast());
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(cols.saturating_sub(1)).cast());
        }
    }
}

/// An instruction-set path of the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust: the reference every other path is tested against.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    Avx2,
    /// aarch64 with NEON (Advanced SIMD, always present on aarch64).
    Neon,
}

impl Isa {
    /// Whether this machine can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The fastest path this machine has.
    pub fn best() -> Isa {
        [Isa::Avx2, Isa::Neon].into_iter().find(|isa| isa.is_available()).unwrap_or(Isa::Scalar)
    }

    /// Every path this machine can run, the reference first.
    pub fn available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Neon].into_iter().filter(|isa| isa.is_available()).collect()
    }

    /// The path the safe kernel functions use: `GREENAI_ISA` if set and available, else [`Isa::best`].
    /// Decided once per process.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            std::env::var("GREENAI_ISA")
                .ok()
                .and_then(|name| name.parse::<Isa>().ok())
                .filter(|isa| isa.is_available())
                .unwrap_or_else(Isa::best)
        })
    }

    /// Fails unless the machine can run this path; the `_on` kernel functions call it first.
    pub fn ensure_available(self) -> Result<()> {
        if self.is_available() {
            Ok(())
        } else {
            Err(Error::invalid("isa", self.name(), "not available on this machine"))
        }
    }

    /// The lower-case name, as `GREENAI_ISA` takes it.
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Neon => "neon",
        }
    }
}

impl std::str::FromStr for Isa {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Ok(Isa::Scalar),
            "avx2" => Ok(Isa::Avx2),
            "neon" => Ok(Isa::Neon),
            other => Err(Error::invalid("isa", other, "expected scalar, avx2 or neon")),
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_is_always_available_and_listed_first() {
        assert!(Isa::Scalar.is_available());
        assert_eq!(Isa::available()[0], Isa::Scalar);
        assert!(Isa::active().is_available());
        assert!(Isa::available().contains(&Isa::best()));
    }

    #[test]
    fn names_parse_back() {
        for isa in [Isa::Scalar, Isa::Avx2, Isa::Neon] {
            assert_eq!(isa.name().parse::<Isa>().unwrap(), isa);
        }
        assert!("sse9".parse::<Isa>().is_err());
    }
}
