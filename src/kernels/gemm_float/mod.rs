//! GEMM and GEMV with f32 activations and f32, f16 or bf16 weights.
