//! C ABI: gemm_float.
