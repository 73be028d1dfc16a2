//! oneDNN's int8 GEMM `dnnl_gemm_u8s8s32` (row-major, zero offsets), the peer of the int8 benches;
//! included by them under `cfg(greenai_onednn)` (see build.rs).

use std::ffi::{c_char, c_int};

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn dnnl_gemm_u8s8s32(
        transa: c_char,
        transb: c_char,
        offsetc: c_char,
        m: i64,
        n: i64,
        k: i64,
        alpha: f32,
        a: *const u8,
        lda: i64,
        ao: u8,
        b: *const i8,
        ldb: i64,
        bo: i8,
        beta: f32,
        c: *mut i32,
        ldc: i64,
        co: *const i32,
    ) -> c_int;
    fn omp_set_num_threads(threads: c_int);
}

/// One OpenMP thread for oneDNN, as for greenai's single-thread rows.
pub fn one_thread() {
    // SAFETY: a plain libgomp setter.
    unsafe { omp_set_num_threads(1) }
}

/// `c (m x n) = a (m x k) * b (k x n)`, all row-major, zero offsets.
pub fn gemm(m: usize, n: usize, k: usize, a: &[u8], b: &[i8], c: &mut [i32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    let zero = 0i32;
    let (mi, ni, ki) = (m as i64, n as i64, k as i64);
    let n_ = b'N' as c_char;
    // SAFETY: the slices hold the row-major matrices the dimensions and leading dimensions
    // describe (asserted above); `co` points at one offset for offsetc = 'F'.
    let status = unsafe {
        dnnl_gemm_u8s8s32(
            n_,
            n_,
            b'F' as c_char,
            mi,
            ni,
            ki,
            1.0,
            a.as_ptr(),
            ki,
            0,
            b.as_ptr(),
            ni,
            0,
            0.0,
            c.as_mut_ptr(),
            ni,
            &zero,
        )
    };
    assert_eq!(status, 0, "dnnl_gemm_u8s8s32 failed");
}
