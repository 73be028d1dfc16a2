//! The command line on a shared machine and with hostile paths (issue 20, findings 1, 2, 3, 7, 13): one
//! safe way of writing files, nothing outside the output touched, nothing lost, quiet closed pipes.
#![cfg(all(feature = "cli", unix))]

mod common;
use common::greenai;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A safetensors file built from the format's definition: u64 LE header length, JSON header, data.
fn hand_made(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// Three 2-D f32 weights (`names`, 16 x 32 each, values from a fixed formula) and metadata entries.
fn model_named(names: &[&str]) -> Vec<u8> {
    let one: Vec<u8> =
        (0..16 * 32).flat_map(|i: i32| (((i * 37) % 101 - 50) as f32 / 100.0).to_le_bytes()).collect();
    let mut header = String::from(r#"{"__metadata__":{"a":"1","b":"2","c":"3","d":"4","e":"5"}"#);
    let mut data = Vec::new();
    for name in names {
        let start = data.len();
        data.extend_from_slice(&one);
        header.push_str(&format!(
            r#","{name}":{{"dtype":"F32","shape":[16,32],"data_offsets":[{start},{}]}}"#,
            data.len()
        ));
    }
    header.push('}');
    hand_made(&header, &data)
}

fn model() -> Vec<u8> {
    model_named(&["l1.weight", "l2.weight", "l3.weight"])
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

fn fails(args: &[&str], needle: &str) {
    let (ok, _, stderr) = greenai(args);
    assert!(!ok, "{args:?} succeeded");
    assert!(stderr.contains("greenai: error:") && !stderr.contains("panicked"), "{args:?}: {stderr:?}");
    assert!(stderr.contains(needle), "{args:?}: {needle:?} not in {stderr:?}");
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    names.sort();
    names
}

/// The highest process id the kernel handed out, where Linux says it.
fn last_pid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn links_planted_at_temporary_names_in_a_shared_folder_are_never_followed() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let shared = tempfile::tempdir().unwrap();
    let input = shared.path().join("m.safetensors");
    std::fs::write(&input, model()).unwrap();
    let (out, report) = (shared.path().join("out.safetensors"), shared.path().join("r.json"));
    // Every name a writer might plausibly pick: the old `.NAME.tmp-PID` for the next few hundred
    // process ids, `NAME.tmp`, the report's `r.tmp`, and variants.
    let mut planted: Vec<PathBuf> = Vec::new();
    let next = last_pid();
    for pid in next..next + 400 {
        planted.push(shared.path().join(format!(".out.safetensors.tmp-{pid}")));
        planted.push(shared.path().join(format!(".r.json.tmp-{pid}")));
    }
    for name in
        ["r.tmp", "out.tmp", "out.safetensors.tmp", "r.json.tmp", ".out.safetensors.tmp", ".r.json.tmp"]
    {
        planted.push(shared.path().join(name));
    }
    for p in &planted {
        symlink(&victim, p).unwrap();
    }
    let (ok, _, stderr) = greenai(&["compress", s(&input), "-o", s(&out), "--report", s(&report)]);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "a file outside the output was written");
    for p in &planted {
        assert_eq!(std::fs::read_link(p).unwrap(), victim, "{p:?} was replaced");
    }
    assert!(greenai(&["inspect", s(&out)]).0, "the output is a valid file");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["tensors"].as_array().unwrap().len(), 3);
    assert_eq!(names_in(shared.path()).len(), planted.len() + 3, "no temporary file left behind");
    let mode =
        |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions());
    assert_eq!(mode(&out) & 0o044, mode(&input) & 0o044, "the output is as readable as a created file");
}

