//! `greenai inspect`, `compress` and `decompress` as a user runs them: a good file round trips, and
//! every kind of bad input gives a clear error, a non-zero exit, and leaves the output untouched.
#![cfg(feature = "cli")]

mod common;
use common::greenai;

use std::path::Path;

/// A safetensors file built from the format's definition: u64 LE header length, JSON header, data.
fn hand_made(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// A 2-D f32 weight (16 x 32, values from a fixed formula) and an i64 step counter.
fn good_model() -> Vec<u8> {
    let weight: Vec<u8> =
        (0..16 * 32).flat_map(|i: i32| (((i * 37) % 101 - 50) as f32 / 100.0).to_le_bytes()).collect();
    let mut data = weight;
    data.extend_from_slice(&7i64.to_le_bytes());
    let header = format!(
        r#"{{"fc.weight":{{"dtype":"F32","shape":[16,32],"data_offsets":[0,{w}]}},"step":{{"dtype":"I64","shape":[1],"data_offsets":[{w},{e}]}}}}"#,
        w = 16 * 32 * 4,
        e = 16 * 32 * 4 + 8
    );
    hand_made(&header, &data)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Asserts a failed run: non-zero exit, an error line on stderr that contains `needle`.
fn assert_fails(args: &[&str], needle: &str) {
    let (ok, _, stderr) = greenai(args);
    assert!(!ok, "{args:?} succeeded");
    assert!(stderr.contains("greenai: error:"), "{args:?}: no error line in {stderr:?}");
    assert!(stderr.to_lowercase().contains(&needle.to_lowercase()), "{args:?}: {needle:?} not in {stderr:?}");
}

#[test]
fn good_file_compresses_inspects_and_decompresses() {
    let dir = tempfile::tempdir().unwrap();
    let (input, packed, plain, report) = (
        dir.path().join("m.safetensors"),
        dir.path().join("q.safetensors"),
        dir.path().join("back.safetensors"),
        dir.path().join("report.json"),
    );
    std::fs::write(&input, good_model()).unwrap();
    let (ok, stdout, stderr) =
        greenai(&["compress", path_str(&input), "-o", path_str(&packed), "--report", path_str(&report)]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("fc.weight") && stdout.contains("total:"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["tensors"].as_array().unwrap().len(), 2);
    assert!(json["tensors"][0]["sqnr_db"].as_f64().unwrap() > 30.0, "{json}");

    let (ok, stdout, stderr) = greenai(&["inspect", path_str(&packed)]);
    assert!(ok, "{stderr}");
    for needle in
        ["fc.weight", "int8", "per-channel (axis 0) symmetric narrow rtn", "step", "greenai format 2"]
    {
        assert!(stdout.contains(needle), "{needle:?} missing in\n{stdout}");
    }
    assert!(!stdout.contains("fc.weight.scale"), "a companion listed as a tensor:\n{stdout}");
    let (ok, stdout, stderr) = greenai(&["inspect", path_str(&packed), "--json"]);
    assert!(ok, "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let fc = rows.as_array().unwrap().iter().find(|r| r["name"] == "fc.weight").unwrap();
    assert_eq!((fc["dtype"].as_str(), fc["bits"].as_f64()), (Some("int8"), Some(8.0)), "{fc}");
    // 16 x 32 int8 values, 16 f32 scales.
    assert_eq!(fc["bytes"].as_u64(), Some(16 * 32 + 16 * 4), "{fc}");
    let (ok, _, stderr) = greenai(&["decompress", path_str(&packed), "-o", path_str(&plain)]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = greenai(&["inspect", path_str(&plain), "--json"]);
    assert!(ok, "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mut names: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["fc.weight", "step"], "companions dropped, names kept");
}

#[test]
fn bad_input_files_fail_clearly_and_leave_the_output_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let good = good_model();
    let mut lying_length = good.clone();
    lying_length[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.safetensors", good[..good.len() - 5].to_vec(), "truncated.safetensors"),
        ("short.safetensors", good[..6].to_vec(), "short.safetensors"),
        ("lying_length.safetensors", lying_length, "lying_length.safetensors"),
        (
            "lying_offsets.safetensors",
            hand_made(r#"{"w":{"dtype":"F32","shape":[4,4],"data_offsets":[0,16]}}"#, &[0u8; 16]),
            "lying_offsets.safetensors",
        ),
        ("not_json.safetensors", hand_made("{\"w\": [", &[0u8; 8]), "not_json.safetensors"),
    ];
    for (name, bytes, needle) in cases {
        let input = dir.path().join(name);
        std::fs::write(&input, bytes).unwrap();
        std::fs::write(&out, b"previous").unwrap();
        assert_fails(&["inspect", path_str(&input)], needle);
        assert_fails(&["compress", path_str(&input), "-o", path_str(&out)], needle);
        assert_fails(&["decompress", path_str(&input), "-o", path_str(&out)], needle);
        assert_eq!(std::fs::read(&out).unwrap(), b"previous", "{name}: output changed");
        std::fs::remove_file(&input).unwrap();
    }
    let missing = dir.path().join("missing.safetensors");
    assert_fails(&["inspect", path_str(&missing)], "missing.safetensors");
    assert_fails(&["compress", path_str(&missing), "-o", path_str(&out)], "missing.safetensors");
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "only the untouched output is left: {names:?}");
}

#[test]
fn bad_options_and_outputs_fail_clearly_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.safetensors");
    std::fs::write(&input, good_model()).unwrap();
    let out = dir.path().join("out.safetensors");
    std::fs::write(&out, b"previous").unwrap();
    let compress = |extra: &[&str], needle: &str| {
        let mut args = vec!["compress", path_str(&input), "-o", path_str(&out)];
        args.extend_from_slice(extra);
        assert_fails(&args, needle);
        assert_eq!(std::fs::read(&out).unwrap(), b"previous", "{extra:?}: output changed");
    };
    compress(&["--skip", "^no_such_tensor$"], "matches no tensor");
    compress(&["--skip", "(unclosed"], "--skip");
    compress(&["--quant", "int3"], "--quant");
    compress(&["--granularity", "block:0"], "--granularity");
    compress(&["--calibration", "percentile:150"], "--calibration");
    compress(&["--prune", "1.5"], "--prune");
    compress(&["--prune", "3:2"], "n");

    let unwritable = dir.path().join("no/such/folder/out.safetensors");
    assert_fails(&["compress", path_str(&input), "-o", path_str(&unwritable)], "no/such/folder");
    assert_fails(&["decompress", path_str(&input), "-o", path_str(dir.path())], path_str(dir.path()));
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "input and untouched output only: {names:?}");
}

/// Issue 20, finding 13: the README's own example runs (int4 blocks with MSE calibration and 2:4
/// pruning), and `--prune 0:4` is refused as `flops --sparsity 0:4` is.
#[test]
fn the_readme_example_runs_and_prune_n_of_m_agrees_with_flops() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.safetensors");
    std::fs::write(&input, good_model()).unwrap();
    let out = dir.path().join("m.st");
    let readme = [
        "compress",
        path_str(&input),
        "-o",
        path_str(&out),
        "--quant",
        "int4",
        "--granularity",
        "block:32",
        "--calibration",
        "mse",
        "--prune",
        "2:4",
        "--skip",
        "embed|lm_head|step",
    ];
    let (ok, stdout, stderr) = greenai(&readme);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("I4"), "{stdout}");
    assert!(greenai(&["decompress", path_str(&out), "-o", path_str(&dir.path().join("back"))]).0);
    for bad in ["0:4", "5:4"] {
        assert_fails(&["compress", path_str(&input), "-o", path_str(&out), "--prune", bad], "0 < N <= M");
        assert_fails(&["flops", "resnet18", "--sparsity", bad], "0 < N <= M");
    }
}

/// Issue 21: pruning alone shrinks the file (the pruned tensor is stored sparse), the report splits
/// the error into pruning and quantization and warns below `--warn-sqnr`, and `inspect` shows the
/// pruned tensor's logical dtype, storage and sparsity (zeros of the weight, not of stored bytes).
#[test]
fn pruning_alone_shrinks_the_file_and_the_report_splits_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.safetensors");
    std::fs::write(&input, good_model()).unwrap();
    let (out, back) = (dir.path().join("p.st"), dir.path().join("back.st"));
    let (ok, stdout, stderr) =
        greenai(&["compress", path_str(&input), "-o", path_str(&out), "--prune", "0.5", "--quant", "none"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("csr"), "{stdout}");
    // Half of a ramp pruned: 9.0 dB, all of it from pruning.
    assert!(
        stdout.contains("warning: fc.weight: SQNR 9.0 dB is below 20 dB (pruning alone 9.0 dB)"),
        "{stdout}"
    );
    let (before, after) = (std::fs::metadata(&input).unwrap().len(), std::fs::metadata(&out).unwrap().len());
    assert!(after < before, "pruned file {after} B not smaller than {before} B");
    let (ok, stdout, stderr) = greenai(&["inspect", path_str(&out), "--json"]);
    assert!(ok, "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let fc = rows.as_array().unwrap().iter().find(|r| r["name"] == "fc.weight").unwrap();
    assert_eq!((fc["dtype"].as_str(), fc["storage"].as_str()), (Some("f32"), Some("csr")), "{fc}");
    assert!((fc["sparsity"].as_f64().unwrap() - 0.5).abs() < 0.01, "{fc}");
    assert!(greenai(&["decompress", path_str(&out), "-o", path_str(&back)]).0);

    let q = dir.path().join("q.st");
    let args = [
        "compress",
        path_str(&input),
        "-o",
        path_str(&q),
        "--prune",
        "2:4",
        "--quant",
        "int4",
        "--warn-sqnr",
        "90",
    ];
    let (ok, stdout, stderr) = greenai(&args);
    assert!(ok, "{stderr}");
    let warning =
        stdout.lines().find(|l| l.starts_with("warning: fc.weight")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(warning.contains("below 90 dB") && warning.contains("pruning alone"), "{warning}");
    for debug in ["Some(", "None", "NM {"] {
        assert!(!stdout.contains(debug), "a debug string in\n{stdout}");
    }
}
