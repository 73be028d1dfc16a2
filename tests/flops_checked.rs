//! Issue 20: the FLOPs calculator's arithmetic on hostile hyper-parameters (huge padding, stride 0, kernels
//! larger than the input, sizes near `usize::MAX`) gives errors, never a wrapped count or a panic; and
//! the transformer builder is linear in its layer count.

use greenai::flops::{
    hf_config, zoo, Activation, Attention, Compression, Conv, Layer, Linear, Model, PoolKind,
};
use proptest::prelude::*;

fn analyse(layer: &Layer, inputs: &[Vec<usize>]) -> greenai::Result<(Vec<usize>, u64)> {
    let (shape, count) = layer.analyse("l", inputs)?;
    let cost = count.cost(&Compression::default())?.0;
    Ok((shape, cost.flops))
}

fn err(layer: &Layer, inputs: &[Vec<usize>]) -> String {
    match analyse(layer, inputs) {
        Ok(r) => panic!("{layer:?} on {inputs:?} accepted: {r:?}"),
        Err(e) => e.to_string(),
    }
}

const HUGE: usize = usize::MAX;

#[test]
fn conv_output_sizes_that_overflow_are_errors() {
    let x = vec![vec![1, 3, 8, 8]];
    // Padding near SIZE_MAX: n + 2p wrapped to a small extent and was accepted.
    for p in [HUGE, HUGE / 2, HUGE / 2 - 3] {
        let e = err(&Layer::Conv(Conv::d2(3, 4, 3).padding(p)), &x);
        assert!(e.contains("overflows"), "{e}");
    }
    // Dilation times kernel past usize.
    let e = err(&Layer::Conv(Conv::d2(3, 4, 3).dilation(HUGE)), &x);
    assert!(e.contains("overflows"), "{e}");
    // Transposed: (n - 1) * stride past usize.
    let e = err(&Layer::Conv(Conv::transpose2d(3, 4, 3).stride(HUGE / 2)), &x);
    assert!(e.contains("overflows"), "{e}");
    let e = err(&Layer::Conv(Conv::transpose2d(3, 4, 3).padding(HUGE)), &x);
    assert!(e.contains("overflows") || e.contains("removes the whole output"), "{e}");
    // Stride 0, kernel 0, kernel larger than the input.
    let e = err(&Layer::Conv(Conv::d2(3, 4, 3).stride(0)), &x);
    assert!(e.contains("stride"), "{e}");
    let e = err(&Layer::Conv(Conv::d2(3, 4, 0)), &x);
    assert!(e.contains("kernel"), "{e}");
    let e = err(&Layer::Conv(Conv::d2(3, 4, 9)), &x);
    assert!(e.contains("larger than padded input"), "{e}");
    // A valid huge-but-fitting padding still works: 8 + 2 * 2^20 - 2 + 1 outputs per side.
    let (shape, _) = analyse(&Layer::Conv(Conv::d2(3, 4, 3).padding(1 << 20)), &x).unwrap();
    assert_eq!(shape, [1, 4, 8 + (2 << 20) - 2, 8 + (2 << 20) - 2]);
}

#[test]
fn pool_and_other_layers_that_overflow_are_errors() {
    let pool = |k: usize, s: usize, p: usize| Layer::Pool {
        kind: PoolKind::Max,
        kernel: vec![k, k],
        stride: vec![s, s],
        padding: vec![p, p],
    };
    let x = vec![vec![1, 3, 8, 8]];
    assert!(err(&pool(2, 0, 0), &x).contains("stride"));
    assert!(err(&pool(0, 1, 0), &x).contains("kernel"));
    assert!(err(&pool(9, 1, 0), &x).contains("larger than padded input"));
    assert!(err(&pool(3, 1, HUGE), &x).contains("exceeds half the kernel"));
    // Padding of half a huge kernel: 8 + 2p overflows.
    assert!(err(&pool(HUGE, 1, HUGE / 2), &x).contains("overflows"));
    // Counts past u64 are overflow errors.
    let big = vec![vec![HUGE, HUGE]];
    assert!(err(&Layer::Softmax, &big).contains("exceeds u64"));
    assert!(err(&Layer::LayerNorm { dim: HUGE, bias: true }, &big).contains("exceeds u64"));
    assert!(err(&Layer::RmsNorm { dim: HUGE }, &big).contains("exceeds u64"));
    assert!(err(&Layer::BatchNorm { channels: HUGE }, &big).contains("exceeds u64"));
    assert!(err(&Layer::ClassToken { dim: 4 }, &[vec![1, HUGE, 4]]).contains("overflows"));
    assert!(err(&Layer::Add, &[vec![HUGE, 4], vec![HUGE, 4]]).contains("exceeds u64"));
    let att = Layer::Attention(Attention::new(8, 2));
    assert!(err(&att, &[vec![HUGE, 3, 8]]).contains("exceeds u64"));
    let att = Layer::Attention(Attention::new(8, 2).head_dim(HUGE));
    assert!(err(&att, &[vec![1, 3, 8]]).contains("exceeds u64"));
    // A low rank past every matrix size is reported as no saving, not an overflow.
    let mut m = Model::new("m", &[1, 16]).unwrap();
    m.add("fc", Layer::Linear(Linear::new(16, 16))).unwrap();
    let r = m.report(&Compression::default().with_rank(u64::MAX)).unwrap();
    assert_eq!(r.total.macs, 256);
}

