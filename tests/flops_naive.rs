//! Every MAC and FLOP formula against an instrumented naive implementation that really computes the layer
//! on random data and counts its own multiply-adds and other operations.

use greenai::flops::{Activation, Attention, Compression, Conv, Cost, Layer, Linear, PoolKind};
use proptest::prelude::*;

/// A tiny deterministic generator for the data the naive layers compute on.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }
    fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// Operation counters kept by the naive layers.
#[derive(Default, Debug)]
struct Ops {
    macs: u64,
    other: u64,
}

impl Ops {
    fn mac(&mut self, acc: &mut f64, a: f64, b: f64) {
        *acc += a * b;
        self.macs += 1;
    }
}

fn dense(layer: &Layer, inputs: &[Vec<usize>]) -> (Vec<usize>, Cost) {
    let (out, count) = layer.analyse("test", inputs).unwrap();
    (out, count.dense_cost().unwrap())
}

fn zero_pad(x: &[f64], c: usize, dims: &[usize], pad: &[usize]) -> (Vec<f64>, Vec<usize>) {
    // 1-d or 2-d spatial; dims = spatial sizes.
    let pd: Vec<usize> = dims.iter().zip(pad).map(|(d, p)| d + 2 * p).collect();
    let (h, w, ph, pw) =
        if dims.len() == 1 { (1, dims[0], 0, pad[0]) } else { (dims[0], dims[1], pad[0], pad[1]) };
    let (hh, ww) = if dims.len() == 1 { (1, pd[0]) } else { (pd[0], pd[1]) };
    let mut y = vec![0.0; c * hh * ww];
    for ch in 0..c {
        for i in 0..h {
            for j in 0..w {
                y[(ch * hh + i + ph) * ww + j + pw] = x[(ch * h + i) * w + j];
            }
        }
    }
    (y, pd)
}

/// Direct convolution over a zero-padded input; returns output spatial sizes.
#[allow(clippy::too_many_arguments)]
fn naive_conv(
    ops: &mut Ops,
    n: usize,
    cin: usize,
    cout: usize,
    dims: &[usize],
    k: &[usize],
    s: &[usize],
    p: &[usize],
    d: &[usize],
    g: usize,
    bias: bool,
    rng: &mut Rng,
) -> Vec<usize> {
    let two_d = dims.len() == 2;
    let sp = |v: &[usize], i: usize| {
        if two_d {
            v[i]
        } else if i == 0 {
            1
        } else {
            v[0]
        }
    };
    let (kh, kw) = (sp(k, 0), sp(k, 1));
    let (sh, sw) = (sp(s, 0), sp(s, 1));
    let (dh, dw) = (sp(d, 0), sp(d, 1));
    let w = rng.vec(cout * cin / g * kh * kw);
    let b = rng.vec(cout);
    let mut out_dims = Vec::new();
    for batch in 0..n {
        let _ = batch;
        let x = rng.vec(cin * dims.iter().product::<usize>());
        let (xp, pd) = zero_pad(&x, cin, dims, p);
        let (hh, ww) = if two_d { (pd[0], pd[1]) } else { (1, pd[0]) };
        // Count output positions by sliding until the dilated window leaves the padded input.
        let fits = |len: usize, kk: usize, dd: usize, st: usize| {
            (0..).take_while(|o| o * st + dd * (kk - 1) < len).count()
        };
        let (ho, wo) = (fits(hh, kh, dh, sh), fits(ww, kw, dw, sw));
        out_dims = if two_d { vec![ho, wo] } else { vec![wo] };
        let (cig, cog) = (cin / g, cout / g);
        for oc in 0..cout {
            let grp = oc / cog;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = 0.0;
                    for ic in 0..cig {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let (iy, ix) = (oy * sh + ky * dh, ox * sw + kx * dw);
                                let xv = xp[((grp * cig + ic) * hh + iy) * ww + ix];
                                ops.mac(&mut acc, xv, w[((oc * cig + ic) * kh + ky) * kw + kx]);
                            }
                        }
                    }
                    if bias {
                        acc += b[oc];
                        ops.other += 1;
                    }
                    std::hint::black_box(acc);
                }
            }
        }
    }
    out_dims
}

type ConvCase = (usize, usize, usize, usize, bool, Vec<usize>, Vec<usize>, usize, usize, usize);

