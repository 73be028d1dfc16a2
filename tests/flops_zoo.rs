//! The zoo against published parameter counts and MACs.
//!
//! Vision figures: torchvision's weight metadata (`num_params` and `_ops`, GMACs at 224x224, counted on the
//! model as defined in `torchvision/models/*.py`; shown as "Params" and "GFLOPS" in the docs' classification
//! table, e.g. https://pytorch.org/vision/stable/models/generated/torchvision.models.resnet50.html):
//! resnet18 11,689,512 / 1.814, resnet34 21,797,672 / 3.664, resnet50 25,557,032 / 4.089,
//! resnet101 44,549,160 / 7.801, vgg16 138,357,544 / 15.47, alexnet 61,100,840 / 0.714,
//! mobilenet_v2 3,504,872 / 0.301, vit_b_16 86,567,656 / 17.564.
//! BERT-base: 109,482,240 params with the pooler (Hugging Face `bert-base-uncased`), about 11.17 GMACs at 128.
//! GPT-2 small: 124,439,808 params (Hugging Face `gpt2`, LM head tied to the token embedding).

use greenai::flops::{zoo, Compression};

fn check(name: &str, params: u64, gmacs: f64) {
    let m = zoo::by_name(name, 1, None).unwrap();
    let t = m.report(&Compression::default()).unwrap().total;
    let rel = (t.macs as f64 / 1e9 - gmacs).abs() / gmacs;
    eprintln!("{name}: {} params, {} MACs ({:.3}%)", t.params, t.macs, rel * 100.0);
    assert_eq!(t.params, params, "{name} params");
    assert!(rel <= 0.005, "{name}: {} MACs vs published {gmacs} G", t.macs);
}

#[test]
fn resnets_match_torchvision() {
    check("resnet18", 11_689_512, 1.814);
    check("resnet34", 21_797_672, 3.664);
    check("resnet50", 25_557_032, 4.089);
    check("resnet101", 44_549_160, 7.801);
}

#[test]
fn vgg_alexnet_mobilenet_vit_match_torchvision() {
    check("vgg16", 138_357_544, 15.47);
    check("alexnet", 61_100_840, 0.714);
    check("mobilenet_v2", 3_504_872, 0.301);
    check("vit_b_16", 86_567_656, 17.564);
}

#[test]
fn bert_base_matches_hugging_face() {
    check("bert_base", 109_482_240, 11.17);
}

#[test]
fn gpt2_params_match_hugging_face_and_macs_follow_the_closed_form() {
    let t = zoo::by_name("gpt2", 1, Some(1024)).unwrap().report(&Compression::default()).unwrap().total;
    assert_eq!(t.params, 124_439_808);
    // Per token: 12 layers x 12 d^2 weights, plus the tied LM head d x vocab; attention 2 L d per layer.
    let (d, l, v, n) = (768u64, 12u64, 50257u64, 1024u64);
    let expected = n * (l * 12 * d * d + d * v) + l * 2 * n * n * d;
    assert_eq!(t.macs, expected);
}

#[test]
fn batch_scales_macs_not_params() {
    let one = zoo::by_name("resnet18", 1, None).unwrap().report(&Compression::default()).unwrap().total;
    let four = zoo::by_name("resnet18", 4, None).unwrap().report(&Compression::default()).unwrap().total;
    assert_eq!(four.macs, 4 * one.macs);
    assert_eq!(four.params, one.params);
}

#[test]
fn unknown_model_is_an_error_naming_it() {
    let e = zoo::by_name("resnet19", 1, None).unwrap_err().to_string();
    assert!(e.contains("resnet19") && e.contains("resnet50"), "{e}");
}
