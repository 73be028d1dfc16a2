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

use crate::flops::{si_unit, Cost, Precision};
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

impl std::fmt::Display for Energy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (compute {}, DRAM {}, SRAM {})",
            si_unit(self.total_j(), "J"),
            si_unit(self.compute_j, "J"),
            si_unit(self.dram_j, "J"),
            si_unit(self.sram_j, "J")
        )
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

impl std::fmt::Display for Carbon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} gCO2e/kWh, PUE {:.2}", self.g_per_kwh, self.pue)
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

impl std::fmt::Display for Footprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Grams below a kilogram keep their SI prefix (mg, ug); above, kg and t read better than kg/Mg.
        let carbon = if self.gco2e.abs() >= 1e6 {
            format!("{:.3} tCO2e", self.gco2e / 1e6)
        } else if self.gco2e.abs() >= 1e3 {
            format!("{:.3} kgCO2e", self.gco2e / 1e3)
        } else {
            si_unit(self.gco2e, "gCO2e")
        };
        write!(f, "{}, {}, {}", si_unit(self.joules, "J"), si_unit(self.kwh * 1e3, "Wh"), carbon)
    }
}

impl std::fmt::Display for InferenceFootprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "per inference: {}; per million: {}", self.per_inference, self.per_million)
    }
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

/// Where an [`EnergyMeter`]'s joules come from.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum MeterSource {
    /// Measured: the RAPL package counters (the whole package, every process on it).
    Rapl,
    /// Estimated, CodeCarbon's way, because RAPL is absent or unreadable: this process's CPU time times
    /// a per-core power from [`CpuPower`], plus its resident memory at [`RAM_WATTS_PER_GB`] over the wall
    /// time.
    Estimate(CpuPower),
}

/// The power one busy core of a CPU model draws: its TDP over its cores, from a table of known models.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CpuPower {
    /// The model name as `/proc/cpuinfo` gives it (or "unknown").
    pub model: String,
    /// Watts per busy core.
    pub watts_per_core: f64,
    /// Whether the model was in the table; `false` means the stated default was used.
    pub known: bool,
}

/// Resident memory power, watts per GiB: CodeCarbon's 3 W per 8 GB.
pub const RAM_WATTS_PER_GB: f64 = 3.0 / 8.0;

/// Default when the CPU model is not in [`CPU_TDP_TABLE`]: CodeCarbon's default TDP of 85 W, spread over
/// 16 cores.
pub const DEFAULT_WATTS_PER_CORE: f64 = 85.0 / 16.0;

/// Known CPU models: a substring of the `/proc/cpuinfo` model name, the vendor's TDP in watts and the
/// model's core count (vendor datasheets). The first match wins, so longer names come first.
pub const CPU_TDP_TABLE: &[(&str, f64, u32)] = &[
    ("EPYC 9654", 360.0, 96),
    ("EPYC 9554", 360.0, 64),
    ("EPYC 9454", 290.0, 48),
    ("EPYC 7763", 280.0, 64),
    ("EPYC 7713", 225.0, 64),
    ("EPYC 7543", 225.0, 32),
    ("Platinum 8592+", 350.0, 64),
    ("Platinum 8480+", 350.0, 56),
    ("Platinum 8380", 270.0, 40),
    ("Gold 6338", 205.0, 32),
    ("Ryzen 9 7950X", 170.0, 16),
    ("Ryzen 9 5950X", 105.0, 16),
];

impl CpuPower {
    /// The power of a model name looked up in [`CPU_TDP_TABLE`], else [`DEFAULT_WATTS_PER_CORE`].
    pub fn for_model(model: &str) -> CpuPower {
        let model = model.trim();
        match CPU_TDP_TABLE.iter().find(|(name, _, _)| model.contains(name)) {
            Some(&(_, tdp, cores)) => {
                CpuPower { model: model.to_string(), watts_per_core: tdp / f64::from(cores), known: true }
            }
            None => CpuPower {
                model: if model.is_empty() { "unknown".into() } else { model.to_string() },
                watts_per_core: DEFAULT_WATTS_PER_CORE,
                known: false,
            },
        }
    }

    /// This machine's CPU, from the first `model name` line of `/proc/cpuinfo`.
    pub fn this_machine() -> CpuPower {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = info
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim()))
            .unwrap_or("");
        CpuPower::for_model(model)
    }
}

/// A point where an [`EnergyMeter`] started counting.
#[derive(Clone, Debug)]
pub struct MeterStart {
    wall: std::time::Instant,
    cpu_seconds: f64,
    rapl: Option<RaplReading>,
}

/// What an [`EnergyMeter`] counted between its start and a reading.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Measured {
    /// Joules: measured by RAPL, or estimated (see `source`).
    pub joules: f64,
    /// Wall-clock seconds.
    pub wall_seconds: f64,
    /// CPU seconds of this process (user and system, every thread).
    pub cpu_seconds: f64,
    /// Where the joules come from.
    pub source: MeterSource,
}

impl Measured {
    /// Whether the joules were measured (RAPL) rather than estimated.
    pub fn is_measured(&self) -> bool {
        self.source == MeterSource::Rapl
    }

    /// "measured (RAPL)" or "estimated (CPU time x N W/core, MODEL)": the label a report shows.
    pub fn label(&self) -> String {
        match &self.source {
            MeterSource::Rapl => "measured (RAPL)".into(),
            MeterSource::Estimate(p) => format!(
                "estimated: CPU time x {:.2} W/core ({}{}) + memory",
                p.watts_per_core,
                p.model,
                if p.known { "" } else { ", not in the table: default" }
            ),
        }
    }
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.4} J in {:.3} s ({:.3} CPU s), {}",
            self.joules,
            self.wall_seconds,
            self.cpu_seconds,
            self.label()
        )
    }
}

