//! Structured shrinking: the shrunk network computes what the masked one did (f64 reference), and
//! the conv chain keeps exactly the declared channels.

use greenai::prune::criteria::{channels_alive, SplitMix64};
use greenai::prune::shrink::{self, BatchNorm, Conv2d, Linear};
use greenai::prune::{ln_structured, CountRule, Norm};

fn forward(l1: &Linear, l2: &Linear, x: &[f32]) -> Vec<f64> {
    let hidden: Vec<f64> = (0..l1.out_features)
        .map(|j| {
            let b = l1.bias.as_ref().map_or(0.0, |b| f64::from(b[j]));
            let s: f64 = (0..l1.in_features)
                .map(|i| f64::from(l1.weight[j * l1.in_features + i]) * f64::from(x[i]))
                .sum();
            (s + b).max(0.0)
        })
        .collect();
    (0..l2.out_features)
        .map(|o| (0..l2.in_features).map(|j| f64::from(l2.weight[o * l2.in_features + j]) * hidden[j]).sum())
        .collect()
}

#[test]
fn shrunk_linear_pair_computes_the_masked_function() {
    let mut rng = SplitMix64::new(5);
    let mut val = || rng.below(2001) as f32 / 100.0 - 10.0;
    let (inp, hid, out) = (7, 10, 3);
    let w1: Vec<f32> = (0..hid * inp).map(|_| val()).collect();
    let mask = ln_structured(&w1, &[hid, inp], 0, Norm::L2, 0.4, CountRule::TORCH, None).unwrap();
    let keep = channels_alive(&mask, &[hid, inp], 0).unwrap();
    let bias: Vec<f32> = (0..hid).map(|j| if keep[j] { 0.5 } else { 0.0 }).collect();
    let l1 =
        Linear { weight: mask.apply(&w1).unwrap(), out_features: hid, in_features: inp, bias: Some(bias) };
    let l2 = Linear {
        weight: (0..out * hid).map(|_| val()).collect(),
        out_features: out,
        in_features: hid,
        bias: None,
    };
    let (s1, s2) = shrink::shrink_linear_pair(&l1, &l2, &keep).unwrap();
    assert_eq!((s1.out_features, s2.in_features), (6, 6));
    let x: Vec<f32> = (0..inp).map(|_| val()).collect();
    for (a, b) in forward(&l1, &l2, &x).iter().zip(forward(&s1, &s2, &x)) {
        assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0));
    }
    assert!(shrink::shrink_linear_pair(&l1, &l2, &keep[1..]).is_err());
    assert!(shrink::shrink_linear_pair(&l1, &s2, &keep).is_err());
}

#[test]
fn conv_bn_conv_keeps_the_declared_channels() {
    let w1: Vec<f32> = (0..4 * 2 * 3 * 3).map(|i| i as f32).collect();
    let w2: Vec<f32> = (0..20).map(|i| i as f32).collect();
    let c1 = Conv2d { weight: w1, shape: [4, 2, 3, 3], bias: Some(vec![0.0, 1.0, 2.0, 3.0]) };
    let c2 = Conv2d { weight: w2, shape: [5, 4, 1, 1], bias: None };
    let v = vec![1.0, 2.0, 3.0, 4.0];
    let bn = BatchNorm { gamma: v.clone(), beta: v.clone(), mean: v.clone(), var: v, eps: 1e-5 };
    let keep = [true, false, true, false];
    let (s1, sbn, s2) = shrink::shrink_conv_bn_conv(&c1, &bn, &c2, &keep).unwrap();
    assert_eq!(s1.shape, [2, 2, 3, 3]);
    assert_eq!(s2.shape, [5, 2, 1, 1]);
    assert_eq!(s1.bias, Some(vec![0.0, 2.0]));
    assert_eq!(sbn.gamma, vec![1.0, 3.0]);
    // Filter 2 of conv1 starts at 2 * 18 = 36; conv2 keeps input channels 0 and 2 of each filter.
    assert_eq!(s1.weight[18], 36.0);
    assert_eq!(s2.weight[..4], [0.0, 2.0, 4.0, 6.0]);
    assert!(shrink::shrink_conv_bn_conv(&c1, &bn, &c1, &keep).is_err());
    assert!(shrink::select_channels(&[1.0; 6], &[2, 3], 2, &[true, true]).is_err());
}
