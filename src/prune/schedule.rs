//! Pruning schedules, as TF Model Optimization defines them: each step says whether to prune now
//! and to which sparsity.
//!
//! [`PolynomialDecay`] is Zhu & Gupta's gradual pruning,
//! `s_t = s_f + (s_i - s_f) * (1 - p)^power` with `p = clamp((t - begin) / (end - begin), 0, 1)`
//! (power 3 in the paper), pruning at `begin <= t <= end` when `(t - begin) % frequency == 0`.
//! [`ConstantSparsity`] prunes to one target on the same kind of steps, forever when `end` is `None`.
//! Sparsities are in [0, 1) as TF-MOT requires.

use crate::{Error, Result};

/// What a schedule says at one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduleStep {
    /// Whether to prune at this step.
    pub prune: bool,
    /// The target sparsity at this step.
    pub sparsity: f64,
}

/// A pruning schedule: the target sparsity at each training step.
pub trait Schedule {
    /// Whether to prune at `step`, and to which sparsity.
    fn at(&self, step: u64) -> ScheduleStep;
}

fn check_sparsity(name: &'static str, s: f64) -> Result<()> {
    if !(0.0..1.0).contains(&s) {
        return Err(Error::invalid(name, s, "must be in [0, 1)"));
    }
    Ok(())
}

fn check_frequency(frequency: u64) -> Result<()> {
    if frequency == 0 {
        return Err(Error::invalid("frequency", frequency, "must be at least 1"));
    }
    Ok(())
}

fn is_pruning_step(step: u64, begin: u64, end: Option<u64>, frequency: u64) -> bool {
    step >= begin && end.is_none_or(|e| step <= e) && (step - begin).is_multiple_of(frequency)
}

/// Zhu & Gupta's gradual pruning (TF-MOT `PolynomialDecay`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PolynomialDecay {
    initial: f64,
    final_sparsity: f64,
    begin: u64,
    end: u64,
    power: f64,
    frequency: u64,
}

impl PolynomialDecay {
    /// From `initial` to `final_sparsity` between steps `begin < end`, pruning every `frequency`
    /// steps, with exponent `power` (3 in the paper; must be finite and positive).
    pub fn new(
        initial: f64,
        final_sparsity: f64,
        begin: u64,
        end: u64,
        power: f64,
        frequency: u64,
    ) -> Result<Self> {
        check_sparsity("initial_sparsity", initial)?;
        check_sparsity("final_sparsity", final_sparsity)?;
        check_frequency(frequency)?;
        if end <= begin {
            return Err(Error::invalid(
                "end_step",
                end,
                format!("must be greater than begin_step = {begin}"),
            ));
        }
        if !(power.is_finite() && power > 0.0) {
            return Err(Error::invalid("power", power, "must be finite and positive"));
        }
        Ok(PolynomialDecay { initial, final_sparsity, begin, end, power, frequency })
    }
}

impl Schedule for PolynomialDecay {
    fn at(&self, step: u64) -> ScheduleStep {
        let p = ((step as f64 - self.begin as f64) / (self.end - self.begin) as f64).clamp(0.0, 1.0);
        let sparsity =
            self.final_sparsity + (self.initial - self.final_sparsity) * (1.0 - p).powf(self.power);
        ScheduleStep { prune: is_pruning_step(step, self.begin, Some(self.end), self.frequency), sparsity }
    }
}

/// One target sparsity from `begin` on (TF-MOT `ConstantSparsity`); `end = None` prunes forever.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConstantSparsity {
    target: f64,
    begin: u64,
    end: Option<u64>,
    frequency: u64,
}

impl ConstantSparsity {
    /// Prunes to `target` at every `frequency`-th step from `begin` up to `end` (inclusive).
    pub fn new(target: f64, begin: u64, end: Option<u64>, frequency: u64) -> Result<Self> {
        check_sparsity("target_sparsity", target)?;
        check_frequency(frequency)?;
        if let Some(e) = end.filter(|&e| e < begin) {
            return Err(Error::invalid("end_step", e, format!("must not precede begin_step = {begin}")));
        }
        Ok(ConstantSparsity { target, begin, end, frequency })
    }
}

impl Schedule for ConstantSparsity {
    fn at(&self, step: u64) -> ScheduleStep {
        ScheduleStep {
            prune: is_pruning_step(step, self.begin, self.end, self.frequency),
            sparsity: self.target,
        }
    }
}
