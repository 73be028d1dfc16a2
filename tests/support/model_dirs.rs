//! Model folders for the tests: copies, a 3-shard copy of a one-file folder, and the peak resident
//! memory of a `greenai` run against issue 18's bound.
//!
//! Include with `#[path = "support/model_dirs.rs"] mod model_dirs;`.
#![allow(dead_code)]

use greenai::model::{write_safetensors, ModelFile, OutTensor};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The names of the files under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap().flatten() {
            let rel = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                walk(root, &rel, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, Path::new(""), &mut out);
    out.sort();
    out
}

/// Copies the folder `from` to `to` (files only, recursively).
pub fn copy_dir(from: &Path, to: &Path) {
    for rel in files_under(from) {
        std::fs::create_dir_all(to.join(&rel).parent().unwrap()).unwrap();
        std::fs::copy(from.join(&rel), to.join(&rel)).unwrap();
    }
}

/// Writes `model.safetensors` of `from` as three shards in `to` with their index (every other file
/// copied): tensors dealt round-robin in name order, as a sharded checkpoint splits a model.
pub fn shard_in_three(from: &Path, to: &Path) {
    copy_dir(from, to);
    std::fs::remove_file(to.join("model.safetensors")).unwrap();
    let file = ModelFile::open(from.join("model.safetensors")).unwrap();
    let mut shards: Vec<Vec<(String, OutTensor<'static>)>> = vec![Vec::new(), Vec::new(), Vec::new()];
    let mut weight_map = serde_json::Map::new();
    let mut total = 0u64;
    let mut names: Vec<_> = file.tensors().iter().map(|t| t.name.clone()).collect();
    names.sort();
    for (i, name) in names.iter().enumerate() {
        let t = file.tensor(name).unwrap();
        total += t.bytes.len() as u64;
        let shard = format!("model-{:05}-of-00003.safetensors", i % 3 + 1);
        weight_map.insert(name.clone(), serde_json::Value::String(shard));
        let out = OutTensor { dtype: t.dtype, shape: t.shape.to_vec(), bytes: Cow::Owned(t.bytes.to_vec()) };
        shards[i % 3].push((name.clone(), out));
    }
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    for (i, tensors) in shards.iter().enumerate() {
        write_safetensors(&to.join(format!("model-{:05}-of-00003.safetensors", i + 1)), tensors, &meta)
            .unwrap();
    }
    let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    std::fs::write(to.join("model.safetensors.index.json"), serde_json::to_string_pretty(&index).unwrap())
        .unwrap();
}

/// Peak resident memory of `greenai args` in KiB, as the kernel counts it for the child (python's
/// `getrusage(RUSAGE_CHILDREN)`); `None` without python3.
pub fn peak_rss_kib(args: &[&str]) -> Option<u64> {
    let script = "import resource, subprocess, sys\n\
                  r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n\
                  assert r.returncode == 0, r.returncode\n\
                  print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)";
    let out = Command::new("python3")
        .args(["-c", script, env!("CARGO_BIN_EXE_greenai")])
        .args(args)
        .output()
        .ok()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).unwrap().trim().parse().unwrap())
}

pub const MIB: u64 = 1 << 20;

/// The bound of issue 18: the largest tensor plus 64 MiB over what is held of the input (one tensor,
/// read whole: the largest again).
pub fn rss_bound_kib(largest: u64) -> u64 {
    (2 * largest + 64 * MIB) / 1024
}

/// Runs `greenai args`, prints its peak resident memory (`what` says which run) against
/// [`rss_bound_kib`] of `largest` (bytes) and asserts it within; returns the bound, or `None` after a
/// notice when python3 is missing.
pub fn assert_peak_rss_within(what: &str, args: &[&str], largest: u64) -> Option<u64> {
    let Some(peak) = peak_rss_kib(args) else {
        eprintln!("skipped: python3 not found");
        return None;
    };
    let bound = rss_bound_kib(largest);
    println!("{what}: peak RSS {peak} KiB, bound {bound} KiB (largest tensor {} KiB)", largest / 1024);
    assert!(peak <= bound, "{what}: peak RSS {peak} KiB over the bound {bound} KiB");
    Some(bound)
}

/// The model folder `dir`: an empty `config.json` and a [`synthetic`] `model.safetensors`.
pub fn synthetic_folder(dir: &Path, count: usize, rows: usize, cols: usize) {
    std::fs::create_dir(dir).unwrap();
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    synthetic(&dir.join("model.safetensors"), count, rows, cols);
}

/// A safetensors file of `count` f32 tensors of `rows x cols` (values from a formula), written with
/// `write_safetensors` tensor by tensor would need the model in memory: built by hand instead.
pub fn synthetic(path: &Path, count: usize, rows: usize, cols: usize) {
    use std::io::Write;
    let one: Vec<u8> = (0..rows * cols)
        .flat_map(|i| {
            ((((i as u64).wrapping_mul(2_654_435_761) % 2001) as f32 - 1000.0) / 1000.0).to_le_bytes()
        })
        .collect();
    let mut header = String::from("{");
    for t in 0..count {
        let start = t * one.len();
        header.push_str(&format!(
            r#"{}"layer{t}.weight":{{"dtype":"F32","shape":[{rows},{cols}],"data_offsets":[{start},{}]}}"#,
            if t > 0 { "," } else { "" },
            start + one.len()
        ));
    }
    header.push('}');
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    for _ in 0..count {
        f.write_all(&one).unwrap();
    }
    f.flush().unwrap();
}

/// The temporaries greenai names `.NAME.greenai-XXXXXXXXXXXX.tmp` in `dir`.
pub fn temporaries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".greenai-"))
        .collect()
}

/// Runs greenai with `args` in `dir`, sends `signal` (`INT`, `TERM`) as soon as a temporary appears
/// there, and returns the exit code. Panics if the run ends before a temporary was seen.
pub fn interrupt_while_writing(dir: &Path, args: &[&str], signal: &str) -> Option<i32> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_greenai"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Polled without sleeping: writing and fsyncing 64 MiB takes far longer than one scan of the folder.
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{args:?} ended ({status}) before its temporary was seen");
        }
        if !temporaries(dir).is_empty() {
            break;
        }
    }
    let sent = Command::new("kill").args(["-s", signal, &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    child.wait().unwrap().code()
}
