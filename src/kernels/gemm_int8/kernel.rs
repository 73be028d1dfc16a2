//! The int8 GEMM kernel of each tier: one exhaustive type that owns its tile shape, the B layout
//! it reads, the A layouts it packs, and whether its fastest sequence needs the 7-bit condition.
//!
//! A [`Kernel`] is made only by [`Kernel::new`], which fails unless the machine has the tier's
//! features; the SIMD variants carry a zero-sized token that only detection creates, so holding
//! a kernel is the proof the intrinsics may run. A [`PackedI8`](super::PackedI8) records the
//! [`BLayout`] it was packed in, and [`Kernel::check_reads`] refuses (an error value, never a
//! misread) a handle whose layout the kernel does not read.

use super::blocking::{KU, MR, NR};
use super::PackedI8;
use crate::kernels::Isa;
use crate::{Error, Result};

/// How a [`PackedI8`] lays out B.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BLayout {
    /// Panels of 16 columns; inside a panel, k in quads of four, each quad one 64-byte
    /// [`Quad`](super::pack::Quad) (column-major within the quad). Every kernel of this build
    /// reads it: the AVX2 narrow kernel directly, the exact AVX2 kernels widening it in registers
    /// or per cache block, the NEON kernels with `smull` (or `sdot`).
    Quad16x4,
    /// A layout no kernel reads, so that the refusal can be tested (test builds only).
    #[cfg(test)]
    Unread,
}

impl std::fmt::Display for BLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BLayout::Quad16x4 => "quad16x4",
            #[cfg(test)]
            BLayout::Unread => "unread",
        })
    }
}

/// The A panel layouts a kernel multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ALayout {
    /// Row panels of `mr` rows, four u8 per row per quad.
    Narrow,
    /// As `Narrow` widened to i16, `[a0, a2, a1, a3]` per row per quad (AVX2's exact kernels).
    Wide,
}

/// Proof that NEON is present (made only by [`Kernel::new`] after detection), with the dot
/// instructions the tier adds: all three kernels read the same narrow panels and `Quad`s.
#[cfg(target_arch = "aarch64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NeonToken {
    /// Plain NEON: `smull` products folded by pairwise adds.
    Smull,
    /// `sdot` (A shifted to i8 and corrected), for the `dotprod` tier.
    Sdot,
    /// `usmmla` (and `sudot` for the fifth row), for the `i8mm` tier.
    Usmmla,
}

/// The tiers' kernels; the SIMD ones hold their feature token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    /// Portable Rust over the narrow panels (exact for every input).
    Scalar,
    /// AVX2: a narrow `vpmaddubsw` kernel (exact under the 7-bit condition), and exact widened
    /// `vpmaddwd` kernels over B as packed or over B sign-extended per cache block; plus the
    /// small-m kernel that streams row-major B without packing it.
    #[cfg(target_arch = "x86_64")]
    Avx2(super::x86::Avx2),
    /// AVX-512 VNNI: `vpdpbusd` kernels, exact for every input, over the narrow panels (two B
    /// panels per tile) and streaming row-major B for small m.
    #[cfg(target_arch = "x86_64")]
    Avx512(super::x86_512::Avx512),
    /// NEON: one exact `smull` kernel over the narrow panels, full tiles only.
    #[cfg(target_arch = "aarch64")]
    Neon(NeonToken),
}

/// The int8 GEMM kernel of one tier (see the module notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel {
    pub(crate) tier: Tier,
}

impl Kernel {
    /// The kernel of `isa`; fails when the machine lacks the tier.
    pub fn new(isa: Isa) -> Result<Kernel> {
        isa.ensure_available()?;
        let tier = match isa {
            Isa::Scalar => Tier::Scalar,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Tier::Avx2(
                super::x86::Avx2::detect().ok_or_else(|| Error::invalid("isa", isa, "AVX2 not detected"))?,
            ),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Tier::Avx512(
                super::x86_512::Avx512::detect()
                    .ok_or_else(|| Error::invalid("isa", isa, "AVX-512 VNNI not detected"))?,
            ),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Tier::Neon(NeonToken::Smull),
            #[cfg(target_arch = "aarch64")]
            Isa::Dotprod => Tier::Neon(NeonToken::Sdot),
            #[cfg(target_arch = "aarch64")]
            Isa::I8mm => Tier::Neon(NeonToken::Usmmla),
        };
        Ok(Kernel { tier })
    }

