//! Energy and carbon: joules from operations and memory traffic, kWh, gCO2e, and a RAPL meter.
//!
//! The default [`EnergyTable`] is Horowitz's 45 nm figures (M. Horowitz, "Computing's energy problem (and what
//! we can do about it)", ISSCC 2014): int8 add 0.03 pJ, int8 multiply 0.2 pJ, int32 add 0.1 pJ, int32 multiply
//! 3.1 pJ, fp16 add 0.4 pJ, fp16 multiply 1.1 pJ, fp32 add 0.9 pJ, fp32 multiply 3.7 pJ, SRAM about 5 pJ and
//! DRAM about 640 pJ per 32-bit word. **It is a lower bound**: it counts only the arithmetic and the data
//! moved, not instruction fetch, control, leakage or the rest of the machine, and newer processes differ.
//! Replace it with a table measured on your hardware (for instance with [`RaplMeter`]).
//!
//! Rules: a MAC costs one multiply and one add of its precision (integer MACs accumulate in int32; bf16 uses
//! the fp16 figures; int4 the int8 ones); any other FLOP costs one add of the activation precision (int32 for
//! integers); weights are read from DRAM once per inference, activations from SRAM (the lower bound assumes
//! they stay on chip).
//!
//! Carbon: `gCO2e = kWh x PUE x grid intensity`. Defaults: 475 gCO2e/kWh, the world average that CodeCarbon
//! uses, and PUE 1.0 (CodeCarbon's default; pass a data centre's PUE, often 1.1 to 1.6). [`GridSource`] has
//! CodeCarbon's per-source intensities so the energy source shows next to the compression levers.

use crate::flops::{Cost, Precision};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Energy per operation and per memory access, in picojoules.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct EnergyTable {
    /// 8-bit integer add.
    pub int8_add: f64,
    /// 8-bit integer multiply.
    pub int8_mult: f64,
    /// 32-bit integer add.
    pub int32_add: f64,
    /// 32-bit integer multiply.
    pub int32_mult: f64,
    /// fp16 add.
    pub fp16_add: f64,
    /// fp16 multiply.
    pub fp16_mult: f64,
    /// fp32 add.
    pub fp32_add: f64,
    /// fp32 multiply.
    pub fp32_mult: f64,
    /// SRAM access per 32-bit word.
    pub sram_word: f64,
    /// DRAM access per 32-bit word.
    pub dram_word: f64,
}

impl Default for EnergyTable {
    fn default() -> Self {
        Self::HOROWITZ_45NM
    }
}

impl EnergyTable {
    /// Horowitz, ISSCC 2014, 45 nm: a lower bound.
    pub const HOROWITZ_45NM: EnergyTable = EnergyTable {
        int8_add: 0.03,
        int8_mult: 0.2,
        int32_add: 0.1,
        int32_mult: 3.1,
        fp16_add: 0.4,
        fp16_mult: 1.1,
        fp32_add: 0.9,
        fp32_mult: 3.7,
        sram_word: 5.0,
        dram_word: 640.0,
    };

    /// Picojoules of one multiply-accumulate at precision `p`.
    pub fn mac_pj(&self, p: Precision) -> f64 {
        match p {
            Precision::F32 => self.fp32_mult + self.fp32_add,
            Precision::F16 | Precision::BF16 => self.fp16_mult + self.fp16_add,
            Precision::Int8 | Precision::Int4 => self.int8_mult + self.int32_add,
        }
    }

    /// Picojoules of one non-MAC operation at precision `p`.
    pub fn op_pj(&self, p: Precision) -> f64 {
        match p {
            Precision::F32 => self.fp32_add,
            Precision::F16 | Precision::BF16 => self.fp16_add,
            Precision::Int8 | Precision::Int4 => self.int32_add,
        }
    }

