//! Dense counts, compression settings, and the cost a compression setting turns a count into.

use crate::{Error, Result};
use std::fmt;

/// Multiplies counts, failing with [`Error::Overflow`] instead of wrapping.
pub(crate) fn prod(xs: impl IntoIterator<Item = u64>) -> Result<u64> {
    xs.into_iter().try_fold(1u64, |acc, x| {
        acc.checked_mul(x)
            .ok_or_else(|| Error::Overflow { context: "flops", detail: "count exceeds u64".into() })
    })
}

/// Adds counts, failing with [`Error::Overflow`] instead of wrapping.
pub(crate) fn sum(xs: impl IntoIterator<Item = u64>) -> Result<u64> {
    xs.into_iter().try_fold(0u64, |acc, x| {
        acc.checked_add(x)
            .ok_or_else(|| Error::Overflow { context: "flops", detail: "count exceeds u64".into() })
    })
}

/// A weight matrix (`rows x cols`) applied `uses` times (tokens, output pixels), `copies` times over
/// (convolution groups). Its MACs are `copies * uses * rows * cols`; compression acts on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct WeightMatrix {
    /// Output side.
    pub rows: u64,
    /// Input side (reduction length).
    pub cols: u64,
    /// Independent copies (groups).
    pub copies: u64,
    /// Times each copy is applied per inference.
    pub uses: u64,
    /// Whether the weights belong to another layer (tied): MACs count, params and bytes do not.
    pub shared: bool,
}

/// What a layer does, uncompressed: the raw material of a [`Cost`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Count {
    /// Weight matrices (convolutions, linear layers, attention projections).
    pub matrices: Vec<WeightMatrix>,
    /// MACs between two activations (attention scores, `MatMul`); compression of weights does not touch them.
    pub act_macs: u64,
    /// FLOPs that are not multiply-accumulates (bias, activations, norms, softmax, pooling, adds).
    pub other_flops: u64,
    /// Biases and normalisation scales/shifts.
    pub small_params: u64,
    /// Lookup tables (embeddings, class token): stored whole, read only row by row.
    pub table_params: u64,
    /// Table rows read per inference.
    pub table_rows_read: u64,
    /// Width of a table row.
    pub table_row_width: u64,
    /// Activation elements read (inputs).
    pub elems_read: u64,
    /// Activation elements written (output).
    pub elems_written: u64,
    /// Replaces the inputs' size as elements read (gathers, selections).
    pub elems_read_override: Option<u64>,
    /// A view: no data moves.
    pub view: bool,
    /// "Not counted" notes and stated assumptions.
    pub notes: Vec<String>,
}

/// Storage and arithmetic precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Precision {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
    /// 8-bit integer.
    Int8,
    /// 4-bit integer.
    Int4,
}

impl Precision {
    /// Bits per element.
    pub const fn bits(self) -> u64 {
        match self {
            Precision::F32 => 32,
            Precision::F16 | Precision::BF16 => 16,
            Precision::Int8 => 8,
            Precision::Int4 => 4,
        }
    }

    /// Whether it is an integer format.
    pub const fn is_int(self) -> bool {
        matches!(self, Precision::Int8 | Precision::Int4)
    }

    /// Parses `f32`, `f16`, `bf16`, `int8`/`i8`, `int4`/`i4`.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Precision::F32,
            "f16" | "fp16" | "float16" => Precision::F16,
            "bf16" | "bfloat16" => Precision::BF16,
            "int8" | "i8" => Precision::Int8,
            "int4" | "i4" => Precision::Int4,
            _ => return Err(Error::invalid("dtype", s, "expected f32, f16, bf16, int8 or int4")),
        })
    }

    /// The lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::BF16 => "bf16",
            Precision::Int8 => "int8",
            Precision::Int4 => "int4",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Sparsity of the weight matrices.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Sparsity {
    /// Every weight stored and used.
    Dense,
    /// A fraction in `[0, 1)` of weights is zero, anywhere; stored as values plus a 1-bit mask.
    Unstructured(f64),
    /// `n` of every `m` consecutive weights kept; each kept value carries `ceil(log2 m)` index bits.
    NM {
        /// Kept per group.
        n: u32,
        /// Group size.
        m: u32,
    },
}

