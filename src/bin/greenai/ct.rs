//! `greenai compress --format compressed-tensors` and `greenai decompress` of such a directory.

use crate::printable;
use greenai::model::compressed_tensors::{
    compress_model, compressed_tensors_config, decompress_model, model_config, CtReport, CtScheme, Scheme,
    Strategy,
};
use greenai::model::Model;
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

/// Writes `input` (a model folder, sharded or not, or a safetensors file with config.json beside it)
/// as a compressed-tensors folder `output`; `keep` says which modules are quantized.
pub fn compress(input: &Path, output: &Path, args: &CtArgs, keep: &dyn Fn(&str) -> bool) -> Result<()> {
    let scheme = args.scheme()?;
    let model = Model::open(input)?;
    let config = model_config(&model)?;
    let bar = crate::files::progress_bar(model.data_bytes(), "compressing");
    let report =
        compress_model(&model, &config, output, &scheme, keep, &mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    print_report(output, &format!("compressed-tensors {:?}", scheme.scheme).to_ascii_lowercase(), &report)
}

/// Whether `path` is a compressed-tensors model (a folder, or a file beside, whose config.json says so).
pub fn is_compressed_tensors(path: &Path) -> bool {
    Model::open(path)
        .and_then(|model| model_config(&model))
        .is_ok_and(|config| compressed_tensors_config(&config).is_some())
}

/// Dequantizes the compressed-tensors model `input` (a folder, sharded or not, or a file with its
/// config.json beside it) into the float model folder `output`.
pub fn decompress(input: &Path, output: &Path) -> Result<()> {
    let bar = crate::files::progress_bar(Model::open(input)?.data_bytes(), "decompressing");
    let report = decompress_model(input, output, &mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
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
