//! bf16 x bf16 -> f32 GEMM, one thread, against oneDNN's bf16 matmul primitive, greenai's own
//! f32 x bf16-weights GEMM and `matrixmultiply::sgemm` in the same groups. Throughput in
//! elements = flops (2 m n k), so criterion's "Gelem/s" reads as GFLOPS.
//!
//! Shapes: 1024^3, and m = 1 / 16 / 128 rows against 4096 x 4096 weights (k = n = 4096).
//! Rows: `greenai_bf16` (plain API: streams B for m <= 48, packs it per call above),
//! `greenai_bf16_prepacked`, `onednn_bf16_matmul` (compiled in with `libdnnl-dev`, see build.rs:
//! the primitive is created once outside the timed loop, one OpenMP thread; the implementation it
//! chose is printed), `greenai_f32_bf16w` (A in f32, plain call), `matrixmultiply_sgemm` (all f32).
//!
//! `flock /tmp/greenai-bench.lock env RAYON_NUM_THREADS=1 cargo bench --all-features --bench gemm_bf16 -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use greenai::kernels::gemm_bf16::{self, PackedB};
use greenai::kernels::gemm_float;
use half::bf16;
use std::hint::black_box;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool")
}

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
        .collect()
}

/// oneDNN's matmul primitive (the v2 C API of Debian's oneDNN 2.6: `dnnl_matmul_desc_init` and
/// `dnnl_primitive_desc_create`; v3 folds them into `dnnl_matmul_primitive_desc_create`), bf16 src
/// and weights, f32 dst, plain row-major memory.
#[cfg(greenai_onednn)]
mod onednn {
    use std::ffi::{c_char, c_int, c_void, CStr};
    use std::ptr::null_mut;

    type Handle = *mut c_void;
    const CPU: c_int = 1;
    const BF16: c_int = 2;
    const F32: c_int = 3;
    const TAG_AB: c_int = 3;
    const ARG_SRC: c_int = 1;
    const ARG_WEIGHTS: c_int = 33;
    const ARG_DST: c_int = 17;
    const QUERY_IMPL_INFO_STR: c_int = 8;

    /// Room for `dnnl_memory_desc_t` (696 bytes in 2.6) and `dnnl_matmul_desc_t` (2800), 8-aligned;
    /// oneDNN fills them, Rust only passes their address.
    #[repr(C, align(8))]
    struct Opaque([u8; 4096]);

    #[repr(C)]
    struct ExecArg {
        arg: c_int,
        memory: Handle,
    }

    extern "C" {
        fn dnnl_engine_create(engine: *mut Handle, kind: c_int, index: usize) -> c_int;
        fn dnnl_stream_create(stream: *mut Handle, engine: Handle, flags: u32) -> c_int;
        fn dnnl_memory_desc_init_by_tag(
            md: *mut Opaque,
            ndims: c_int,
            dims: *const i64,
            dt: c_int,
            tag: c_int,
        ) -> c_int;
        fn dnnl_matmul_desc_init(
            desc: *mut Opaque,
            src: *const Opaque,
            weights: *const Opaque,
            bias: *const Opaque,
            dst: *const Opaque,
        ) -> c_int;
        fn dnnl_primitive_desc_create(
            pd: *mut Handle,
            op_desc: *const Opaque,
            attr: Handle,
            engine: Handle,
            hint: Handle,
        ) -> c_int;
        fn dnnl_primitive_desc_query(pd: Handle, what: c_int, index: c_int, result: *mut c_void) -> c_int;
        fn dnnl_primitive_create(primitive: *mut Handle, pd: Handle) -> c_int;
        fn dnnl_memory_create(
            memory: *mut Handle,
            md: *const Opaque,
            engine: Handle,
            handle: *mut c_void,
        ) -> c_int;
        fn dnnl_memory_set_data_handle(memory: Handle, handle: *mut c_void) -> c_int;
        fn dnnl_primitive_execute(
            primitive: Handle,
            stream: Handle,
            nargs: c_int,
            args: *const ExecArg,
        ) -> c_int;
        fn dnnl_stream_wait(stream: Handle) -> c_int;
        fn omp_set_num_threads(threads: c_int);
    }