impl Sparsity {
    /// Fraction of weights kept.
    pub fn density(self) -> f64 {
        match self {
            Sparsity::Dense => 1.0,
            Sparsity::Unstructured(s) => 1.0 - s,
            Sparsity::NM { n, m } => n as f64 / m as f64,
        }
    }

    fn check(self) -> Result<()> {
        match self {
            Sparsity::Unstructured(s) if !(0.0..1.0).contains(&s) => {
                Err(Error::invalid("sparsity", s, "must be in [0, 1)"))
            }
            Sparsity::NM { n, m } if n == 0 || m == 0 || n > m => {
                Err(Error::invalid("sparsity", format!("{n}:{m}"), "N:M needs 0 < N <= M"))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Sparsity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Sparsity::Dense => f.write_str("dense"),
            Sparsity::Unstructured(s) => write!(f, "{:.1}% sparse", s * 100.0),
            Sparsity::NM { n, m } => write!(f, "{n}:{m} sparse"),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} weights, {} activations, {}", self.weights, self.activations, self.sparsity)?;
        match self.rank {
            Some(r) => write!(f, ", rank {r}"),
            None => Ok(()),
        }
    }
}

/// How a layer is stored and run: weight and activation precision, sparsity, low rank.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Compression {
    /// Precision of stored weights (and of the multiply-accumulates).
    pub weights: Precision,
    /// Precision of activations moved between layers.
    pub activations: Precision,
    /// Sparsity of weight matrices.
    pub sparsity: Sparsity,
    /// Rank `r` of a low-rank factorisation `W ~ U V` (`rows x r` times `r x cols`) of every weight matrix
    /// whose rank exceeds `r`.
    pub rank: Option<u64>,
}

impl Default for Compression {
    fn default() -> Self {
        Compression::dense(Precision::F32)
    }
}

impl Compression {
    /// Dense weights and activations of one precision (int4 weights run with int8 activations).
    pub fn dense(p: Precision) -> Self {
        let activations = if p == Precision::Int4 { Precision::Int8 } else { p };
        Compression { weights: p, activations, sparsity: Sparsity::Dense, rank: None }
    }

    /// The same with a sparsity.
    pub fn with_sparsity(mut self, s: Sparsity) -> Self {
        self.sparsity = s;
        self
    }

    /// The same with a low-rank factorisation.
    pub fn with_rank(mut self, r: u64) -> Self {
        self.rank = Some(r);
        self
    }

    /// Checks the settings.
    pub fn check(&self) -> Result<()> {
        self.sparsity.check()?;
        if self.rank == Some(0) {
            return Err(Error::invalid("rank", 0, "must be positive"));
        }
        Ok(())
    }
}

/// What one layer (or a whole model) costs per inference under a [`Compression`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Cost {
    /// Multiply-accumulates actually executed (sparsity removes the skipped ones, low rank shrinks them).
    pub macs: u64,
    /// Floating-point (or integer) operations: `2 * macs` plus every non-MAC operation.
    pub flops: u64,
    /// Parameters stored (nonzero ones under sparsity; tied weights counted once).
    pub params: u64,
    /// Bytes the weights occupy, with sparse index overhead.
    pub weight_bytes: u64,
    /// Bytes of weights read per inference (tables only read the rows used).
    pub weight_read_bytes: u64,
    /// Activation bytes read.
    pub act_read_bytes: u64,
    /// Activation bytes written.
    pub act_written_bytes: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.macs = self.macs.saturating_add(o.macs);
        self.flops = self.flops.saturating_add(o.flops);
        self.params = self.params.saturating_add(o.params);
        self.weight_bytes = self.weight_bytes.saturating_add(o.weight_bytes);
        self.weight_read_bytes = self.weight_read_bytes.saturating_add(o.weight_read_bytes);
        self.act_read_bytes = self.act_read_bytes.saturating_add(o.act_read_bytes);
        self.act_written_bytes = self.act_written_bytes.saturating_add(o.act_written_bytes);
    }
}