#[test]
fn destinations_that_are_not_regular_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.safetensors");
    std::fs::write(&input, model()).unwrap();
    let packed = dir.path().join("q.safetensors");
    assert!(greenai(&["compress", s(&input), "-o", s(&packed)]).0);
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let link = dir.path().join("link.safetensors");
    symlink(&victim, &link).unwrap();
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let ok_out = dir.path().join("fine.safetensors");
    // A device node: where this test may create one (as root), a private copy of /dev/null, so that a
    // regression replaces that and not the machine's /dev/null; otherwise /dev/null itself.
    let private_null = dir.path().join("null");
    let made = Command::new("mknod").args([s(&private_null), "c", "1", "3"]).stderr(Stdio::null()).status();
    let device =
        if made.is_ok_and(|st| st.success()) { private_null.clone() } else { PathBuf::from("/dev/null") };
    for bad in [device.as_path(), &fifo, &link, &folder] {
        fails(&["compress", s(&input), "-o", s(bad)], s(bad));
        fails(&["decompress", s(&packed), "-o", s(bad)], s(bad));
        fails(&["compress", s(&input), "-o", s(&ok_out), "--report", s(bad)], s(bad));
    }
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO is still a FIFO");
    assert!(std::fs::symlink_metadata(&device).unwrap().file_type().is_char_device(), "{device:?} replaced");
    let _ = std::fs::remove_file(&private_null);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!ok_out.exists(), "a refused report path stops the run before the output is written");
    let mut expected = ["fifo", "folder", "link.safetensors", "m.safetensors", "q.safetensors", "victim"];
    expected.sort_unstable();
    assert_eq!(names_in(dir.path()), expected, "no temporary file left behind");
}

use std::os::unix::fs::FileTypeExt;

#[test]
fn input_output_and_report_must_name_different_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.safetensors");
    let original = model();
    std::fs::write(&input, &original).unwrap();
    let packed = dir.path().join("q.safetensors");
    assert!(greenai(&["compress", s(&input), "-o", s(&packed)]).0);
    let packed_bytes = std::fs::read(&packed).unwrap();
    // The same file under another spelling, through a linked folder, and as a hard link.
    let dotted = dir.path().join(".").join("m.safetensors");
    let linked_dir = dir.path().join("alias");
    symlink(dir.path(), &linked_dir).unwrap();
    let via_link = linked_dir.join("m.safetensors");
    let hard = dir.path().join("hard.safetensors");
    std::fs::hard_link(&input, &hard).unwrap();
    for same in [&input, &dotted, &via_link, &hard] {
        fails(&["compress", s(&input), "-o", s(same)], "same file");
        fails(&["compress", s(&input), "-o", s(&packed), "--report", s(same)], "same file");
    }
    fails(&["compress", s(&input), "-o", s(&packed), "--report", s(&packed)], "same file");
    fails(&["decompress", s(&packed), "-o", s(&packed)], "same file");
    fails(&["decompress", s(&packed), "-o", s(&linked_dir.join("q.safetensors"))], "same file");
    assert_eq!(std::fs::read(&input).unwrap(), original, "the input is untouched");
    assert_eq!(std::fs::read(&packed).unwrap(), packed_bytes, "the output is untouched");

    // A report in a missing folder fails before the output is replaced; an unrelated `r.tmp` beside
    // the report is left alone.
    fails(
        &["compress", s(&input), "-o", s(&packed), "--report", s(&dir.path().join("no/r.json"))],
        "no/r.json",
    );
    assert_eq!(std::fs::read(&packed).unwrap(), packed_bytes, "the output is untouched");
    let (report, unrelated) = (dir.path().join("r.json"), dir.path().join("r.tmp"));
    std::fs::write(&unrelated, b"mine").unwrap();
    assert!(greenai(&["compress", s(&input), "-o", s(&packed), "--report", s(&report)]).0);
    assert_eq!(std::fs::read(&unrelated).unwrap(), b"mine");
}