#[test]
fn adaptive_pool_of_a_huge_output_is_counted_without_a_loop() {
    // The window sum was a loop over every output cell: 2^40 cells never finished.
    let layer = Layer::AdaptivePool { kind: PoolKind::Avg, output: vec![1 << 40, 1] };
    let (shape, flops) = analyse(&layer, &[vec![1, 1, 7, 5]]).unwrap();
    assert_eq!(shape, [1, 1, 1 << 40, 1]);
    // n + out - gcd(n, out) per dimension: (7 + 2^40 - 1) * (5 + 1 - 1).
    assert_eq!(flops, (7 + (1u64 << 40) - 1) * 5);
}

/// PyTorch's bins, summed cell by cell: the reference for the closed form.
fn window_sum_by_cells(n: usize, out: usize) -> u64 {
    (0..out).map(|i| ((i + 1) * n).div_ceil(out) - i * n / out).sum::<usize>() as u64
}

proptest! {
    #[test]
    fn adaptive_pool_counts_match_the_bins_cell_by_cell(n in 1usize..200, o in 1usize..200, m in 1usize..40, q in 1usize..40) {
        let layer = Layer::AdaptivePool { kind: PoolKind::Avg, output: vec![o, q] };
        let (_, flops) = analyse(&layer, &[vec![2, 3, n, m]]).unwrap();
        prop_assert_eq!(flops, 6 * window_sum_by_cells(n, o) * window_sum_by_cells(m, q));
        let layer = Layer::AdaptivePool { kind: PoolKind::Max, output: vec![o, q] };
        let (_, flops) = analyse(&layer, &[vec![2, 3, n, m]]).unwrap();
        let cells = (o * q) as u64;
        prop_assert_eq!(flops, 6 * (window_sum_by_cells(n, o) * window_sum_by_cells(m, q) - cells));
    }

    /// Any hyper-parameters, small or near `usize::MAX`: an answer or an error, never a panic (overflow
    /// checks are on in tests, so a wrapped intermediate panics here).
    #[test]
    fn any_conv_or_pool_is_an_answer_or_an_error(
        dims in prop::collection::vec(prop_oneof![1usize..20, Just(HUGE), Just(HUGE / 2), Just(1usize << 32)], 4),
        params in prop::collection::vec(prop_oneof![0usize..6, Just(HUGE), Just(HUGE / 2), Just(HUGE / 2 + 1), Just(1usize << 32)], 6),
        transposed in any::<bool>(),
        max in any::<bool>(),
    ) {
        let (k, s, p, d, op, g) = (params[0], params[1], params[2], params[3], params[4], params[5]);
        let conv = Conv { transposed, ..Conv::d2(dims[1], 4, k).stride(s).padding(p).dilation(d).output_padding(op).groups(g) };
        let inputs = [dims.clone()];
        if let Ok((shape, _)) = analyse(&Layer::Conv(conv.clone()), &inputs) {
            // Small enough to check against the formula in u128.
            let (n, k, s, p, d) = (dims[2] as u128, k as u128, s as u128, p as u128, d as u128);
            let span = d * (k - 1) + 1;
            let want = if transposed { (n - 1) * s + span + op as u128 - 2 * p } else { (n + 2 * p - span) / s + 1 };
            prop_assert_eq!(shape[2] as u128, want);
        }
        let kind = if max { PoolKind::Max } else { PoolKind::Avg };
        let _ = analyse(&Layer::Pool { kind, kernel: vec![k, d], stride: vec![s, g], padding: vec![p, op] }, &inputs);
        let _ = analyse(&Layer::Attention(Attention::new(dims[3], g.max(1)).head_dim(d).kv_heads(s)), &[vec![dims[0], dims[1], dims[3]]]);
        let _ = analyse(&Layer::AdaptivePool { kind, output: vec![k, s] }, &inputs);
        let _ = analyse(&Layer::Activation(Activation::Gelu), &inputs);
    }
}