fn bits_to_bytes(bits: f64) -> u64 {
    (bits / 8.0).ceil() as u64
}

impl Count {
    /// The dense f32 cost.
    pub fn dense_cost(&self) -> Result<Cost> {
        self.cost(&Compression::default()).map(|(c, _)| c)
    }

    /// The cost under `comp`, with notes on what the compression did not apply to.
    pub fn cost(&self, comp: &Compression) -> Result<(Cost, Vec<String>)> {
        comp.check()?;
        let mut notes = Vec::new();
        let density = comp.sparsity.density();
        let wbits = comp.weights.bits() as f64;
        // Bits of the position index stored with each kept weight of an N:M pattern.
        let nm_index_bits = match comp.sparsity {
            Sparsity::NM { m, .. } => f64::from(m.next_power_of_two().trailing_zeros()),
            _ => 0.0,
        };
        let (mut macs, mut params, mut wbytes) = (0f64, 0u64, 0f64);
        for m in &self.matrices {
            let dense_macs = prod([m.copies, m.uses, m.rows, m.cols])? as f64;
            let dense_entries = prod([m.rows, m.cols])? as f64;
            let (mut entries, mut mac_per_use) = (dense_entries, dense_entries);
            if let Some(r) = comp.rank {
                let lr = r as f64 * (m.rows as f64 + m.cols as f64);
                if r < m.rows.min(m.cols) && lr < entries {
                    entries = lr;
                    mac_per_use = lr;
                } else {
                    notes.push(format!(
                        "rank {r} not applied to a {}x{} matrix: no saving (break-even rank {})",
                        m.rows,
                        m.cols,
                        u128::from(m.rows) * u128::from(m.cols) / (u128::from(m.rows) + u128::from(m.cols))
                    ));
                }
            }
            let scale = mac_per_use / dense_entries;
            macs += dense_macs * scale * density;
            if m.shared {
                continue;
            }
            let stored = entries * m.copies as f64;
            let kept = (stored * density).round();
            params = sum([params, kept as u64])?;
            wbytes += match comp.sparsity {
                Sparsity::Dense => stored * wbits,
                Sparsity::Unstructured(_) => kept * wbits + stored,
                Sparsity::NM { .. } => kept * (wbits + nm_index_bits),
            };
        }
        let wbytes = bits_to_bytes(wbytes);
        // Biases and norm parameters stay f32 next to integer weights; tables take the weight precision.
        let small_bits = if comp.weights.is_int() { 32 } else { comp.weights.bits() };
        let small_bytes = prod([self.small_params, small_bits])? / 8;
        let table_bytes = bits_to_bytes(prod([self.table_params, comp.weights.bits()])? as f64);
        let table_read =
            bits_to_bytes(prod([self.table_rows_read, self.table_row_width, comp.weights.bits()])? as f64)
                .min(table_bytes);
        if macs.round() >= u64::MAX as f64 {
            return Err(Error::Overflow { context: "flops", detail: "count exceeds u64".into() });
        }
        let macs = sum([macs.round() as u64, self.act_macs])?;
        let abits = comp.activations.bits() as f64;
        let cost = Cost {
            macs,
            flops: macs.saturating_mul(2).saturating_add(self.other_flops),
            params: sum([params, self.small_params, self.table_params])?,
            weight_bytes: sum([wbytes, small_bytes, table_bytes])?,
            weight_read_bytes: sum([wbytes, small_bytes, table_read])?,
            act_read_bytes: bits_to_bytes(self.elems_read as f64 * abits),
            act_written_bytes: bits_to_bytes(self.elems_written as f64 * abits),
        };
        Ok((cost, notes))
    }
}
