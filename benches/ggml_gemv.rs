//! 4-bit and ggml-block GEMV with the weights in DRAM, one thread, each beside a plain read of
//! its own bytes. Times are the thread's CPU time ([`CpuTime`]), so other jobs on a shared
//! machine count only through the memory they share.
//!
//! Each weight matrix is held in as many copies as make up four times the last-level cache
//! (`common::dram_bytes`), and every call, GEMV or read, takes the next copy: no call finds its weights
//! in cache (a 4-bit 11008 x 4096 matrix, 22 MiB, would otherwise stay in L3).
//!
//! `gemv_dram_k4096_n11008`: y (11008) = W x with W 11008 rows x 4096 columns (a 7B model's MLP
//! up-projection), weights quantized from random floats; throughput is weight bytes per second.
//! `gemv_cache_k4096_n128`: the same with 128 rows and one copy, in L2 (each kernel's compute
//! speed).
//! - `q4_0`, `q8_0`, `q4_k`, `q6_k`: `ggml::gemv_on` on the best tier (x quantized to Q8_0/Q8_K
//!   inside, as ggml does);
//! - `int4_g128`: greenai's group-wise int4 (symmetric, groups of 128, f32 scales) through
//!   `int4::gemv_w4a8_on`, activations quantized per group to int8 inside; its throughput counts
//!   the packed nibbles and the scales, and `read_int4_g128` reads both;
//! - `int8_gemv_i8`: greenai's int8 GEMV (`gemm_float::gemv_i8_on`, i8 weights and a scale per
//!   row), the yardstick of the 1.7x target;
//! - `read_*`: every byte of that weight buffer read once (wrapping sum of u64 words): the memory
//!   floor of the GEMV beside it.
//! - `ggml_q4_0`, `ggml_q8_0`, `ggml_q4_k`, `ggml_q6_k` (only when built with
//!   `GREENAI_GGML_DIR`, `cfg(greenai_ggml)`): ggml's own GEMV on the same blocks, x quantized by
//!   ggml's `quantize_row_q8_0` / `quantize_row_q8_K` (the `from_float` of the type's
//!   `vec_dot_type`), then the type's `vec_dot` per row with `nrc = 1`, one thread: what ggml's
//!   `mul_mat` does for one token without its repacked or llamafile paths. ggml is llama.cpp
//!   0c1e57098bba43ac29e6e3b677cdceebdd22334f (ggml 0.25.3) as vendored by llama-cpp-python
//!   0.3.36, built by `benches/peers/build_ggml.sh` (static, Release, `GGML_NATIVE=ON`, no
//!   OpenMP); each type's y is checked once against greenai's before timing.

#[allow(dead_code, reason = "this bench uses only CpuTime and dram_bytes")]
mod common;
#[cfg(greenai_ggml)]
#[path = "peers/ggml.rs"]
mod ggml_peer;

use common::CpuTime;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use greenai::kernels::gemm_float::gemv_i8_on;
use greenai::kernels::ggml::{self, GgmlType};
use greenai::kernels::int4::{gemv_w4a8_on, Int4Weights};
use greenai::kernels::Isa;
use std::hint::black_box;
use std::time::Duration;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn floats(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| (self.next() as f32 / (1u64 << 31) as f32) * 2.0 - 1.0).collect()
    }
}

/// Copies of `v` that together make at least `total` bytes (at least one).
fn copies<T: Clone>(v: &[T], total: usize) -> Vec<Vec<T>> {
    let bytes = std::mem::size_of_val(v).max(1);
    vec![v.to_vec(); total.div_ceil(bytes).max(1)]
}

/// The copy for the next call.
fn next<'a, T>(copies: &'a [Vec<T>], turn: &mut usize) -> &'a [T] {
    *turn = (*turn + 1) % copies.len();
    &copies[*turn]
}

fn one_thread() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a rayon pool")
}

/// Reads every byte once (wrapping sum of u64 words): the bandwidth yardstick.
fn read_bytes(bytes: &[u8]) -> u64 {
    // SAFETY: any bit pattern is a valid u64.
    let (head, words, tail) = unsafe { bytes.align_to::<u64>() };
    let mut acc = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for chunk in &mut chunks {
        for (a, &w) in acc.iter_mut().zip(chunk) {
            *a = a.wrapping_add(w);
        }
    }
    let rest = chunks.remainder().iter().chain(&acc).fold(0u64, |s, &w| s.wrapping_add(w));
    head.iter().chain(tail).fold(rest, |s, &v| s.wrapping_add(u64::from(v)))
}

/// ggml's own GEMV on the same blocks (`ggml_<type>`): x quantized by ggml's `from_float` of the
/// type's `vec_dot_type`, then its `vec_dot` per row, one thread, as `mul_mat` for one token. Checked
/// once against greenai's y before timing: max |y_greenai - y_ggml| <= 1e-5 max |y|.
#[cfg(greenai_ggml)]
#[allow(clippy::too_many_arguments)]
fn ggml_peer_rows(
    group: &mut criterion::BenchmarkGroup<'_, CpuTime>,
    name: &str,
    ty: GgmlType,
    blocks: &[Vec<u8>],
    rows: usize,
    cols: usize,
    x: &[f32],
    y: &mut [f32],
) {
    let Some(mut peer) = ggml_peer::Gemv::new(ty as i32, cols) else {
        eprintln!("ggml peer: no vec_dot for {name}");
        return;
    };
    let mut y_ggml = vec![0.0f32; rows];
    peer.gemv(&blocks[0], x, &mut y_ggml);
    ggml::gemv_on(Isa::best(), ty, &blocks[0], rows, cols, x, y).unwrap();
    let scale = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = y.iter().zip(&y_ggml).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("ggml peer {name}: max |y_greenai - y_ggml| = {diff:.3e}, max |y| = {scale:.3e}");
    assert!(diff <= 1e-5 * scale, "ggml's {name} GEMV disagrees with greenai's");
    let mut turn = 0;
    group.bench_function(format!("ggml_{name}"), |bench| {
        bench.iter(|| peer.gemv(black_box(next(blocks, &mut turn)), black_box(x), &mut y_ggml))
    });
}