    /// Joules of a [`Cost`] whose MACs run at `weights` precision and other operations at `activations`.
    pub fn energy(&self, cost: &Cost, weights: Precision, activations: Precision) -> Energy {
        let other_ops = cost.flops.saturating_sub(cost.macs.saturating_mul(2)) as f64;
        let compute_pj = cost.macs as f64 * self.mac_pj(weights) + other_ops * self.op_pj(activations);
        let dram_pj = cost.weight_read_bytes as f64 / 4.0 * self.dram_word;
        let sram_pj = (cost.act_read_bytes + cost.act_written_bytes) as f64 / 4.0 * self.sram_word;
        Energy { compute_j: compute_pj * 1e-12, dram_j: dram_pj * 1e-12, sram_j: sram_pj * 1e-12 }
    }
}

/// Joules split by where they go.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Energy {
    /// Arithmetic.
    pub compute_j: f64,
    /// Weights read from DRAM.
    pub dram_j: f64,
    /// Activations through SRAM.
    pub sram_j: f64,
}

impl Energy {
    /// Total joules.
    pub fn total_j(&self) -> f64 {
        self.compute_j + self.dram_j + self.sram_j
    }
}

/// Joules to kilowatt-hours.
pub fn kwh(joules: f64) -> f64 {
    joules / 3.6e6
}

/// Carbon intensity of electricity by source (CodeCarbon's table, gCO2e/kWh).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum GridSource {
    /// World average, 475.
    World,
    /// Coal, 995.
    Coal,
    /// Oil, 816.
    Oil,
    /// Natural gas, 743.
    Gas,
    /// Nuclear, 29.
    Nuclear,
    /// Hydro, 26.
    Hydro,
    /// Solar, 48.
    Solar,
    /// Wind, 26.
    Wind,
}

impl GridSource {
    /// Every source.
    pub const ALL: [GridSource; 8] = [
        GridSource::World,
        GridSource::Coal,
        GridSource::Oil,
        GridSource::Gas,
        GridSource::Nuclear,
        GridSource::Hydro,
        GridSource::Solar,
        GridSource::Wind,
    ];

    /// gCO2e per kWh.
    pub const fn g_per_kwh(self) -> f64 {
        match self {
            GridSource::World => 475.0,
            GridSource::Coal => 995.0,
            GridSource::Oil => 816.0,
            GridSource::Gas => 743.0,
            GridSource::Nuclear => 29.0,
            GridSource::Hydro => 26.0,
            GridSource::Solar => 48.0,
            GridSource::Wind => 26.0,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|g| g.name() == s.to_ascii_lowercase()).ok_or_else(|| {
            Error::invalid("grid", s, "expected world, coal, oil, gas, nuclear, hydro, solar or wind")
        })
    }
}

/// Where the electricity comes from and how much the facility adds.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Carbon {
    /// Grid carbon intensity, gCO2e per kWh.
    pub g_per_kwh: f64,
    /// Power usage effectiveness of the facility (>= 1).
    pub pue: f64,
}

impl Default for Carbon {
    fn default() -> Self {
        Carbon { g_per_kwh: GridSource::World.g_per_kwh(), pue: 1.0 }
    }
}

impl Carbon {
    /// A grid source with PUE 1.
    pub fn from_source(s: GridSource) -> Self {
        Carbon { g_per_kwh: s.g_per_kwh(), pue: 1.0 }
    }

    /// Checks the values (finite, intensity >= 0, PUE >= 1).
    pub fn check(&self) -> Result<()> {
        if !(self.g_per_kwh.is_finite() && self.g_per_kwh >= 0.0) {
            return Err(Error::invalid("g_per_kwh", self.g_per_kwh, "must be finite and >= 0"));
        }
        if !(self.pue.is_finite() && self.pue >= 1.0) {
            return Err(Error::invalid("pue", self.pue, "must be finite and >= 1"));
        }
        Ok(())
    }

    /// gCO2e of `joules` of IT energy: `kWh x PUE x intensity`.
    pub fn grams(&self, joules: f64) -> f64 {
        kwh(joules) * self.pue * self.g_per_kwh
    }
}

/// Energy, electricity and carbon of some number of inferences.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Footprint {
    /// Joules (IT equipment).
    pub joules: f64,
    /// Kilowatt-hours (IT equipment).
    pub kwh: f64,
    /// Grams of CO2 equivalent (facility included through PUE).
    pub gco2e: f64,
}