fn conv_case() -> impl Strategy<Value = ConvCase> {
    // (n, groups, cin/g, cout/g, bias, dims, kernel, stride, pad, dilation)
    (
        1usize..3,
        1usize..4,
        1usize..4,
        1usize..4,
        any::<bool>(),
        prop::collection::vec(1usize..9, 1..=2),
        1usize..4,
        1usize..4,
        0usize..3,
        1usize..3,
    )
        .prop_map(|(n, g, cig, cog, bias, dims, k, s, p, d)| {
            let kernel = vec![k; dims.len()];
            (n, g, cig, cog, bias, dims, kernel, s, p, d)
        })
}

fn pool_window(x: usize, p: usize) -> usize {
    x + 2 * p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn conv_matches_a_counting_convolution((n, g, cig, cog, bias, dims, kernel, s, p, d) in conv_case(), seed in any::<u64>()) {
        let (cin, cout) = (g * cig, g * cog);
        let sp = dims.len();
        let conv = Conv { in_channels: cin, out_channels: cout, kernel: kernel.clone(), stride: vec![s; sp], padding: vec![p; sp], dilation: vec![d; sp], output_padding: vec![0; sp], groups: g, bias, transposed: false };
        let mut shape = vec![n, cin];
        shape.extend(&dims);
        let span = d * (kernel[0] - 1) + 1;
        let result = Layer::Conv(conv).analyse("c", &[shape]);
        if dims.iter().any(|&x| span > pool_window(x, p)) {
            prop_assert!(result.unwrap_err().to_string().contains("larger than padded input"));
            return Ok(());
        }
        let (out, count) = result.unwrap();
        let cost = count.dense_cost().unwrap();
        let mut ops = Ops::default();
        let odims = naive_conv(&mut ops, n, cin, cout, &dims, &kernel, &vec![s; sp], &vec![p; sp], &vec![d; sp], g, bias, &mut Rng(seed));
        prop_assert_eq!(&out[2..], &odims[..]);
        prop_assert_eq!(cost.macs, ops.macs);
        prop_assert_eq!(cost.flops, 2 * ops.macs + ops.other);
        prop_assert_eq!(cost.params, (cout * cig * kernel.iter().product::<usize>() + if bias { cout } else { 0 }) as u64);
    }

    #[test]
    fn depthwise_conv_matches(c in 1usize..6, h in 3usize..10, w in 3usize..10, s in 1usize..3, seed in any::<u64>()) {
        let conv = Conv::d2(c, c, 3).stride(s).padding(1).groups(c).bias(false);
        let (out, cost) = dense(&Layer::Conv(conv), &[vec![1, c, h, w]]);
        let mut ops = Ops::default();
        let odims = naive_conv(&mut ops, 1, c, c, &[h, w], &[3, 3], &[s, s], &[1, 1], &[1, 1], c, false, &mut Rng(seed));
        prop_assert_eq!(&out[2..], &odims[..]);
        prop_assert_eq!(cost.macs, ops.macs);
        prop_assert_eq!(cost.params, (c * 9) as u64);
    }

    #[test]
    fn transposed_conv_matches_a_scattering_convolution(cin in 1usize..4, cout in 1usize..4, h in 1usize..6, w in 1usize..6, k in 1usize..4, s in 1usize..3, p in 0usize..2, seed in any::<u64>()) {
        let layer = Layer::Conv(Conv::transpose2d(cin, cout, k).stride(s).padding(p));
        let result = layer.analyse("t", &[vec![1, cin, h, w]]);
        // Naive: scatter every input pixel through the kernel into the full output, then crop p per side.
        let (fh, fw) = ((h - 1) * s + k, (w - 1) * s + k);
        if fh <= 2 * p || fw <= 2 * p {
            prop_assert!(result.is_err());
            return Ok(());
        }
        let (out, count) = result.unwrap();
        let cost = count.dense_cost().unwrap();
        let mut rng = Rng(seed);
        let (x, wt) = (rng.vec(cin * h * w), rng.vec(cin * cout * k * k));
        let mut full = vec![0.0; cout * fh * fw];
        let mut ops = Ops::default();
        for ic in 0..cin { for iy in 0..h { for ix in 0..w { for oc in 0..cout { for ky in 0..k { for kx in 0..k {
            let dst = &mut full[(oc * fh + iy * s + ky) * fw + ix * s + kx];
            ops.mac(dst, x[(ic * h + iy) * w + ix], wt[((ic * cout + oc) * k + ky) * k + kx]);
        }}}}}}
        prop_assert_eq!(out, vec![1, cout, fh - 2 * p, fw - 2 * p]);
        prop_assert_eq!(cost.macs, ops.macs);
    }

    #[test]
    fn linear_and_matmul_match_triple_loops(b in 1usize..4, m in 1usize..7, k in 1usize..7, n in 1usize..7, bias in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let (x, w) = (rng.vec(b * m * k), rng.vec(k * n));
        let mut ops = Ops::default();
        for bi in 0..b { for i in 0..m { for j in 0..n {
            let mut acc = 0.0;
            for t in 0..k { ops.mac(&mut acc, x[(bi * m + i) * k + t], w[t * n + j]); }
            if bias { acc += 1.0; ops.other += 1; }
            std::hint::black_box(acc);
        }}}
        let (out, cost) = dense(&Layer::Linear(Linear::new(k, n).bias(bias)), &[vec![b, m, k]]);
        prop_assert_eq!(out, vec![b, m, n]);
        prop_assert_eq!((cost.macs, cost.flops), (ops.macs, 2 * ops.macs + ops.other));
        let (out, cost) = dense(&Layer::MatMul, &[vec![b, m, k], vec![b, k, n]]);
        prop_assert_eq!(out, vec![b, m, n]);
        prop_assert_eq!(cost.macs, b as u64 * (m * k * n) as u64);
        prop_assert_eq!(cost.macs, ops.macs);
    }

    #[test]
    fn attention_matches_a_counting_attention(n in 1usize..3, lq in 1usize..6, lk in 1usize..6, hkv in 1usize..3, group in 1usize..3, d in 1usize..4, e in 1usize..6, bias in any::<bool>(), cross in any::<bool>(), seed in any::<u64>()) {
        let h = hkv * group;
        let lk = if cross { lk } else { lq };
        let mut rng = Rng(seed);
        let mut ops = Ops::default();
        // Projections: y[t, o] = sum_i x[t, i] W[o, i] (+ b[o]).
        let project = |ops: &mut Ops, rng: &mut Rng, x: &[f64], tokens: usize, i: usize, o: usize| -> Vec<f64> {
            let w = rng.vec(o * i);
            let mut y = vec![0.0; tokens * o];
            for t in 0..tokens { for oo in 0..o {
                let mut acc = 0.0;
                for ii in 0..i { ops.mac(&mut acc, x[t * i + ii], w[oo * i + ii]); }
                if bias { acc += 0.1; ops.other += 1; }
                y[t * o + oo] = acc;
            }}
            y
        };
        let x = rng.vec(n * lq * e);
        let ctx = if cross { rng.vec(n * lk * e) } else { x.clone() };
        let q = project(&mut ops, &mut rng, &x, n * lq, e, h * d);
        let kk = project(&mut ops, &mut rng, &ctx, n * lk, e, hkv * d);
        let v = project(&mut ops, &mut rng, &ctx, n * lk, e, hkv * d);
        let mut attn_out = vec![0.0; n * lq * h * d];
        for b in 0..n { for head in 0..h {
            let kvh = head / group;
            for i in 0..lq {
                let mut scores = vec![0.0; lk];
                for (j, sc) in scores.iter_mut().enumerate() {
                    let mut acc = 0.0;
                    for t in 0..d { ops.mac(&mut acc, q[(b * lq + i) * h * d + head * d + t], kk[(b * lk + j) * hkv * d + kvh * d + t]); }
                    *sc = acc / (d as f64).sqrt();
                    ops.other += 1;
                }
                // Stable softmax, counting max comparisons, subtracts, exps, sums, divides.
                let mut mx = scores[0];
                for &sc in &scores[1..] { mx = mx.max(sc); ops.other += 1; }
                for sc in scores.iter_mut() { *sc = (*sc - mx).exp(); ops.other += 2; }
                let mut sum = scores[0];
                for &sc in &scores[1..] { sum += sc; ops.other += 1; }
                for sc in scores.iter_mut() { *sc /= sum; ops.other += 1; }
                for t in 0..d {
                    let mut acc = 0.0;
                    for (j, &p) in scores.iter().enumerate() { ops.mac(&mut acc, p, v[(b * lk + j) * hkv * d + kvh * d + t]); }
                    attn_out[(b * lq + i) * h * d + head * d + t] = acc;
                }
            }
        }}
        let _ = project(&mut ops, &mut rng, &attn_out, n * lq, h * d, e);
        let layer = Layer::Attention(Attention::new(e, h).kv_heads(hkv).head_dim(d).bias(bias));
        let inputs = if cross { vec![vec![n, lq, e], vec![n, lk, e]] } else { vec![vec![n, lq, e]] };
        let (out, cost) = dense(&layer, &inputs);
        prop_assert_eq!(out, vec![n, lq, e]);
        prop_assert_eq!(cost.macs, ops.macs);
        prop_assert_eq!(cost.flops, 2 * ops.macs + ops.other);
        let params = (h * d * e + 2 * hkv * d * e + h * d * e) + if bias { h * d + 2 * hkv * d + e } else { 0 };
        prop_assert_eq!(cost.params, params as u64);
    }

    #[test]
    fn pooling_matches_window_loops(c in 1usize..3, h in 1usize..9, w in 1usize..9, k in 1usize..4, s in 1usize..3, p in 0usize..2, max in any::<bool>()) {
        let kind = if max { PoolKind::Max } else { PoolKind::Avg };
        let layer = Layer::Pool { kind, kernel: vec![k, k], stride: vec![s, s], padding: vec![p, p] };
        let result = layer.analyse("pool", &[vec![1, c, h, w]]);
        if 2 * p > k || k > h + 2 * p || k > w + 2 * p {
            prop_assert!(result.is_err());
            return Ok(());
        }
        let (out, count) = result.unwrap();
        let mut ops = 0u64;
        let fits = |len: usize| (0..).take_while(|o| o * s + k <= len + 2 * p).count();
        let (ho, wo) = (fits(h), fits(w));
        for _ in 0..c { for _ in 0..ho { for _ in 0..wo {
            let mut first = true;
            for _ in 0..k * k { if first { first = false } else { ops += 1 } }
            if !max { ops += 1 } // the divide
        }}}
        prop_assert_eq!(out, vec![1, c, ho, wo]);
        prop_assert_eq!(count.dense_cost().unwrap().flops, ops);
    }

    #[test]
    fn adaptive_pool_matches_pytorch_bins(h in 1usize..12, w in 1usize..12, oh in 1usize..5, ow in 1usize..5, max in any::<bool>()) {
        let kind = if max { PoolKind::Max } else { PoolKind::Avg };
        let (out, cost) = dense(&Layer::AdaptivePool { kind, output: vec![oh, ow] }, &[vec![2, 3, h, w]]);
        let bin = |i: usize, n: usize, o: usize| ((i * n) as f64 / o as f64).floor() as usize..(((i + 1) * n) as f64 / o as f64).ceil() as usize;
        let mut ops = 0u64;
        for i in 0..oh { for j in 0..ow {
            let cells = bin(i, h, oh).len() * bin(j, w, ow).len();
            ops += if max { cells as u64 - 1 } else { cells as u64 };
        }}
        prop_assert_eq!(out, vec![2, 3, oh, ow]);
        prop_assert_eq!(cost.flops, 6 * ops);
    }
}