fn llama_config(layers: usize) -> String {
    format!(
        r#"{{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": {layers}, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 160, "vocab_size": 100, "max_position_embeddings": 64}}"#
    )
}

/// Issue 20, finding 11: building was quadratic (each node added scanned every node before it): 1k layers
/// took 0.23 s, 10k 65 s. A 4096-layer model is built and costed here; its counts are exactly 4096 times
/// one layer's plus the same embedding and head.
#[test]
fn a_4096_layer_transformer_is_built_and_counted_linearly() {
    let one = zoo::transformer(&hf_config::parse(&llama_config(1)).unwrap(), 1, 8).unwrap();
    let two = zoo::transformer(&hf_config::parse(&llama_config(2)).unwrap(), 1, 8).unwrap();
    let many = zoo::transformer(&hf_config::parse(&llama_config(4096)).unwrap(), 1, 8).unwrap();
    let per_layer = two.nodes.len() - one.nodes.len();
    assert_eq!(many.nodes.len(), one.nodes.len() + 4095 * per_layer);
    let (c1, c2, cn) = [&one, &two, &many].map(|m| m.report(&Compression::default()).unwrap().total).into();
    assert_eq!(cn.macs, c1.macs + 4095 * (c2.macs - c1.macs));
    assert_eq!(cn.params, c1.params + 4095 * (c2.params - c1.params));
    assert_eq!(many.shape_of("layers.4095.add_2"), Some(&[1, 8, 64][..]));
    // Past the limit: an error naming the field, at once.
    let e = hf_config::parse(&llama_config(zoo::MAX_LAYERS + 1)).unwrap_err().to_string();
    assert!(e.contains("num_hidden_layers"), "{e}");
    let e = hf_config::parse(&llama_config(1 << 32)).unwrap_err().to_string();
    assert!(e.contains("num_hidden_layers"), "{e}");
}

/// The model's name index stays right when a caller edits the public `nodes` field.
#[test]
fn lookups_follow_edits_of_the_public_nodes() {
    let mut m = Model::new("m", &[1, 8]).unwrap();
    m.add("a", Layer::Linear(Linear::new(8, 4))).unwrap().add("b", Layer::Linear(Linear::new(4, 2))).unwrap();
    m.nodes.pop();
    assert_eq!(m.shape_of("b"), None);
    m.add("b", Layer::Linear(Linear::new(4, 3))).unwrap();
    assert_eq!(m.shape_of("b"), Some(&[1, 3][..]));
    m.nodes[1].name = "c".into();
    m.nodes.push(m.nodes[0].clone()); // a duplicate name "a"
    assert_eq!(m.shape_of("c"), Some(&[1, 3][..]));
    assert!(m.add("c", Layer::Activation(Activation::Relu)).is_err());
    assert!(m.add("d", Layer::Activation(Activation::Relu)).is_ok());
}

/// A width whose GPT-2 default inner size (4 x n_embd) overflows is an error, not a panic, and so
/// is the same width in another family (a fuzzer found the default computed eagerly).
#[test]
fn a_width_whose_default_inner_size_overflows_is_an_error() {
    let huge = "8966666666666666666";
    let gpt2 = format!(
        r#"{{"model_type": "gpt2", "n_embd": {huge}, "n_layer": 2, "n_head": 12, "vocab_size": 50257, "n_positions": 1024}}"#
    );
    assert!(hf_config::parse(&gpt2).is_err());
    let qwen2 = format!(
        r#"{{"model_type": "qwen2", "hidden_size": {huge}, "num_hidden_layers": 2, "num_attention_heads": 14,
            "intermediate_size": 4864, "vocab_size": 151936, "max_position_embeddings": 32768}}"#
    );
    let built = hf_config::parse(&qwen2).and_then(|c| zoo::transformer(&c, 1, 8));
    assert!(built.is_err());
}