fn gemv_dram(c: &mut Criterion<CpuTime>) {
    gemv_all(c, "dram", 11008, 4096, common::dram_bytes());
}

/// The same GEMVs with 128 rows, one copy: the weights stay in L2, so this is each kernel's
/// compute speed, the headroom it has over DRAM.
fn gemv_cache(c: &mut Criterion<CpuTime>) {
    gemv_all(c, "cache", 128, 4096, 0);
}

/// Every GEMV of the file and its read, on `rows x cols` weights in copies of `total` bytes.
fn gemv_all(c: &mut Criterion<CpuTime>, place: &str, rows: usize, cols: usize, total: usize) {
    let one = one_thread();
    let isa = Isa::best();
    let mut rng = Rng(11);
    let w = rng.floats(rows * cols);
    let x = rng.floats(cols);
    let mut y = vec![0.0f32; rows];
    eprintln!("tier: {isa}");
    let mut group = c.benchmark_group(format!("gemv_{place}_k{cols}_n{rows}"));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));

    for (name, ty) in
        [("q4_0", GgmlType::Q4_0), ("q8_0", GgmlType::Q8_0), ("q4_k", GgmlType::Q4K), ("q6_k", GgmlType::Q6K)]
    {
        let mut blocks = vec![0u8; ty.matrix_bytes(rows, cols).unwrap()];
        ggml::quantize(ty, &w, rows, cols, &mut blocks).unwrap();
        group.throughput(Throughput::Bytes(blocks.len() as u64));
        let blocks = copies(&blocks, total);
        let mut turn = 0;
        group.bench_function(name, |bench| {
            one.install(|| {
                bench.iter(|| {
                    let blocks = next(&blocks, &mut turn);
                    ggml::gemv_on(isa, ty, black_box(blocks), rows, cols, black_box(&x), &mut y).unwrap()
                })
            })
        });
        #[cfg(greenai_ggml)]
        ggml_peer_rows(&mut group, name, ty, &blocks, rows, cols, &x, &mut y);
        group.bench_function(format!("read_{name}"), |bench| {
            bench.iter(|| read_bytes(black_box(next(&blocks, &mut turn))))
        });
    }

    // greenai's int4, symmetric, groups of 128: packed nibbles and f32 scales, as a file holds them.
    let size = 128;
    let mut packed = vec![0u8; rows * cols / 2];
    let mut scales4 = vec![0.0f32; rows * cols / size];
    for (g, chunk) in w.chunks_exact(size).enumerate() {
        let amax = chunk.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        scales4[g] = amax / 7.0;
        for (j, &v) in chunk.iter().enumerate() {
            let q = (v / scales4[g]).round().clamp(-8.0, 7.0) as i8;
            packed[g * size / 2 + j / 2] |= ((q as u8) & 0x0F) << (4 * (j % 2));
        }
    }
    group.throughput(Throughput::Bytes((packed.len() + 4 * scales4.len()) as u64));
    let (packed, scales4) = (copies(&packed, total), copies(&scales4, total));
    let w4 = |turn: usize| Int4Weights {
        rows,
        cols,
        group: size,
        packed: &packed[turn % packed.len()],
        scales: &scales4[turn % scales4.len()],
        zero_points: None,
    };
    let mut turn = 0;
    group.bench_function("int4_g128", |bench| {
        one.install(|| {
            bench.iter(|| {
                turn += 1;
                gemv_w4a8_on(isa, black_box(&w4(turn)), black_box(&x), &mut y).unwrap()
            })
        })
    });
    group.bench_function("read_int4_g128", |bench| {
        bench.iter(|| {
            turn += 1;
            let w = w4(turn);
            read_bytes(black_box(w.packed))
                .wrapping_add(read_bytes(black_box(bytemuck::cast_slice(w.scales))))
        })
    });

    // greenai's int8 GEMV: symmetric per-row int8 weights.
    let mut w8 = vec![0i8; rows * cols];
    let mut scales = vec![0.0f32; rows];
    for (r, (row, q)) in w.chunks_exact(cols).zip(w8.chunks_exact_mut(cols)).enumerate() {
        let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        scales[r] = amax / 127.0;
        for (q, &v) in q.iter_mut().zip(row) {
            *q = (v / scales[r]).round() as i8;
        }
    }
    group.throughput(Throughput::Bytes((rows * cols) as u64));
    let w8 = copies(&w8, total);
    group.bench_function("int8_gemv_i8", |bench| {
        one.install(|| {
            bench.iter(|| {
                let w8 = next(&w8, &mut turn);
                gemv_i8_on(isa, rows, cols, black_box(w8), cols, &scales, black_box(&x), &mut y).unwrap()
            })
        })
    });
    group.bench_function("read_int8", |bench| {
        bench.iter(|| read_bytes(black_box(bytemuck::cast_slice(next(&w8, &mut turn)))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = gemv_dram, gemv_cache
}
criterion_main!(benches);