#[test]
fn elementwise_norm_and_activation_rules() {
    let x = vec![2, 5, 8];
    let f = |l: Layer| dense(&l, std::slice::from_ref(&x)).1.flops;
    assert_eq!(f(Layer::Activation(Activation::Relu)), 80);
    assert_eq!(f(Layer::Activation(Activation::Gelu)), 400);
    assert_eq!(f(Layer::Activation(Activation::Silu)), 320);
    assert_eq!(f(Layer::Softmax), 10 * (5 * 8 - 2));
    assert_eq!(f(Layer::LayerNorm { dim: 8, bias: true }), 10 * (8 * 8 + 2));
    assert_eq!(f(Layer::RmsNorm { dim: 8 }), 10 * (4 * 8 + 2));
    assert_eq!(f(Layer::BatchNorm { channels: 5 }), 160);
    assert_eq!(dense(&Layer::Add, &[x.clone(), x.clone()]).1.flops, 80);
    let (out, c) = dense(&Layer::Embedding { rows: 100, dim: 4 }, &[vec![2, 3]]);
    assert_eq!((out, c.params, c.flops), (vec![2, 3, 4], 400, 0));
    assert_eq!(c.weight_read_bytes, 2 * 3 * 4 * 4); // only the rows looked up
    let (_, count) =
        Layer::Opaque { what: "custom CUDA op".into() }.analyse("op", std::slice::from_ref(&x)).unwrap();
    assert!(count.notes.iter().any(|n| n.contains("not counted: custom CUDA op")));
    let _ = Compression::default();
}
