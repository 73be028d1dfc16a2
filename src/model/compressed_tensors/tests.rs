use super::*;
use crate::quant::{rtn_quantize, GptqOptions};

fn rng(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

#[test]
fn pack_matches_the_documented_words() {
    // compressed-tensors' pack_to_int32 docstring: 8-bit [1, 2] -> [129, 130] -> 33409.
    assert_eq!(pack_int32(&[1, 2], 1, 2, 8), vec![33409]);
    // 4-bit: -8..=7 become 0..=15, eight per word, first in the lowest nibble.
    let v: Vec<i8> = (-8..8).collect();
    assert_eq!(pack_int32(&v, 1, 16, 4), vec![0x7654_3210, 0xFEDC_BA98_u32 as i32]);
    // 3 bits straddle words: element 10 starts at bit 30.
    let v = [3i8; 11];
    let w = pack_int32(&v, 1, 11, 3);
    assert_eq!(w.len(), 2);
    assert_eq!(w[0] as u32, (0..11).fold(0u64, |acc, i| acc | (7u64 << (3 * i))) as u32);
    assert_eq!(w[1], 1);
}

#[test]
fn pack_round_trips_every_width_and_shape() {
    let mut next = rng(7);
    for bits in 1..=8u32 {
        let half = 1i32 << (bits - 1);
        for (rows, cols) in [(0, 5), (1, 1), (3, 7), (2, 31), (5, 33), (4, 64), (3, 97)] {
            let v: Vec<i8> = (0..rows * cols)
                .map(|_| ((next() * half as f32).floor() as i32).clamp(-half, half - 1) as i8)
                .collect();
            let p = pack_int32(&v, rows, cols, bits);
            assert_eq!(p.len(), rows * (cols * bits as usize).div_ceil(32));
            assert_eq!(unpack_int32(&p, rows, cols, bits), v, "bits {bits} {rows}x{cols}");
            let p0 = pack_int32_dim0(&v, rows, cols, bits);
            assert_eq!(p0.len(), (rows * bits as usize).div_ceil(32) * cols);
            assert_eq!(unpack_int32_dim0(&p0, rows, cols, bits), v);
        }
    }
}

fn entry<'a>(name: &'a str, t: &'a OutTensor<'_>) -> crate::model::TensorEntry<'a> {
    crate::model::TensorEntry { name, dtype: t.dtype, shape: &t.shape, bytes: t.bytes.clone() }
}

