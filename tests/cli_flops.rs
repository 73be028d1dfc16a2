//! Runs the `greenai flops` binary.
#![cfg(feature = "cli")]

mod common;
use common::greenai;

#[test]
fn resnet50_json_prints_published_params_and_macs() {
    let (ok, stdout, stderr) = greenai(&["flops", "resnet50", "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
    let total = &v["report"]["total"];
    assert_eq!(total["params"], 25_557_032);
    let macs = total["macs"].as_u64().unwrap() as f64;
    assert!((macs / 4.089e9 - 1.0).abs() < 0.005, "{macs}");
    assert!(total["flops"].as_u64().unwrap() > 2 * total["macs"].as_u64().unwrap());
    assert!(v["footprint"]["per_million"]["gco2e"].as_f64().unwrap() > 0.0);
}

#[test]
fn table_shows_layers_totals_energy_and_compression() {
    let (ok, stdout, stderr) = greenai(&["flops", "mobilenet_v2", "--dtype", "int8", "--sparsity", "2:4"]);
    assert!(ok, "{stderr}");
    for needle in ["features.1.conv.0.0", "total:", "gCO2e", "wind", "before", "after", "not counted"] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
}

#[test]
fn hf_config_and_seq_len() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        r#"{"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 8,
            "num_key_value_heads": 2, "intermediate_size": 688, "vocab_size": 1000, "max_position_embeddings": 512}"#,
    )
    .unwrap();
    let (ok, stdout, stderr) =
        greenai(&["flops", "--hf-config", path.to_str().unwrap(), "--seq-len", "64", "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["report"]["input"], serde_json::json!([1, 64]));
}

#[test]
fn bad_input_fails_cleanly() {
    let (ok, _, stderr) = greenai(&["flops", "resnet19"]);
    assert!(!ok && stderr.contains("resnet19") && !stderr.contains("panicked"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"model_type": "bert", "hidden_size": "big"}"#).unwrap();
    let (ok, _, stderr) = greenai(&["flops", "--hf-config", path.to_str().unwrap()]);
    assert!(!ok && stderr.contains("hidden_size") && !stderr.contains("panicked"), "{stderr}");
    std::fs::write(&path, "{not json").unwrap();
    let (ok, _, stderr) = greenai(&["flops", "--hf-config", path.to_str().unwrap()]);
    assert!(!ok && stderr.contains("config.json"), "{stderr}");
    let (ok, _, stderr) = greenai(&["flops", "--hf-config", "/nonexistent/config.json"]);
    assert!(!ok && stderr.contains("/nonexistent/config.json"), "{stderr}");
    let (ok, _, stderr) = greenai(&["flops", "resnet50", "--sparsity", "1.5"]);
    assert!(!ok && stderr.contains("sparsity"), "{stderr}");
    let (ok, _, stderr) = greenai(&["flops", "resnet50", "--dtype", "fp8"]);
    assert!(!ok && stderr.contains("dtype"), "{stderr}");
    let (ok, _, stderr) = greenai(&["flops", "bert_base", "--seq-len", "513"]);
    assert!(!ok && stderr.contains("seq_len"), "{stderr}");
}
