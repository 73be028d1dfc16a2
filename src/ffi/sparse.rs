//! C ABI: sparse.