/// One inference and a million of them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct InferenceFootprint {
    /// Per inference (one sample).
    pub per_inference: Footprint,
    /// Per million inferences.
    pub per_million: Footprint,
}

impl InferenceFootprint {
    /// From the energy of a batch of `batch` samples.
    pub fn new(energy: &Energy, batch: usize, carbon: &Carbon) -> Result<Self> {
        carbon.check()?;
        if batch == 0 {
            return Err(Error::invalid("batch", 0, "must be positive"));
        }
        let j = energy.total_j() / batch as f64;
        let one = Footprint { joules: j, kwh: kwh(j), gco2e: carbon.grams(j) };
        let m = 1e6;
        Ok(InferenceFootprint {
            per_inference: one,
            per_million: Footprint { joules: j * m, kwh: one.kwh * m, gco2e: one.gco2e * m },
        })
    }
}

/// One RAPL domain: a package (`intel-rapl:N`; AMD exposes the same names).
#[derive(Clone, Debug, PartialEq)]
pub struct RaplDomain {
    /// The domain's `name` file (`package-0`), or its folder name.
    pub name: String,
    energy: PathBuf,
    /// Counter range: the counter wraps to 0 after this many microjoules.
    pub max_range_uj: u64,
}

/// Reads the Linux powercap RAPL energy counters of every package.
///
/// ```no_run
/// let meter = greenai::energy::RaplMeter::open()?;
/// let start = meter.read()?;
/// // ... run the model ...
/// let joules = meter.joules_since(&start)?;
/// # Ok::<(), greenai::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RaplMeter {
    /// The package domains found.
    pub domains: Vec<RaplDomain>,
}

/// Counter values of every domain at one instant, in microjoules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaplReading(pub Vec<u64>);

fn read_u64(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.trim()
        .parse()
        .map_err(|_| Error::format(path.display().to_string(), format!("not a counter: {text:?}")))
}

impl RaplMeter {
    /// The system's meter under `/sys/class/powercap`, or an error saying why there is none.
    pub fn open() -> Result<Self> {
        Self::open_at("/sys/class/powercap")
    }

    /// The meter under a powercap root (tests point this at a fake tree).
    pub fn open_at(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let unavailable =
            |why: String| Error::format("RAPL energy meter", format!("not available on this machine: {why}"));
        let entries = std::fs::read_dir(root).map_err(|e| unavailable(format!("{}: {e}", root.display())))?;
        let mut domains = Vec::new();
        for entry in entries.flatten() {
            let folder = entry.file_name().to_string_lossy().into_owned();
            // Packages only: `intel-rapl:0`; sub-zones (`intel-rapl:0:0`) are inside them and would double count.
            let Some(index) = folder.strip_prefix("intel-rapl:") else { continue };
            if index.contains(':') {
                continue;
            }
            let dir = entry.path();
            let name =
                std::fs::read_to_string(dir.join("name")).map(|s| s.trim().to_string()).unwrap_or(folder);
            let energy = dir.join("energy_uj");
            read_u64(&energy).map_err(|e| unavailable(format!("{e} (reading it usually needs root)")))?;
            domains.push(RaplDomain {
                name,
                energy,
                max_range_uj: read_u64(&dir.join("max_energy_range_uj"))?,
            });
        }
        if domains.is_empty() {
            return Err(unavailable(format!("no intel-rapl:* package under {}", root.display())));
        }
        domains.sort_by(|a, b| a.energy.cmp(&b.energy));
        Ok(RaplMeter { domains })
    }

    /// Reads every counter.
    pub fn read(&self) -> Result<RaplReading> {
        self.domains.iter().map(|d| read_u64(&d.energy)).collect::<Result<_>>().map(RaplReading)
    }

    /// Joules consumed by all packages between two readings (one wrap per domain at most).
    pub fn joules_between(&self, start: &RaplReading, end: &RaplReading) -> Result<f64> {
        if start.0.len() != self.domains.len() || end.0.len() != self.domains.len() {
            return Err(Error::invalid("reading", start.0.len(), "readings come from a different meter"));
        }
        let uj: u64 = self
            .domains
            .iter()
            .zip(start.0.iter().zip(&end.0))
            .map(|(d, (&a, &b))| if b >= a { b - a } else { d.max_range_uj.saturating_sub(a) + b })
            .sum();
        Ok(uj as f64 * 1e-6)
    }