    fn ok(status: c_int, what: &str) {
        assert_eq!(status, 0, "oneDNN {what} failed with status {status}");
    }

    /// A matmul primitive for `m x k` bf16 times `k x n` bf16 into `m x n` f32, with its memories.
    pub struct Matmul {
        stream: Handle,
        primitive: Handle,
        memories: [Handle; 3],
        /// The implementation oneDNN chose (`dnnl_query_impl_info_str`).
        pub implementation: String,
    }

    impl Matmul {
        /// Creates the primitive (once, outside any timed loop), on one OpenMP thread; `Err` names
        /// the status when oneDNN has no implementation for this machine (3 = `dnnl_unimplemented`).
        pub fn new(m: usize, n: usize, k: usize) -> Result<Matmul, String> {
            // SAFETY: plain oneDNN C calls with out-pointers to live locals; the descriptors are
            // large enough (see Opaque) and outlive the calls that read them.
            unsafe {
                omp_set_num_threads(1);
                let (mut engine, mut stream) = (null_mut(), null_mut());
                ok(dnnl_engine_create(&mut engine, CPU, 0), "engine");
                ok(dnnl_stream_create(&mut stream, engine, 0), "stream");
                let md = |rows: usize, cols: usize, dt: c_int| {
                    let mut d = Box::new(Opaque([0; 4096]));
                    let dims = [rows as i64, cols as i64];
                    ok(dnnl_memory_desc_init_by_tag(&mut *d, 2, dims.as_ptr(), dt, TAG_AB), "memory desc");
                    d
                };
                let (src, weights, dst) = (md(m, k, BF16), md(k, n, BF16), md(m, n, F32));
                let mut desc = Box::new(Opaque([0; 4096]));
                ok(
                    dnnl_matmul_desc_init(&mut *desc, &*src, &*weights, std::ptr::null(), &*dst),
                    "matmul desc",
                );
                let mut pd = null_mut();
                let status = dnnl_primitive_desc_create(&mut pd, &*desc, null_mut(), engine, null_mut());
                if status != 0 {
                    return Err(format!("dnnl_primitive_desc_create returned status {status}"));
                }
                let mut info: *const c_char = std::ptr::null();
                ok(
                    dnnl_primitive_desc_query(
                        pd,
                        QUERY_IMPL_INFO_STR,
                        0,
                        (&mut info as *mut *const c_char).cast(),
                    ),
                    "query",
                );
                let implementation = CStr::from_ptr(info).to_string_lossy().into_owned();
                let mut primitive = null_mut();
                ok(dnnl_primitive_create(&mut primitive, pd), "primitive");
                let mut memories = [null_mut(); 3];
                for (mem, d) in memories.iter_mut().zip([&src, &weights, &dst]) {
                    ok(dnnl_memory_create(mem, &**d, engine, null_mut()), "memory");
                }
                Ok(Matmul { stream, primitive, memories, implementation })
            }
        }

        /// `c = a * b` (row-major, the shape the primitive was made for).
        pub fn run(&self, a: &[u16], b: &[u16], c: &mut [f32]) {
            let handles = [a.as_ptr() as *mut c_void, b.as_ptr() as *mut c_void, c.as_mut_ptr().cast()];
            let args: Vec<ExecArg> = [ARG_SRC, ARG_WEIGHTS, ARG_DST]
                .iter()
                .zip(self.memories)
                .map(|(&arg, memory)| ExecArg { arg, memory })
                .collect();
            // SAFETY: the buffers hold the matrices the memory descriptors describe (the caller
            // sizes them for the shape); oneDNN reads a and b and writes c during the call only.
            unsafe {
                for (mem, h) in self.memories.iter().zip(handles) {
                    ok(dnnl_memory_set_data_handle(*mem, h), "set handle");
                }
                ok(dnnl_primitive_execute(self.primitive, self.stream, 3, args.as_ptr()), "execute");
                ok(dnnl_stream_wait(self.stream), "wait");
            }
        }
    }
}

