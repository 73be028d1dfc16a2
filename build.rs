//! Generates the C header from `src/ffi` into OUT_DIR; with `GREENAI_UPDATE_HEADER=1`, also
//! rewrites the committed `include/greenai.h`.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-env-changed=GREENAI_UPDATE_HEADER");
    link_onednn_for_benches();
    link_openblas_for_benches();

    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let version = |key: &str| env::var(key).expect("cargo sets the version variables");
    config.after_includes = Some(format!(
        "\n#define GREENAI_VERSION_MAJOR {}\n#define GREENAI_VERSION_MINOR {}\n#define GREENAI_VERSION_PATCH {}\n",
        version("CARGO_PKG_VERSION_MAJOR"),
        version("CARGO_PKG_VERSION_MINOR"),
        version("CARGO_PKG_VERSION_PATCH"),
    ));
    // Only the C ABI's module: the rest of the crate's public constants and types are Rust API.
    let bindings = cbindgen::Builder::new()
        .with_src(crate_dir.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen could not generate the header: {e}"));
    let generated = out_dir.join("greenai.h");
    bindings.write_to_file(&generated);
    if env::var_os("GREENAI_UPDATE_HEADER").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(crate_dir.join("include")).expect("include/ can be created");
        std::fs::copy(&generated, crate_dir.join("include/greenai.h"))
            .expect("include/greenai.h can be written");
    }
}

/// The int8 GEMM bench's oneDNN peer (`dnnl_gemm_u8s8s32`) is compiled in when oneDNN's development
/// files are installed (Debian `libdnnl-dev`) for a native x86-64 build; `GREENAI_ONEDNN=0` leaves
/// it out. Only the benches link it.
fn link_onednn_for_benches() {
    println!("cargo::rustc-check-cfg=cfg(greenai_onednn)");
    println!("cargo:rerun-if-env-changed=GREENAI_ONEDNN");
    // Installing a -dev package changes /usr/include's listing, so the probe reruns then.
    println!("cargo:rerun-if-changed=/usr/include");
    let native_x86 = env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64")
        && env::var("TARGET").ok() == env::var("HOST").ok();
    let wanted = env::var_os("GREENAI_ONEDNN").is_none_or(|v| v != "0");
    let header = std::path::Path::new("/usr/include/oneapi/dnnl/dnnl.h").exists();
    let library = ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
        .iter()
        .any(|dir| std::path::Path::new(dir).join("libdnnl.so").exists());
    if native_x86 && wanted && header && library {
        println!("cargo:rustc-cfg=greenai_onednn");
        println!("cargo:rustc-link-arg-benches=-ldnnl");
        // oneDNN's Debian build threads with OpenMP; the bench sets it to one thread.
        println!("cargo:rustc-link-arg-benches=-lgomp");
    }
}

/// The float GEMM bench's OpenBLAS peer (`cblas_sgemm`, set to one thread) is compiled in when
/// OpenBLAS's development files are installed (Debian `libopenblas-dev`) for a native x86-64
/// build; `GREENAI_OPENBLAS=0` leaves it out. Only the benches link it.
fn link_openblas_for_benches() {
    println!("cargo::rustc-check-cfg=cfg(greenai_openblas)");
    println!("cargo:rerun-if-env-changed=GREENAI_OPENBLAS");
    let native_x86 = env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64")
        && env::var("TARGET").ok() == env::var("HOST").ok();
    let wanted = env::var_os("GREENAI_OPENBLAS").is_none_or(|v| v != "0");
    let header = ["/usr/include/x86_64-linux-gnu/cblas-openblas.h", "/usr/include/openblas/cblas.h"]
        .iter()
        .any(|path| std::path::Path::new(path).exists());
    let library = ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
        .iter()
        .any(|dir| std::path::Path::new(dir).join("libopenblas.so").exists());
    if native_x86 && wanted && header && library {
        println!("cargo:rustc-cfg=greenai_openblas");
        println!("cargo:rustc-link-arg-benches=-lopenblas");
    }
}
