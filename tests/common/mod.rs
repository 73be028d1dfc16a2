//! Helpers shared by the command-line tests.

use std::process::Command;

/// Runs the `greenai` binary with `args`; returns (success, stdout, stderr).
pub fn greenai(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_greenai")).args(args).output().expect("run greenai");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}
