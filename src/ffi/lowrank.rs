//! C ABI: lowrank.
