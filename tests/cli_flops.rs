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

/// Issue 20, finding 11: a config.json with an absurd layer count is a clear error, not a run that never
/// ends (4294967296 layers did not finish; 10k took 65 s). The run is killed after 60 s so that a
/// regression fails instead of hanging.
#[test]
fn hf_config_with_a_huge_layer_count_is_refused_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    for layers in ["4294967296", "100000"] {
        std::fs::write(
            &path,
            format!(
                r#"{{"model_type": "llama", "hidden_size": 256, "num_hidden_layers": {layers}, "num_attention_heads": 8,
                "num_key_value_heads": 2, "intermediate_size": 688, "vocab_size": 1000, "max_position_embeddings": 512}}"#
            ),
        )
        .unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_greenai"))
            .args(["flops", "--hf-config", path.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > std::time::Duration::from_secs(60) {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("{layers} layers: still running after 60 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{layers} layers accepted");
        assert!(stderr.contains("num_hidden_layers") && stderr.contains(layers), "{stderr}");
    }
}
