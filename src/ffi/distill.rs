//! C ABI: distill.
