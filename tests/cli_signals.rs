//! Issue 20: SIGINT or SIGTERM while `compress` or `decompress` writes its output removes the temporary
//! file, leaves the input and the previous output as they were, and exits 130 or 143 (128 + the signal,
//! what a shell reports for a program a signal ended).
#![cfg(all(feature = "cli", unix))]

#[path = "support/model_dirs.rs"]
mod model_dirs;

use model_dirs::{interrupt_while_writing, temporaries};
use std::path::PathBuf;
use std::process::Command;

/// An f32 safetensors file of `tensors` matrices of 1024 x 1024 (4 MiB each), values from a formula.
fn big_model(tensors: usize) -> Vec<u8> {
    let one: Vec<u8> = (0..1024 * 1024)
        .flat_map(|i: i32| (((i.wrapping_mul(7919)) % 2001 - 1000) as f32 / 1000.0).to_le_bytes())
        .collect();
    let mut header = String::from("{");
    for t in 0..tensors {
        let start = t * one.len();
        let sep = if t > 0 { "," } else { "" };
        header.push_str(&format!(
            r#"{sep}"layer{t}.weight":{{"dtype":"F32","shape":[1024,1024],"data_offsets":[{start},{}]}}"#,
            start + one.len()
        ));
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    for _ in 0..tensors {
        bytes.extend_from_slice(&one);
    }
    bytes
}

#[test]
fn sigint_and_sigterm_during_compress_and_decompress_leave_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let input = big_model(16); // 64 MiB of f32
    std::fs::write(dir.path().join("in.st"), &input).unwrap();
    // A small earlier result at each output: a stopped run must leave it as it was.
    let status = Command::new(env!("CARGO_BIN_EXE_greenai"))
        .args(["compress", "in.st", "-o", "q.st"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let quantized = std::fs::read(dir.path().join("q.st")).unwrap();
    let earlier = b"an earlier output".to_vec();
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        // Prune-only output: 64 MiB of f32 to write.
        std::fs::write(dir.path().join("out.st"), &earlier).unwrap();
        let args = ["compress", "in.st", "-o", "out.st", "--quant", "none", "--prune", "0.5"];
        assert_eq!(interrupt_while_writing(dir.path(), &args, signal), Some(code), "compress, SIG{signal}");
        assert_eq!(temporaries(dir.path()), Vec::<PathBuf>::new(), "compress, SIG{signal}");
        assert_eq!(std::fs::read(dir.path().join("out.st")).unwrap(), earlier);
        assert!(std::fs::read(dir.path().join("in.st")).unwrap() == input, "the input changed");

        // decompress restores the int8 file to 64 MiB of f32.
        std::fs::write(dir.path().join("back.st"), &earlier).unwrap();
        let args = ["decompress", "q.st", "-o", "back.st"];
        assert_eq!(interrupt_while_writing(dir.path(), &args, signal), Some(code), "decompress, SIG{signal}");
        assert_eq!(temporaries(dir.path()), Vec::<PathBuf>::new(), "decompress, SIG{signal}");
        assert_eq!(std::fs::read(dir.path().join("back.st")).unwrap(), earlier);
        assert!(std::fs::read(dir.path().join("q.st")).unwrap() == quantized, "the input changed");
    }
    // And a run left alone still completes, over the earlier output.
    let status = Command::new(env!("CARGO_BIN_EXE_greenai"))
        .args(["decompress", "q.st", "-o", "back.st"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read(dir.path().join("back.st")).unwrap().len(), input.len());
    assert!(temporaries(dir.path()).is_empty());
}
