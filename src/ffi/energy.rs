//! C ABI: energy.
