//! C ABI: prune.
