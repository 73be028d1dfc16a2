//! Models: named layers chained (with residual branches), shapes inferred as they are added, and the
//! per-layer report.

use super::count::{Compression, Cost};
use super::layer::Layer;
use crate::{Error, Result};
use std::collections::HashMap;
use std::fmt::{self, Write as _};

/// One layer of a [`Model`]: its name, what it is, where its inputs come from, and its output shape.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Node {
    /// Unique name (`"layer1.0.conv1"`).
    pub name: String,
    /// The layer.
    pub layer: Layer,
    /// Names of the nodes it reads (`"input"` is the model input).
    pub inputs: Vec<String>,
    /// Inferred output shape.
    pub output: Vec<usize>,
}

/// A model under construction and, once built, under evaluation. Shapes are checked as layers are added,
/// so a layer that does not fit is reported by name at once.
///
/// ```
/// use greenai::flops::{Conv, Layer, Model, Linear, Activation, Compression};
/// let mut m = Model::new("tiny", &[1, 3, 8, 8])?;
/// m.add("conv", Layer::Conv(Conv::d2(3, 4, 3).padding(1)))?
///     .add("relu", Layer::Activation(Activation::Relu))?;
/// let skip = m.last().to_string();
/// m.add("conv2", Layer::Conv(Conv::d2(4, 4, 3).padding(1)))?
///     .add_from("residual", Layer::Add, &[&skip, "conv2"])?
///     .add("flatten", Layer::Flatten { start_dim: 1 })?
///     .add("fc", Layer::Linear(Linear::new(256, 10)))?;
/// let report = m.report(&Compression::default())?;
/// assert_eq!(report.total.macs, 64 * 4 * 27 + 64 * 4 * 36 + 256 * 10);
/// # Ok::<(), greenai::Error>(())
/// ```
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Model {
    /// The model's name.
    pub name: String,
    /// Input shape, batch first.
    pub input: Vec<usize>,
    /// Layers in execution order.
    pub nodes: Vec<Node>,
    /// Position in `nodes` of the last node of each name, so that adding a layer and looking up its
    /// inputs take constant time (a linear scan made a 10,000-layer transformer take a minute).
    #[cfg_attr(feature = "serde", serde(skip))]
    index: HashMap<String, usize>,
}

impl PartialEq for Model {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, &self.input, &self.nodes) == (&other.name, &other.input, &other.nodes)
    }
}

/// The name that refers to a model's input.
pub const INPUT: &str = "input";

impl Model {
    /// An empty model taking `input` (batch first; no zero dimension).
    pub fn new(name: impl Into<String>, input: &[usize]) -> Result<Self> {
        if input.is_empty() || input.contains(&0) {
            return Err(Error::invalid(
                "input",
                format!("{input:?}"),
                "needs at least one dimension, none zero",
            ));
        }
        Ok(Model { name: name.into(), input: input.to_vec(), nodes: Vec::new(), index: HashMap::new() })
    }

    /// The name of the last layer added (`"input"` when none).
    pub fn last(&self) -> &str {
        self.nodes.last().map_or(INPUT, |n| n.name.as_str())
    }

    /// The output shape of the node named `name`.
    pub fn shape_of(&self, name: &str) -> Option<&[usize]> {
        if name == INPUT {
            return Some(&self.input);
        }
        if self.index_is_current() {
            return self.index.get(name).and_then(|&i| self.nodes.get(i)).map(|n| n.output.as_slice());
        }
        self.nodes.iter().rev().find(|n| n.name == name).map(|n| n.output.as_slice())
    }

    /// Whether `index` describes `nodes` (a caller may have changed the public field; a node renamed
    /// in place is not detected).
    fn index_is_current(&self) -> bool {
        self.index.len() == self.nodes.len()
            && self.nodes.last().is_none_or(|n| self.index.get(&n.name) == Some(&(self.nodes.len() - 1)))
    }

    /// The model's output shape.
    pub fn output(&self) -> &[usize] {
        self.shape_of(self.last()).unwrap_or(&self.input)
    }

