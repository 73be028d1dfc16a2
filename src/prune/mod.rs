//! Pruning: masks, criteria, N:M patterns, schedules, structured shrinking and sparse storage.

pub mod criteria;
pub mod mask;
pub mod nm;
pub mod schedule;
pub mod shrink;
pub mod sparse;

#[allow(deprecated)]
pub use criteria::Rounding;
pub use criteria::{
    global_magnitude, ln_structured, magnitude, random, wanda, ActivationNormObserver, CountRounding,
    CountRule, Norm,
};
pub use mask::Mask;
pub use nm::n_m;
pub use schedule::{ConstantSparsity, PolynomialDecay, Schedule, ScheduleStep};
pub use sparse::{Csr, NmCompressed};
