//! C ABI: flops.