    /// The kernel's name (as in a message).
    pub const fn name(self) -> &'static str {
        match self.tier {
            Tier::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2(_) => "avx2",
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512(_) => "avx512",
            #[cfg(target_arch = "aarch64")]
            Tier::Neon(NeonToken::Smull) => "neon",
            #[cfg(target_arch = "aarch64")]
            Tier::Neon(NeonToken::Sdot) => "dotprod",
            #[cfg(target_arch = "aarch64")]
            Tier::Neon(NeonToken::Usmmla) => "i8mm",
        }
    }

    /// Rows of C per register tile (A row panel height).
    pub const fn mr(self) -> usize {
        match self.tier {
            Tier::Scalar => MR,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2(_) | Tier::Avx512(_) => MR,
            #[cfg(target_arch = "aarch64")]
            Tier::Neon(_) => MR,
        }
    }

    /// Columns of C per B panel (the register tile spans [`Kernel::panels_per_tile`] of them).
    pub const fn nr(self) -> usize {
        match self.tier {
            Tier::Scalar => NR,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2(_) | Tier::Avx512(_) => NR,
            #[cfg(target_arch = "aarch64")]
            Tier::Neon(_) => NR,
        }
    }

    /// Whether the narrow kernel can start its accumulators from a per-column bias (the i8 A
    /// correction is then folded in, not a pass over C).
    pub const fn starts_from_bias(self) -> bool {
        match self.tier {
            Tier::Scalar => false,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2(_) => false,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512(_) => true,
            #[cfg(target_arch = "aarch64")]
            Tier::Neon(_) => false,
        }
    }

    /// B panels one register tile spans (AVX-512: four, so each A broadcast feeds four products).
    pub const fn panels_per_tile(self) -> usize {
        match self.tier {
            Tier::Scalar => 1,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2(_) => 1,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512(_) => super::blocking::PANELS_VNNI,
            #[cfg(target_arch = "aarch64")]
            Tier::Neon(_) => 1,
        }
    }

    /// Depth step: k values per quad of the B layout.
    pub const fn ku(self) -> usize {
        match self.tier {
            Tier::Scalar => KU,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2(_) | Tier::Avx512(_) => KU,
            #[cfg(target_arch = "aarch64")]
            Tier::Neon(_) => KU,
        }
    }

    /// The B layout the kernel reads (and [`PackedI8::pack`] makes).
    pub const fn b_layout(self) -> BLayout {
        match self.tier {
            Tier::Scalar => BLayout::Quad16x4,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2(_) | Tier::Avx512(_) => BLayout::Quad16x4,
            #[cfg(target_arch = "aarch64")]
            Tier::Neon(_) => BLayout::Quad16x4,
        }
    }

    /// The A layouts the kernel packs and multiplies.
    pub const fn a_layouts(self) -> &'static [ALayout] {
        match self.tier {
            Tier::Scalar => &[ALayout::Narrow],
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2(_) => &[ALayout::Narrow, ALayout::Wide],
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512(_) => &[ALayout::Narrow],
            #[cfg(target_arch = "aarch64")]
            Tier::Neon(_) => &[ALayout::Narrow],
        }
    }

    /// Whether the narrow kernel is exact only when no i16 pair sum `a0 b0 + a1 b1` can saturate
    /// (B in [-64, 63] or A <= 127, checked per product and cache block): true for AVX2's
    /// `vpmaddubsw`; the other full-range inputs take its exact wide kernels.
    pub const fn narrow_needs_seven_bit(self) -> bool {
        match self.tier {
            Tier::Scalar => false,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2(_) => true,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512(_) => false,
            #[cfg(target_arch = "aarch64")]
            Tier::Neon(_) => false,
        }
    }

    /// Up to how many rows of A the unpacked API streams row-major B through the kernel instead
    /// of packing it (0: always packs). Measured crossovers: AVX2 `blocking::STREAM_MAX_ROWS`;
    /// AVX-512 `STREAM_MAX_ROWS_VNNI` (Intel) and `STREAM_MAX_ROWS_VNNI_AMD` (AMD Zen 4).
    pub fn stream_max_rows(self) -> usize {
        match self.tier {
            Tier::Scalar => super::blocking::STREAM_MAX_ROWS,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2(_) => super::blocking::STREAM_MAX_ROWS,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512(_) if crate::kernels::is_amd() => super::blocking::STREAM_MAX_ROWS_VNNI_AMD,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512(_) => super::blocking::STREAM_MAX_ROWS_VNNI,
            #[cfg(target_arch = "aarch64")]
            Tier::Neon(_) => 0,
        }
    }

    /// Fails (an invalid-argument error) unless the kernel reads the layout `packed` was made in.
    pub fn check_reads(self, packed: &PackedI8) -> Result<()> {
        if packed.layout() == self.b_layout() {
            return Ok(());
        }
        Err(Error::invalid(
            "packed",
            packed.layout(),
            format!(
                "B was packed in a layout the {} kernel does not read ({})",
                self.name(),
                self.b_layout()
            ),
        ))
    }
}
