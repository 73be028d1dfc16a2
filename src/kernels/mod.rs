//! SIMD kernels behind safe slice APIs, with one cached choice of instruction-set tier.
//!
//! Each kernel family has a scalar reference (the definition) and a path per tier: AVX2+FMA+F16C
//! and AVX-512 (F, BW, VL, DQ, VNNI; BF16 where present) on x86-64, NEON, dotprod and i8mm on
//! aarch64. The safe functions check their arguments and call the tier chosen once per process by
//! [`Isa::active`]; `GREENAI_ISA=scalar|avx2|avx512|neon|dotprod|i8mm` forces a tier (one the
//! machine lacks gives the highest tier below it). Functions ending in `_on` take an explicit
//! [`Isa`], so tests and benchmarks can compare tiers in one process.

/// `$acc.s[j] += sum_u $a.b[4j + u] * $b.b[4j + u]` over 16 i8 lanes with NEON's
/// `smull`/`smlal2` (i16 pair sums: the caller keeps them in range) and `sadalp`. Used inside an
/// `unsafe` block of a NEON function (the aarch64 ggml and int4 kernels).
#[cfg(target_arch = "aarch64")]
macro_rules! dot16_neon {
    ($acc:expr, $a:expr, $b:expr) => {{
        use core::arch::aarch64::{vget_low_s8, vmlal_high_s8, vmull_s8, vpadalq_s16};
        let (a, b) = ($a, $b);
        let pairs = vmlal_high_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), a, b);
        $acc = vpadalq_s16($acc, pairs);
    }};
}

/// The same sums with `sdot`, through `asm!` (its intrinsic is unstable in Rust 1.95). Used inside
/// an `unsafe` block of a function with the dotprod feature.
#[cfg(target_arch = "aarch64")]
macro_rules! dot16_sdot {
    ($acc:expr, $a:expr, $b:expr) => {
        core::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) $acc,
            a = in(vreg) $a,
            b = in(vreg) $b,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
}

pub mod convert;
pub mod gemm_bf16;
pub mod gemm_float;
pub mod gemm_int8;
pub mod ggml;
pub mod int4;
pub mod math;
pub mod sparse;
#[cfg(test)]
pub(crate) mod test_rng;

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

/// An instruction-set tier of the kernels. Only the current architecture's tiers exist, so every
/// dispatch `match` names each tier (no wildcard arm can send a new tier somewhere silently).
///
/// The tiers of an architecture are ordered, each a superset of the one below (`scalar < avx2 <
/// avx512` on x86-64, `scalar < neon < dotprod < i8mm` on aarch64), which [`PartialOrd`] states:
/// `isa >= Isa::Avx2` holds on every tier that can run AVX2 code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust: the reference every other tier is tested against.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// x86-64 with AVX-512 F, BW, VL, DQ and VNNI (and the AVX2 tier's features); the BF16
    /// instructions are a capability of this tier ([`Isa::has_bf16`]).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// aarch64 with NEON (Advanced SIMD, always present on aarch64).
    #[cfg(target_arch = "aarch64")]
    Neon,
    /// aarch64 NEON with the dot-product instructions (`sdot`, `udot`).
    #[cfg(target_arch = "aarch64")]
    Dotprod,
    /// aarch64 NEON with dotprod and the int8 matrix multiply (`smmla`, `usmmla`, `usdot`).
    #[cfg(target_arch = "aarch64")]
    I8mm,
}

impl Isa {
    /// Every tier of this architecture, lowest first.
    pub const ALL: &'static [Isa] = &[
        Isa::Scalar,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon,
        #[cfg(target_arch = "aarch64")]
        Isa::Dotprod,
        #[cfg(target_arch = "aarch64")]
        Isa::I8mm,
    ];

    /// The names `GREENAI_ISA` takes, on any architecture.
    pub const NAMES: &'static [&'static str] = &["scalar", "avx2", "avx512", "neon", "dotprod", "i8mm"];

    /// Whether this machine can run the tier (the CPU features are detected at run time; std
    /// caches them).
    pub fn is_available(self) -> bool {
        #[cfg(target_arch = "aarch64")]
        use std::arch::is_aarch64_feature_detected as has;
        #[cfg(target_arch = "x86_64")]
        use std::arch::is_x86_feature_detected as has;
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => has!("avx2") && has!("fma") && has!("f16c"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.is_available()
                    && has!("avx512f")
                    && has!("avx512bw")
                    && has!("avx512vl")
                    && has!("avx512dq")
                    && has!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => has!("neon"),
            #[cfg(target_arch = "aarch64")]
            Isa::Dotprod => Isa::Neon.is_available() && has!("dotprod"),
            #[cfg(target_arch = "aarch64")]
            Isa::I8mm => Isa::Dotprod.is_available() && has!("i8mm"),
        }
    }

    /// Whether the tier can run the AVX-512 BF16 instructions (`vdpbf16ps`, `vcvtne2ps2bf16`).
    pub fn has_bf16(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => self.is_available() && std::arch::is_x86_feature_detected!("avx512bf16"),
            _ => false,
        }
    }

    /// The highest tier this machine has.
    pub fn best() -> Isa {
        Isa::ALL.iter().rev().copied().find(|isa| isa.is_available()).unwrap_or(Isa::Scalar)
    }

    /// Every tier this machine can run, the reference first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.iter().copied().filter(|isa| isa.is_available()).collect()
    }

    /// The tier the safe kernel functions use, decided once per process: `GREENAI_ISA` if it names
    /// a tier this machine has, else the highest tier below the one named, else [`Isa::best`].
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| Isa::from_request(std::env::var("GREENAI_ISA").ok().as_deref()))
    }

    /// The tier a `GREENAI_ISA` value selects (see [`Isa::active`]).
    pub fn from_request(request: Option<&str>) -> Isa {
        match request.map(str::parse::<Isa>) {
            Some(Ok(wanted)) => {
                Isa::available().into_iter().rev().find(|&isa| isa <= wanted).unwrap_or(Isa::Scalar)
            }
            _ => Isa::best(),
        }
    }

    /// Fails unless the machine can run this tier; the `_on` kernel functions call it first.
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
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => "neon",
            #[cfg(target_arch = "aarch64")]
            Isa::Dotprod => "dotprod",
            #[cfg(target_arch = "aarch64")]
            Isa::I8mm => "i8mm",
        }
    }
}