    /// Appends `layer` reading the last layer's output.
    pub fn add(&mut self, name: impl Into<String>, layer: Layer) -> Result<&mut Self> {
        let last = self.last().to_string();
        self.add_from(name, layer, &[&last])
    }

    /// Appends `layer` reading the named nodes (a residual `Add` reads two).
    pub fn add_from(&mut self, name: impl Into<String>, layer: Layer, inputs: &[&str]) -> Result<&mut Self> {
        let name = name.into();
        if !self.index_is_current() {
            self.index = self.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        }
        if name == INPUT || self.shape_of(&name).is_some() {
            return Err(Error::invalid("layer", &name, "name already used"));
        }
        let shapes = inputs
            .iter()
            .map(|i| {
                self.shape_of(i).map(<[usize]>::to_vec).ok_or_else(|| {
                    Error::invalid("layer", &name, format!("reads `{i}`, which does not exist"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let output = layer.output_shape(&name, &shapes)?;
        self.index.insert(name.clone(), self.nodes.len());
        self.nodes.push(Node { name, layer, inputs: inputs.iter().map(|s| s.to_string()).collect(), output });
        Ok(self)
    }

    fn input_shapes(&self, node: &Node) -> Vec<Vec<usize>> {
        node.inputs.iter().map(|i| self.shape_of(i).map(<[usize]>::to_vec).unwrap_or_default()).collect()
    }

    /// The per-layer cost with one compression setting for every layer.
    pub fn report(&self, comp: &Compression) -> Result<Report> {
        self.report_with(|_| *comp)
    }

    /// The per-layer cost with a compression setting chosen per layer name.
    pub fn report_with(&self, mut comp: impl FnMut(&str) -> Compression) -> Result<Report> {
        let mut rows = Vec::with_capacity(self.nodes.len());
        let mut total = Cost::default();
        let mut notes: Vec<String> = Vec::new();
        for node in &self.nodes {
            let count = node.layer.count(&node.name, &self.input_shapes(node))?;
            let c = comp(&node.name);
            let (cost, mut extra) = count.cost(&c)?;
            extra.extend(count.notes);
            for n in &extra {
                if !notes.contains(n) {
                    notes.push(n.clone());
                }
            }
            total += cost;
            rows.push(Row {
                name: node.name.clone(),
                kind: node.layer.kind(),
                output: node.output.clone(),
                weights: c.weights.name(),
                cost,
                notes: extra,
            });
        }
        if self.nodes.iter().any(|n| matches!(n.layer, Layer::BatchNorm { .. })) {
            notes.push("batchnorm counted as a separate scale-and-shift; inference engines usually fold it into the preceding convolution".into());
        }
        notes.push(
            "not counted: quantization scales and zero points, dropout (inference), data layout copies"
                .into(),
        );
        Ok(Report { model: self.name.clone(), input: self.input.clone(), rows, total, notes })
    }
}

/// One row of a [`Report`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Row {
    /// Layer name.
    pub name: String,
    /// Layer kind.
    pub kind: String,
    /// Output shape.
    pub output: Vec<usize>,
    /// Weight precision.
    pub weights: &'static str,
    /// Cost.
    pub cost: Cost,
    /// Notes on this layer.
    pub notes: Vec<String>,
}

/// The per-layer table and totals of a model under one compression plan.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Report {
    /// Model name.
    pub model: String,
    /// Input shape.
    pub input: Vec<usize>,
    /// One row per layer.
    pub rows: Vec<Row>,
    /// Sum over layers.
    pub total: Cost,
    /// What was not counted, and assumptions, each once.
    pub notes: Vec<String>,
}

/// Formats a count with SI prefixes to three significant digits (`4.09 G`, `768`).
pub fn si(x: f64) -> String {
    crate::units::count(x)
}

/// Formats a quantity with an SI prefix and its unit, three significant digits: `si_unit(4.09e9,
/// "MACs")` is `4.09 GMACs`, `si_unit(0.0123, "J")` is `12.3 mJ`; zero is `0 J`, non-finite values
/// print as they are.
pub fn si_unit(x: f64, unit: &str) -> String {
    crate::units::si(x, unit)
}

/// Formats a byte count in decimal units: `512 B`, `1.50 kB`, `90.8 MB`, `13.5 GB`.
pub fn human_bytes(bytes: u64) -> String {
    crate::units::bytes(usize::try_from(bytes).unwrap_or(usize::MAX))
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}, {} params, {} of weights ({} read), {} of activations",
            si_unit(self.macs as f64, "MACs"),
            si_unit(self.flops as f64, "FLOPs"),
            si_unit(self.params as f64, "").trim_end(),
            human_bytes(self.weight_bytes),
            human_bytes(self.weight_read_bytes),
            human_bytes(self.act_read_bytes.saturating_add(self.act_written_bytes)),
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
        let mut s = String::new();
        let _ = writeln!(s, "{} {:?}", self.model, self.input);
        let _ = writeln!(
            s,
            "{:<w$} {:<16} {:<20} {:>12} {:>12} {:>12} {:>12} {:>12}",
            "layer", "kind", "output", "MACs", "FLOPs", "params", "weight B", "act B"
        );
        let line = |s: &mut String, name: &str, kind: &str, out: &str, c: &Cost| {
            let _ = writeln!(
                s,
                "{name:<w$} {kind:<16} {out:<20} {:>12} {:>12} {:>12} {:>12} {:>12}",
                si(c.macs as f64),
                si(c.flops as f64),
                si(c.params as f64),
                si(c.weight_bytes as f64),
                si((c.act_read_bytes + c.act_written_bytes) as f64)
            );
        };
        for r in &self.rows {
            line(&mut s, &r.name, &r.kind, &format!("{:?}", r.output), &r.cost);
        }
        line(&mut s, "total", "", "", &self.total);
        let _ = writeln!(
            s,
            "total: {}, {}, {} params, {} of weights, {} of activations",
            crate::units::si(self.total.macs as f64, "MACs"),
            crate::units::si(self.total.flops as f64, "FLOPs"),
            si(self.total.params as f64),
            crate::units::si(self.total.weight_bytes as f64, "B"),
            crate::units::si((self.total.act_read_bytes + self.total.act_written_bytes) as f64, "B")
        );
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        f.write_str(&s)
    }
}

/// Before/after totals and their ratios (`after / before`).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Comparison {
    /// Totals of the first configuration.
    pub before: Cost,
    /// Totals of the second.
    pub after: Cost,
    /// `after.macs / before.macs`.
    pub macs_ratio: f64,
    /// `after.params / before.params`.
    pub params_ratio: f64,
    /// `after.weight_bytes / before.weight_bytes`.
    pub weight_bytes_ratio: f64,
}

impl Comparison {
    /// Compares two reports' totals.
    pub fn new(before: &Report, after: &Report) -> Self {
        let r = |a: u64, b: u64| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
        let (b, a) = (before.total, after.total);
        Comparison {
            before: b,
            after: a,
            macs_ratio: r(a.macs, b.macs),
            params_ratio: r(a.params, b.params),
            weight_bytes_ratio: r(a.weight_bytes, b.weight_bytes),
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, what: &str, b: u64, a: u64| {
            writeln!(
                f,
                "{what:<14} {:>14} {:>14} {:>8.3}x",
                si(b as f64),
                si(a as f64),
                b as f64 / a.max(1) as f64
            )
        };
        writeln!(f, "{:<14} {:>14} {:>14} {:>9}", "", "before", "after", "saving")?;
        row(f, "MACs", self.before.macs, self.after.macs)?;
        row(f, "FLOPs", self.before.flops, self.after.flops)?;
        row(f, "params", self.before.params, self.after.params)?;
        row(f, "weight bytes", self.before.weight_bytes, self.after.weight_bytes)?;
        row(
            f,
            "act bytes",
            self.before.act_read_bytes + self.before.act_written_bytes,
            self.after.act_read_bytes + self.after.act_written_bytes,
        )
    }
}