/// Runs greenai with standard output a pipe whose reading end is already closed.
fn run_into_closed_pipe(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_greenai"))
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_or_full_standard_output_ends_quietly_and_keeps_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.safetensors");
    std::fs::write(&input, model()).unwrap();
    let (out, report) = (dir.path().join("q.safetensors"), dir.path().join("r.json"));
    let compress = ["compress", s(&input), "-o", s(&out), "--report", s(&report)];
    let runs: Vec<Vec<&str>> = vec![
        vec!["inspect", s(&input)],
        vec!["inspect", s(&input), "--json"],
        compress.to_vec(),
        vec!["flops", "resnet18"],
        vec!["flops", "resnet18", "--json"],
    ];
    for args in &runs {
        let run = run_into_closed_pipe(args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(141), "{args:?}: 128 + SIGPIPE, as a shell reports; {stderr}");
        assert!(stderr.is_empty(), "{args:?}: nothing on stderr, got {stderr:?}");
    }
    assert!(report.exists(), "--report is written even though standard output is closed");
    std::fs::remove_file(&report).unwrap();

    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_greenai")).args(compress).stdout(full).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("greenai: error:") && stderr.contains("No space left"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(report.exists(), "--report is written even though standard output is full");
}

#[test]
fn identical_runs_give_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.safetensors");
    std::fs::write(&input, model()).unwrap();
    let mut outputs = Vec::new();
    for i in 0..4 {
        let (out, back) = (dir.path().join(format!("q{i}")), dir.path().join(format!("b{i}")));
        assert!(greenai(&["compress", s(&input), "-o", s(&out), "--quant", "uint8"]).0);
        assert!(greenai(&["decompress", s(&out), "-o", s(&back)]).0);
        outputs.push((std::fs::read(&out).unwrap(), std::fs::read(&back).unwrap()));
    }
    for pair in &outputs[1..] {
        assert!(pair == &outputs[0], "two identical runs wrote different bytes");
    }
}

#[test]
fn control_characters_in_tensor_names_are_escaped_when_printed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.safetensors");
    std::fs::write(&input, model_named(&["evil\\u001b]0;pwned\\u0007\\u001b[31m.weight", "bell\\u0007"]))
        .unwrap();
    let out = dir.path().join("q.safetensors");
    let runs =
        [vec!["inspect", s(&input)], vec!["compress", s(&input), "-o", s(&out)], vec!["inspect", s(&out)]];
    for args in &runs {
        let (ok, stdout, stderr) = greenai(args);
        assert!(ok, "{args:?}: {stderr}");
        assert!(
            !stdout.chars().any(|c| c.is_control() && c != '\n'),
            "{args:?}: raw control characters in {stdout:?}"
        );
        assert!(stdout.contains("evil\\u{1b}]0;pwned"), "{args:?}: the escaped name is shown: {stdout}");
    }
    let (ok, stdout, _) = greenai(&["inspect", s(&input), "--json"]);
    assert!(ok && !stdout.contains('\u{1b}'), "JSON escapes control characters: {stdout}");
    // An error message that quotes a name is escaped too.
    let (ok, _, stderr) = greenai(&["compress", s(&input), "-o", s(&out), "--skip", "\u{1b}zzz"]);
    assert!(!ok && !stderr.contains('\u{1b}'), "{stderr:?}");
}

/// Issue 20, finding 9: what a killed run left (a temporary nobody holds) is removed by the next run
/// writing the same destination; a live run's temporary (locked), other names and links are left alone.
#[test]
fn leftovers_of_killed_runs_are_cleaned_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.safetensors");
    std::fs::write(&input, model()).unwrap();
    let out = dir.path().join("out.safetensors");
    let stale = dir.path().join(".out.safetensors.greenai-AbCdEf123456.tmp");
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    let live = dir.path().join(".out.safetensors.greenai-LiveLive1234.tmp");
    let held = std::fs::File::create(&live).unwrap();
    held.lock().unwrap();
    let other = dir.path().join(".other.safetensors.greenai-AbCdEf123456.tmp");
    std::fs::write(&other, b"not ours").unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let link = dir.path().join(".out.safetensors.greenai-Link12345678.tmp");
    symlink(&victim, &link).unwrap();
    let (ok, _, stderr) = greenai(&["compress", s(&input), "-o", s(&out)]);
    assert!(ok, "{stderr}");
    assert!(!stale.exists(), "the stale temporary is removed");
    assert!(live.exists(), "a temporary a live process holds is kept");
    assert!(other.exists(), "another destination's temporary is not this run's business");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    drop(held);
}