impl std::str::FromStr for Isa {
    type Err = Error;

    /// A tier of this architecture by name; a known tier of another architecture is an error too.
    fn from_str(s: &str) -> Result<Self> {
        let name = s.trim().to_ascii_lowercase();
        match Isa::ALL.iter().find(|isa| isa.name() == name) {
            Some(&isa) => Ok(isa),
            None if Isa::NAMES.contains(&name.as_str()) => {
                Err(Error::invalid("isa", name, "a tier of another architecture"))
            }
            None => Err(Error::invalid("isa", name, format!("expected one of {}", Isa::NAMES.join(", ")))),
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Bytes ahead of a weight stream that the 4-bit and ggml dot products prefetch: enough to hide DRAM
/// latency behind the work on the bytes in between (Q4_0 GEMV 4096 x 11008 from DRAM, one thread:
/// 5.1 GiB/s without, 13.1 GiB/s with).
#[cfg(target_arch = "x86_64")]
pub(crate) const PREFETCH_BYTES: usize = 1024;

/// Prefetches the cache lines of the `len` bytes that lie [`PREFETCH_BYTES`] past `at`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_stream<T>(at: *const T, len: usize) {
    use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let ahead = at.cast::<i8>().wrapping_add(PREFETCH_BYTES);
    for line in (0..len).step_by(64) {
        // SAFETY: a prefetch never faults, whatever the address; SSE is in x86-64's baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line)) };
    }
}

/// Whether the CPU is AMD's (CPUID vendor "AuthenticAMD"), read once: a few kernel choices and
/// blocking constants were measured apart on AMD Zen 4 and on Intel Xeons.
#[cfg(target_arch = "x86_64")]
pub(crate) fn is_amd() -> bool {
    static AMD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AMD.get_or_init(|| {
        let vendor = core::arch::x86_64::__cpuid(0);
        (vendor.ebx, vendor.edx, vendor.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163)
    })
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
        assert_eq!(Isa::best(), *Isa::available().last().unwrap());
    }

    #[test]
    fn names_parse_back_and_other_architectures_are_refused() {
        for &isa in Isa::ALL {
            assert_eq!(isa.name().parse::<Isa>().unwrap(), isa);
            assert!(Isa::NAMES.contains(&isa.name()));
        }
        assert!("sse9".parse::<Isa>().is_err());
        let foreign = Isa::NAMES.iter().filter(|n| !Isa::ALL.iter().any(|i| i.name() == **n)).count();
        assert_eq!(foreign, Isa::NAMES.len() - Isa::ALL.len());
        for name in Isa::NAMES.iter().filter(|n| !Isa::ALL.iter().any(|i| i.name() == **n)) {
            assert!(name.parse::<Isa>().is_err(), "{name}");
        }
    }

    #[test]
    fn tiers_are_ordered_and_available_tiers_include_every_lower_one() {
        assert!(Isa::ALL.windows(2).all(|w| w[0] < w[1]));
        for &isa in &Isa::available() {
            assert!(Isa::ALL.iter().filter(|&&lower| lower <= isa).all(|t| t.is_available()), "{isa}");
        }
    }

    #[test]
    fn a_request_picks_the_highest_available_tier_not_above_it() {
        assert_eq!(Isa::from_request(None), Isa::best());
        assert_eq!(Isa::from_request(Some("no-such-tier")), Isa::best());
        for &wanted in Isa::ALL {
            let got = Isa::from_request(Some(wanted.name()));
            assert!(got <= wanted && got.is_available());
            if wanted.is_available() {
                assert_eq!(got, wanted);
            }
        }
    }
}
