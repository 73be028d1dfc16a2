//! Knowledge-distillation losses with analytic gradients.
