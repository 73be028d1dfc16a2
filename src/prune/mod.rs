//! Pruning: masks, criteria, schedules, structured shrinking and sparse storage.