/// Measures the energy of whatever runs between [`EnergyMeter::start`] and [`EnergyMeter::read`]: the
/// RAPL counters where the machine lets us read them, else a labelled estimate from this process's CPU
/// time and memory (see [`MeterSource`]).
///
/// ```
/// let meter = greenai::energy::EnergyMeter::new();
/// let start = meter.start()?;
/// let _work: f64 = (0..100_000).map(|i| (i as f64).sqrt()).sum();
/// let m = meter.read(&start)?;
/// assert!(m.joules >= 0.0);
/// println!("{m}");
/// # Ok::<(), greenai::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct EnergyMeter {
    rapl: Option<RaplMeter>,
    power: CpuPower,
}

impl Default for EnergyMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl EnergyMeter {
    /// RAPL if readable, else the estimate for this machine's CPU.
    pub fn new() -> EnergyMeter {
        EnergyMeter { rapl: RaplMeter::open().ok(), power: CpuPower::this_machine() }
    }

    /// Always the estimate, with the given per-core power (RAPL is not read).
    pub fn estimate_with(power: CpuPower) -> EnergyMeter {
        EnergyMeter { rapl: None, power }
    }

    /// The source readings will come from.
    pub fn source(&self) -> MeterSource {
        match self.rapl {
            Some(_) => MeterSource::Rapl,
            None => MeterSource::Estimate(self.power.clone()),
        }
    }

    /// Starts counting now.
    pub fn start(&self) -> Result<MeterStart> {
        let rapl = self.rapl.as_ref().map(RaplMeter::read).transpose()?;
        Ok(MeterStart { wall: std::time::Instant::now(), cpu_seconds: process_cpu_seconds()?, rapl })
    }

    /// What was used since `start`.
    pub fn read(&self, start: &MeterStart) -> Result<Measured> {
        let wall_seconds = start.wall.elapsed().as_secs_f64();
        let cpu_seconds = (process_cpu_seconds()? - start.cpu_seconds).max(0.0);
        let joules = match (&self.rapl, &start.rapl) {
            (Some(meter), Some(begin)) => meter.joules_since(begin)?,
            _ => cpu_seconds * self.power.watts_per_core + resident_gib()? * RAM_WATTS_PER_GB * wall_seconds,
        };
        Ok(Measured { joules, wall_seconds, cpu_seconds, source: self.source() })
    }
}

/// Linux's clock tick for `/proc` times (`USER_HZ`), 100 on every architecture Linux supports here.
const USER_HZ: f64 = 100.0;

fn proc_error(what: &str, why: impl std::fmt::Display) -> Error {
    Error::format(what.to_string(), format!("cannot read this process's usage: {why}"))
}

/// User plus system CPU seconds of this process, every thread including finished ones (`/proc/self/stat`).
pub fn process_cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| proc_error("/proc/self/stat", e))?;
    // The command name (field 2) is in parentheses and may hold spaces: fields resume after the last ')'.
    let after =
        stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| proc_error("/proc/self/stat", "no ')'"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64 / USER_HZ)
            .ok_or_else(|| proc_error("/proc/self/stat", format!("field {} missing", i + 3)))
    };
    Ok(ticks(11)? + ticks(12)?)
}

/// Resident memory of this process in GiB (`VmRSS` of `/proc/self/status`).
pub fn resident_gib() -> Result<f64> {
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(|e| proc_error("/proc/self/status", e))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| proc_error("/proc/self/status", "no VmRSS line"))?;
    Ok(kib as f64 / (1024.0 * 1024.0))
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
    fn cpu_power_table_and_default() {
        let p = CpuPower::for_model("AMD EPYC 9654 96-Core Processor");
        assert!(p.known && (p.watts_per_core - 3.75).abs() < 1e-12);
        let p = CpuPower::for_model("Intel(R) Xeon(R) Processor");
        assert!(!p.known && p.watts_per_core == DEFAULT_WATTS_PER_CORE);
        assert_eq!(CpuPower::for_model("  ").model, "unknown");
    }

    #[test]
    fn estimate_counts_cpu_time_of_busy_work() {
        let power = CpuPower { model: "test".into(), watts_per_core: 10.0, known: true };
        let meter = EnergyMeter::estimate_with(power);
        let start = meter.start().unwrap();
        // Busy for at least 0.3 s of CPU (the clock ticks in 10 ms steps).
        let begin = process_cpu_seconds().unwrap();
        let mut x = 0.0f64;
        while process_cpu_seconds().unwrap() - begin < 0.3 {
            for i in 0..100_000 {
                x += (i as f64).sqrt();
            }
        }
        std::hint::black_box(x);
        let m = meter.read(&start).unwrap();
        assert!(m.cpu_seconds >= 0.3 && m.wall_seconds > 0.0, "{m:?}");
        let ram = resident_gib().unwrap();
        assert!(ram > 0.0 && ram < 64.0, "{ram}");
        // 10 W per CPU second, plus memory at 0.375 W/GiB over the wall time.
        let floor = 10.0 * m.cpu_seconds;
        assert!(m.joules >= floor && m.joules <= floor + 0.375 * 64.0 * m.wall_seconds, "{m:?}");
        assert!(!m.is_measured() && m.label().starts_with("estimated"));
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