    /// Joules consumed since `start`.
    pub fn joules_since(&self, start: &RaplReading) -> Result<f64> {
        self.joules_between(start, &self.read()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(root: &Path, folder: &str, name: &str, uj: u64, max: u64) {
        let d = root.join(folder);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("name"), format!("{name}\n")).unwrap();
        std::fs::write(d.join("energy_uj"), format!("{uj}\n")).unwrap();
        std::fs::write(d.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
    }

    #[test]
    fn rapl_reads_packages_only_and_handles_wraparound() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        domain(root, "intel-rapl:0", "package-0", 1_000_000, 10_000_000);
        domain(root, "intel-rapl:1", "package-1", 9_500_000, 10_000_000);
        domain(root, "intel-rapl:0:0", "core", 5, 10_000_000); // sub-zone: ignored
        std::fs::write(root.join("unrelated"), "x").unwrap();
        let meter = RaplMeter::open_at(root).unwrap();
        assert_eq!(
            meter.domains.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["package-0", "package-1"]
        );
        let start = meter.read().unwrap();
        assert_eq!(start, RaplReading(vec![1_000_000, 9_500_000]));
        // package-0 gains 2 J; package-1 wraps: 0.5 J to the top, then 1.5 J.
        std::fs::write(root.join("intel-rapl:0/energy_uj"), "3000000\n").unwrap();
        std::fs::write(root.join("intel-rapl:1/energy_uj"), "1500000\n").unwrap();
        let j = meter.joules_since(&start).unwrap();
        assert!((j - 4.0).abs() < 1e-9, "{j}");
    }

    #[test]
    fn rapl_absent_or_unreadable_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let e = RaplMeter::open_at(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("not available") && e.contains("intel-rapl"), "{e}");
        let e = RaplMeter::open_at(tmp.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("not available"), "{e}");
        domain(tmp.path(), "intel-rapl:0", "package-0", 0, 10);
        std::fs::write(tmp.path().join("intel-rapl:0/energy_uj"), "garbage").unwrap();
        let e = RaplMeter::open_at(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("not a counter"), "{e}");
    }

    #[test]
    fn horowitz_table_and_carbon_arithmetic() {
        let t = EnergyTable::default();
        assert_eq!(t.mac_pj(Precision::F32), 3.7 + 0.9);
        assert_eq!(t.mac_pj(Precision::Int8), 0.2 + 0.1);
        // 1e12 f32 MACs, nothing else: 4.6 J.
        let cost = Cost { macs: 1_000_000_000_000, flops: 2_000_000_000_000, ..Cost::default() };
        let e = t.energy(&cost, Precision::F32, Precision::F32);
        assert!((e.total_j() - 4.6).abs() < 1e-9);
        // 4 bytes from DRAM is one word: 640 pJ.
        let cost = Cost { weight_read_bytes: 4, ..Cost::default() };
        assert!((t.energy(&cost, Precision::F32, Precision::F32).dram_j - 640e-12).abs() < 1e-20);
        // 3.6 MJ = 1 kWh; at 475 g/kWh and PUE 1.5: 712.5 g.
        let c = Carbon { g_per_kwh: 475.0, pue: 1.5 };
        assert!((c.grams(3.6e6) - 712.5).abs() < 1e-9);
        let f = InferenceFootprint::new(&Energy { compute_j: 2.0, ..Energy::default() }, 4, &c).unwrap();
        assert!((f.per_inference.joules - 0.5).abs() < 1e-12 && (f.per_million.joules - 5e5).abs() < 1e-6);
        assert!(InferenceFootprint::new(&Energy::default(), 1, &Carbon { g_per_kwh: 1.0, pue: 0.5 }).is_err());
        assert_eq!(GridSource::parse("Wind").unwrap().g_per_kwh(), 26.0);
        assert!(GridSource::parse("peat").is_err());
    }
}