fn bench_shape(c: &mut Criterion, group_name: &str, m: usize, n: usize, k: usize) {
    let one = pool(1);
    let a32 = values(m * k, 1);
    let b32 = values(k * n, 2);
    let a: Vec<bf16> = a32.iter().map(|&v| bf16::from_f32(v)).collect();
    let b: Vec<bf16> = b32.iter().map(|&v| bf16::from_f32(v)).collect();
    let packed = PackedB::pack(k, n, &b, n).unwrap();
    let mut out = vec![0.0f32; m * n];
    let mut reference = vec![0.0f32; m * n];
    gemm_bf16::gemm_bf16bf16_f32(m, n, k, &a, k, &b, n, &mut reference, n).unwrap();

    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
    group.sample_size(10);
    let shape = format!("{m}x{n}x{k}");
    group.bench_function(BenchmarkId::new("greenai_bf16", &shape), |bench| {
        one.install(|| {
            bench
                .iter(|| gemm_bf16::gemm_bf16bf16_f32(m, n, k, black_box(&a), k, &b, n, &mut out, n).unwrap())
        })
    });
    group.bench_function(BenchmarkId::new("greenai_bf16_prepacked", &shape), |bench| {
        one.install(|| {
            bench.iter(|| gemm_bf16::gemm_packed(m, black_box(&a), k, &packed, &mut out, n).unwrap())
        })
    });
    #[cfg(greenai_onednn)]
    match onednn::Matmul::new(m, n, k) {
        Err(why) => {
            eprintln!("oneDNN bf16 matmul {shape}: no implementation on this machine ({why}); row skipped")
        }
        Ok(matmul) => {
            let (a16, b16): (Vec<u16>, Vec<u16>) =
                (a.iter().map(|v| v.to_bits()).collect(), b.iter().map(|v| v.to_bits()).collect());
            matmul.run(&a16, &b16, &mut out);
            let worst = out
                .iter()
                .zip(&reference)
                .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
                .fold(0.0f32, f32::max);
            eprintln!(
                "oneDNN bf16 matmul {shape}: implementation `{}`, max |diff| vs greenai {worst:e}",
                matmul.implementation
            );
            group.bench_function(BenchmarkId::new("onednn_bf16_matmul", &shape), |bench| {
                bench.iter(|| matmul.run(black_box(&a16), &b16, &mut out))
            });
        }
    }
    group.bench_function(BenchmarkId::new("greenai_f32_bf16w", &shape), |bench| {
        one.install(|| {
            bench
                .iter(|| gemm_float::gemm_f32_bf16w(m, n, k, black_box(&a32), k, &b, n, &mut out, n).unwrap())
        })
    });
    group.bench_function(BenchmarkId::new("matrixmultiply_sgemm", &shape), |bench| {
        bench.iter(|| {
            // SAFETY: a32 is m x k, b32 k x n, out m x n, all row-major (column stride 1).
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    black_box(a32.as_ptr()),
                    k as isize,
                    1,
                    b32.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    out.as_mut_ptr(),
                    n as isize,
                    1,
                )
            }
        })
    });
    group.finish();
}

fn square(c: &mut Criterion) {
    bench_shape(c, "gemm_bf16_square_1thread", 1024, 1024, 1024);
}

fn language_model(c: &mut Criterion) {
    for m in [1, 16, 128] {
        bench_shape(c, "gemm_bf16_llm_1thread", m, 4096, 4096);
    }
}

criterion_group!(benches, square, language_model);
criterion_main!(benches);
