//! Exact integer GEMM (u8 x i8 and i8 x i8 -> i32), prepacked weights, the quantized linear layer.
