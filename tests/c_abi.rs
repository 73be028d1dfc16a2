//! Builds every C99 and C++17 program in `tests/c/` and `examples/c/` against the static library with
//! all warnings as errors, and runs it (under valgrind when it is installed: no error, nothing leaked).
//! Also checks that `include/greenai.h` compiles alone in both languages.

use std::path::{Path, PathBuf};
use std::process::Command;

const C_FLAGS: &[&str] = &["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1", "-g"];
const CXX_FLAGS: &[&str] = &["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1", "-g"];
const NATIVE_LIBS: &[&str] = &["-lpthread", "-ldl", "-lm", "-lrt", "-lutil"];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`: the test executable lives in its `deps/` folder, beside which cargo puts the library.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<exe>").to_path_buf()
}

fn work_dir() -> PathBuf {
    let dir = profile_dir().join("c-tests");
    std::fs::create_dir_all(&dir).expect("create the C test build folder");
    dir
}

fn compiler(cxx: bool) -> String {
    let (var, default) = if cxx { ("CXX", "c++") } else { ("CC", "cc") };
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let output = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{cmd:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// `cargo test` builds the library only as an rlib, so the static library the C programs link is built
/// here the way scripts/install-c builds it (`cargo rustc --crate-type staticlib`), with this test's
/// profile and features (a no-op when it is already fresh).
fn build_static_lib() -> Result<(), String> {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let profile = match profile_dir().file_name().and_then(|n| n.to_str()) {
                Some("debug") => "dev".to_string(),
                Some(other) => other.to_string(),
                None => return Err("no profile folder".to_string()),
            };
            let features: Vec<&str> = [
                ("capi", true),
                ("lowrank", cfg!(feature = "lowrank")),
                ("parallel", cfg!(feature = "parallel")),
                ("serde", cfg!(feature = "serde")),
                ("cli", cfg!(feature = "cli")),
            ]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(manifest_dir())
                .args(["rustc", "--lib", "--crate-type", "staticlib", "--profile", &profile])
                .arg("--no-default-features")
                .arg(format!("--features={}", features.join(",")));
            run(&mut cmd)
        })
        .clone()
}

fn has_valgrind() -> bool {
    Command::new("valgrind").arg("--version").output().is_ok_and(|o| o.status.success())
}

fn build(source: &Path, binary: &Path) -> Result<(), String> {
    let cxx = source.extension().is_some_and(|e| e == "cpp");
    build_static_lib()?;
    let lib = profile_dir().join("libgreenai.a");
    if !lib.exists() {
        return Err(format!("{} is missing: the library's staticlib was not built", lib.display()));
    }
    let mut cmd = Command::new(compiler(cxx));
    cmd.args(if cxx { CXX_FLAGS } else { C_FLAGS })
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg("-I")
        .arg(source.parent().expect("source folder"))
        .arg(source)
        .arg(&lib)
        .args(NATIVE_LIBS)
        .arg("-o")
        .arg(binary);
    run(&mut cmd)
}

fn sources() -> Vec<PathBuf> {
    let mut sources = Vec::new();
    for dir in ["tests/c", "examples/c"] {
        let Ok(entries) = std::fs::read_dir(manifest_dir().join(dir)) else { continue };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "c" || e == "cpp") {
                sources.push(path);
            }
        }
    }
    sources.sort();
    sources
}

/// The models tests/c/model.c reads, made here with the library: `plain.safetensors` (f32 weights
/// of two linear layers with biases) and `int8.safetensors` (`greenai compress`'s default, int8 per
/// output channel). Returns their folder, which the C programs find in `GREENAI_TEST_MODELS`.
fn model_fixtures() -> PathBuf {
    use greenai::model::{compress, write_safetensors, CompressOptions, Model, OutTensor};
    let dir = work_dir().join("models");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the model fixture folder");
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let tensors: Vec<(String, OutTensor<'static>)> = [
        ("fc1.weight", vec![24, 40]),
        ("fc1.bias", vec![24]),
        ("fc2.weight", vec![8, 24]),
        ("fc2.bias", vec![8]),
    ]
    .into_iter()
    .map(|(name, shape)| {
        let n: usize = shape.iter().product();
        let bytes: Vec<u8> = (0..n)
            .flat_map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                ((seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0).to_le_bytes()
            })
            .collect();
        (name.to_string(), OutTensor { dtype: safetensors::Dtype::F32, shape, bytes: bytes.into() })
    })
    .collect();
    let plain = dir.join("plain.safetensors");
    write_safetensors(&plain, &tensors, &std::collections::HashMap::new()).expect("write the plain model");
    let model = Model::open(&plain).expect("open the plain model");
    compress(&model, &dir.join("int8.safetensors"), &CompressOptions::default(), &|_| true, &mut |_, _| {})
        .expect("compress the model");
    dir
}

#[test]
fn c_and_cxx_programs_pass() {
    let models = model_fixtures();
    let sources = sources();
    assert!(!sources.is_empty(), "no C test sources found");
    let valgrind = has_valgrind();
    let mut failures = Vec::new();
    for source in &sources {
        let stem = source.file_stem().and_then(|s| s.to_str()).expect("file name");
        let binary = work_dir()
            .join(format!("{stem}-{}", if source.extension().unwrap() == "cpp" { "cxx" } else { "c" }));
        let outcome = build(source, &binary).and_then(|()| {
            let mut cmd = if valgrind {
                let mut cmd = Command::new("valgrind");
                cmd.args([
                    "--error-exitcode=1",
                    "--leak-check=full",
                    "--errors-for-leak-kinds=definite,indirect,possible",
                    "-q",
                ])
                .arg(&binary);
                cmd
            } else {
                Command::new(&binary)
            };
            cmd.current_dir(manifest_dir()).env("GREENAI_TEST_MODELS", &models);
            run(&mut cmd)
        });
        match outcome {
            Ok(()) => eprintln!("ok: {}{}", source.display(), if valgrind { " (valgrind)" } else { "" }),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn header_compiles_alone_as_c99_and_cxx17() {
    let dir = work_dir();
    for (cxx, name) in [(false, "header_alone.c"), (true, "header_alone.cpp")] {
        let source = dir.join(name);
        std::fs::write(&source, "#include \"greenai.h\"\nint main(void) { return (int)GREENAI_OK; }\n")
            .expect("write the header test");
        let mut cmd = Command::new(compiler(cxx));
        cmd.args(if cxx { CXX_FLAGS } else { C_FLAGS })
            .arg("-fsyntax-only")
            .arg("-I")
            .arg(manifest_dir().join("include"))
            .arg(&source);
        if let Err(e) = run(&mut cmd) {
            panic!("{e}");
        }
    }
}