fn parts<'a>(out: &'a [(String, OutTensor<'a>)]) -> ModuleTensors<'a> {
    let find = |s: &str| out.iter().find(|(n, _)| n.ends_with(s)).map(|(n, t)| entry(n, t));
    ModuleTensors {
        weight: find(".weight").or_else(|| find(".weight_packed")).unwrap(),
        scale: find(".weight_scale").unwrap(),
        zero_point: find(".weight_zero_point"),
        shape: find(".weight_shape"),
        g_idx: find(".weight_g_idx"),
    }
}

#[test]
fn rtn_stays_within_half_a_step_and_round_trips() {
    let mut next = rng(3);
    for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        for scheme in [Scheme::W8A8, Scheme::W4A16, Scheme::W8A16] {
            for (symmetric, strategy) in [
                (true, Strategy::Channel),
                (false, Strategy::Channel),
                (true, Strategy::Group(16)),
                (false, Strategy::Group(16)),
            ] {
                let s = CtScheme { scheme, strategy, symmetric, act_order: None };
                let (rows, cols) = (5, 48);
                let mut w: Vec<f32> = (0..rows * cols).map(|_| round_to(dtype, next() * 3.0)).collect();
                w[..cols].iter_mut().for_each(|v| *v = 0.0); // an all-zero row
                let out = quantize_weight("m.weight", &w, rows, cols, dtype, &s).unwrap();
                let (deq, shape, dt) = dequantize_module("m", &parts(&out), None, None).unwrap();
                assert_eq!((shape, dt), (vec![rows, cols], dtype));
                let lv = rtn_levels("m.weight", &w, rows, cols, dtype, &s).unwrap();
                let gs = if let Strategy::Group(g) = strategy { g } else { cols };
                for (i, (&a, &b)) in w.iter().zip(&deq).enumerate() {
                    let scale = lv.scales[(i / cols) * lv.groups + (i % cols) / gs];
                    // half a step, the clipping of an asymmetric range, and the dtype's roundings
                    let bound = if symmetric { 0.5 } else { 1.0 } * scale
                        + 0.02 * a.abs().max(b.abs()) * (dtype != Dtype::F32) as u8 as f32;
                    assert!(
                        (a - b).abs() <= bound * 1.0001,
                        "{dtype:?} {s:?} [{i}] {a} vs {b}, scale {scale}"
                    );
                }
                assert!(deq[..cols].iter().all(|&v| v == 0.0));
            }
        }
    }
}

#[test]
fn gptq_output_packs_and_dequantizes_as_gptq_does() {
    let mut next = rng(11);
    let (rows, cols) = (6, 64);
    let w: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
    for symmetric in [true, false] {
        let opts = GptqOptions { bits: 4, group_size: 16, symmetric, ..GptqOptions::default() };
        let mut g = rtn_quantize(&w, rows, cols, &opts).unwrap();
        let s = CtScheme { scheme: Scheme::W4A16, strategy: Strategy::Group(16), symmetric, act_order: None };
        let out = pack_gptq("m.weight", &g, Dtype::F32, &s).unwrap();
        assert!(out.iter().all(|(n, _)| n != "m.weight_g_idx"));
        let (deq, _, _) = dequantize_module("m", &parts(&out), Some(4), Some(16)).unwrap();
        assert_eq!(deq, g.dequantize());
        // groups out of column order need act order `group`, which writes g_idx
        g.g_idx.swap(0, 63);
        assert!(pack_gptq("m.weight", &g, Dtype::F32, &s).is_err());
        let s = CtScheme { act_order: Some(ActOrder::Group), ..s };
        let out = pack_gptq("m.weight", &g, Dtype::F32, &s).unwrap();
        let (deq, _, _) = dequantize_module("m", &parts(&out), Some(4), Some(16)).unwrap();
        assert_eq!(deq, g.dequantize());
    }
}

#[test]
fn bad_weights_are_refused() {
    let s = CtScheme::preset(Scheme::W4A16);
    let w = vec![0.5f32; 2 * 100];
    assert!(quantize_weight("m.weight", &w, 2, 100, Dtype::F32, &s)
        .unwrap_err()
        .to_string()
        .contains("multiple of the group size"));
    let mut w = vec![0.5f32; 2 * 128];
    w[3] = f32::NAN;
    assert!(quantize_weight("m.weight", &w, 2, 128, Dtype::F32, &s).is_err());
    assert!(quantize_weight("m.weight", &w[..10], 2, 128, Dtype::F32, &s).is_err());
    assert!(quantize_weight("m.weight", &vec![0.5; 256], 2, 128, Dtype::I8, &s).is_err());
}

#[test]
fn targets_are_linear_weights() {
    assert!(is_linear_weight("model.layers.0.self_attn.q_proj.weight", &[8, 8]));
    assert!(is_linear_weight("encoder.layer.0.attention.self.query.weight", &[8, 8]));
    assert!(!is_linear_weight("model.embed_tokens.weight", &[8, 8]));
    assert!(!is_linear_weight("embeddings.word_embeddings.weight", &[8, 8]));
    assert!(!is_linear_weight("lm_head.weight", &[8, 8]));
    assert!(!is_linear_weight("model.norm.weight", &[8]));
    assert!(!is_linear_weight("model.layers.0.q_proj.bias", &[8, 8]));
}
