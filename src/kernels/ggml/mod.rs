//! ggml's block formats (Q4_0 ... Q8_K): the blocks, quantizers and dequantizers equal bit for bit
//! to ggml's reference code, and the dot products and GEMV that read them.

#[cfg(target_arch = "aarch64")]
mod aarch64;
mod blocks;
mod dequantize;
mod dot;
mod gemv;
mod quantize;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_512;

pub use blocks::{
    f16_get, f16_put, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0,
    BlockQ8_1, F16Bytes, GgmlType, QK, QK_K,
};
pub use dequantize::{
    dequantize, dequantize_row_q4_0, dequantize_row_q4_1, dequantize_row_q4_k, dequantize_row_q5_0,
    dequantize_row_q5_1, dequantize_row_q6_k, dequantize_row_q8_0, dequantize_row_q8_1, dequantize_row_q8_k,
};
pub use dot::{vec_dot_on, vec_dot_q4_0_q8_0, vec_dot_q4_k_q8_k, vec_dot_q6_k_q8_k, vec_dot_q8_0_q8_0};
pub use gemv::{gemv, gemv_on, gemv_supports};
pub use quantize::{
    quantize, quantize_row_q4_0, quantize_row_q4_1, quantize_row_q4_k, quantize_row_q5_0, quantize_row_q5_1,
    quantize_row_q6_k, quantize_row_q8_0, quantize_row_q8_1, quantize_row_q8_k,
};
