//! Generates the C header from `src/ffi` into OUT_DIR; with `GREENAI_UPDATE_HEADER=1`, also
//! rewrites the committed `include/greenai.h`.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-env-changed=GREENAI_UPDATE_HEADER");

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
