//! `greenai compress --format compressed-tensors` and `greenai decompress` of such a directory.

use crate::printable;
use greenai::model::compressed_tensors::{
    check_new_dir, compress_model, compressed_tensors_config, decompress_model, model_dir_parts, read_config,
    write_model_dir, CtReport, CtScheme, Scheme, Strategy,
};
use greenai::model::{self, ModelFile};
use greenai::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Options of `compress --format compressed-tensors`.
#[derive(clap::Args)]
pub struct CtArgs {
    /// compressed-tensors scheme (with --format compressed-tensors): w8a8 (int8 per channel, int8
    /// dynamic activations), w4a16 or w8a16 (packed, groups of 128 unless --group-size).
    #[arg(long, value_name = "SCHEME")]
    scheme: Option<String>,
    /// Group size along the inputs for the compressed-tensors scheme; 0 means one scale per channel.
    #[arg(long, value_name = "N")]
    group_size: Option<usize>,
    /// Asymmetric weights (zero points) for the compressed-tensors scheme.
    #[arg(long)]
    asymmetric: bool,
}

impl CtArgs {
    /// Whether any compressed-tensors option was given.
    pub fn given(&self) -> bool {
        self.scheme.is_some() || self.group_size.is_some() || self.asymmetric
    }

    fn scheme(&self) -> Result<CtScheme> {
        let name = self.scheme.as_deref().unwrap_or("w4a16");
        let preset = Scheme::from_name(name)
            .ok_or_else(|| Error::invalid("--scheme", name, "expected w8a8, w4a16 or w8a16"))?;
        let mut scheme = CtScheme::preset(preset);
        scheme.symmetric = !self.asymmetric;
        match self.group_size {
            Some(0) => scheme.strategy = Strategy::Channel,
            Some(n) => scheme.strategy = Strategy::Group(n),
            None => {}
        }
        Ok(scheme)
    }
}

/// Writes `input` (a model directory, or a safetensors file with config.json beside it) as a
/// compressed-tensors directory `output`; `keep` says which modules are quantized.
pub fn compress(input: &Path, output: &Path, args: &CtArgs, keep: &dyn Fn(&str) -> bool) -> Result<()> {
    let scheme = args.scheme()?;
    check_new_dir(output)?;
    let (config_path, weights) = model_dir_parts(input)?;
    let config = read_config(&config_path)?;
    model::check_distinct(&[("input", weights.as_path()), ("output", output)])?;
    let file = ModelFile::open(&weights)?;
    let (tensors, config, report) = compress_model(&file, &config, &scheme, keep)?;
    write_model_dir(config_path.parent(), output, &config, &tensors)?;
    print_report(output, &format!("compressed-tensors {:?}", scheme.scheme).to_ascii_lowercase(), &report)
}

/// Whether `path` is a compressed-tensors model (a directory, or a file beside, whose config.json says so).
pub fn is_compressed_tensors(path: &Path) -> bool {
    model_dir_parts(path)
        .ok()
        .and_then(|(config, _)| read_config(&config).ok())
        .is_some_and(|c| compressed_tensors_config(&c).is_some())
}

/// Dequantizes the compressed-tensors model `input` into the float model directory `output`.
pub fn decompress(input: &Path, output: &Path) -> Result<()> {
    check_new_dir(output)?;
    let (config_path, weights) = model_dir_parts(input)?;
    let config = read_config(&config_path)?;
    let file = ModelFile::open(&weights)?;
    let (tensors, config, report) = decompress_model(&file, &config)?;
    write_model_dir(config_path.parent(), output, &config, &tensors)?;
    print_report(output, "dense", &report)
}

fn print_report(output: &Path, what: &str, r: &CtReport) -> Result<()> {
    let mut out = crate::stdout();
    writeln!(
        out,
        "wrote {} ({what}): {} modules, {} left in float; {} -> {} bytes ({:.3}x)",
        printable(&output.display().to_string()),
        r.modules,
        r.ignored,
        r.bytes_before,
        r.bytes_after,
        r.bytes_before as f64 / r.bytes_after.max(1) as f64
    )
    .and_then(|()| out.flush())
    .map_err(crate::stdout_error)
}
