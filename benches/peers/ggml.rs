//! ggml's own CPU dot products (`vec_dot` of `ggml_get_type_traits_cpu`), the peer of the ggml-block
//! GEMV bench; included by it under `cfg(greenai_ggml)` (see build.rs and `build_ggml.sh`, which
//! pins llama-cpp-python 0.3.36: llama.cpp 0c1e57098bba43ac29e6e3b677cdceebdd22334f, ggml 0.25.3).
//!
//! A GEMV here is what ggml's `mul_mat` does for one token on one thread: x quantized once to the
//! weight type's `vec_dot_type` (Q8_0 or Q8_K) with that type's `from_float`, then `vec_dot` with
//! `nrc = 1` per weight row.

use std::ffi::{c_int, c_void};
use std::sync::Once;

/// `ggml_from_float_t`: quantizes `k` floats into blocks.
type FromFloat = unsafe extern "C" fn(x: *const f32, y: *mut c_void, k: i64);
/// `ggml_vec_dot_t`: `*s = dot(x, y)` over `n` elements for `nrc = 1`.
type VecDot = unsafe extern "C" fn(
    n: c_int,
    s: *mut f32,
    bs: usize,
    x: *const c_void,
    bx: usize,
    y: *const c_void,
    by: usize,
    nrc: c_int,
);

/// `struct ggml_type_traits_cpu` (ggml-cpu.h).
#[repr(C)]
struct TypeTraitsCpu {
    from_float: Option<FromFloat>,
    vec_dot: Option<VecDot>,
    vec_dot_type: c_int,
    nrows: i64,
}

extern "C" {
    fn ggml_cpu_init();
    fn ggml_get_type_traits_cpu(ty: c_int) -> *const TypeTraitsCpu;
    fn ggml_row_size(ty: c_int, ne: i64) -> usize;
}

/// ggml's GEMV for one weight type (`GGML_TYPE_*` value) and row length.
pub struct Gemv {
    vec_dot: VecDot,
    from_float: FromFloat,
    cols: usize,
    row_bytes: usize,
    /// x in the `vec_dot_type`'s blocks, in u64 words so the blocks' f16/f32 fields are aligned.
    xq: Vec<u64>,
}

impl Gemv {
    /// The GEMV of `ty` on rows of `cols`, or `None` if ggml has no `vec_dot` for it.
    pub fn new(ty: c_int, cols: usize) -> Option<Self> {
        static INIT: Once = Once::new();
        // SAFETY: ggml_cpu_init only fills ggml's tables (idempotent; Once for good measure).
        INIT.call_once(|| unsafe { ggml_cpu_init() });
        // SAFETY: ggml returns a pointer into its static traits table for any type value
        // below GGML_TYPE_COUNT (the callers pass ggml's own type numbers).
        let traits = unsafe { ggml_get_type_traits_cpu(ty).as_ref()? };
        let vec_dot = traits.vec_dot?;
        // SAFETY: as above, for the activation type ggml names.
        let act = unsafe { ggml_get_type_traits_cpu(traits.vec_dot_type).as_ref()? };
        let from_float = act.from_float?;
        let cols_i = i64::try_from(cols).ok()?;
        // SAFETY: plain size arithmetic on ggml's type table (asserts a whole number of blocks).
        let (row_bytes, xq_bytes) =
            unsafe { (ggml_row_size(ty, cols_i), ggml_row_size(traits.vec_dot_type, cols_i)) };
        Some(Self { vec_dot, from_float, cols, row_bytes, xq: vec![0; xq_bytes.div_ceil(8)] })
    }

    /// `y = W x` for the row-major blocks `w` of `y.len()` rows, one thread.
    pub fn gemv(&mut self, w: &[u8], x: &[f32], y: &mut [f32]) {
        assert!(x.len() == self.cols && w.len() == y.len() * self.row_bytes);
        let n = self.cols as c_int;
        // SAFETY: x holds `cols` floats and xq `ggml_row_size(vec_dot_type, cols)` bytes.
        unsafe { (self.from_float)(x.as_ptr(), self.xq.as_mut_ptr().cast(), self.cols as i64) };
        for (row, s) in w.chunks_exact(self.row_bytes).zip(y.iter_mut()) {
            // SAFETY: one row of `cols` elements in the weight type's blocks, x in the
            // vec_dot_type's blocks, one output: the nrc = 1 call of ggml's mul_mat (strides unused).
            unsafe {
                (self.vec_dot)(n, s, 0, row.as_ptr().cast(), 0, self.xq.as_ptr().cast(), 0, 1);
            }
        }
    }
}
