//! C ABI: gemm_int8.
