//! GGUF in the command: `compress DIR --format gguf`, and `inspect` / `decompress` of `.gguf` files.

use crate::printable;
use greenai::model::gguf::{self, FileType, GgufFile, GgufReport};
use greenai::model::{self, Destination, StagedFile};
use greenai::{Error, Result};
use std::io::Write;
use std::path::Path;

/// `greenai inspect X.gguf`: the header, the metadata and every tensor's type, shape and size.
pub fn inspect(path: &Path, json: bool) -> Result<()> {
    let file = GgufFile::open(path)?;
    if json {
        let metadata: serde_json::Map<String, serde_json::Value> =
            file.metadata.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.summary()))).collect();
        let tensors: Vec<_> = file
            .tensors
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "type": t.ty.name(), "shape": t.shape(), "params": t.len(), "bytes": t.size}))
            .collect();
        let value = serde_json::json!({"format": "gguf", "version": file.version, "alignment": file.alignment, "metadata": metadata, "tensors": tensors});
        let text = serde_json::to_string_pretty(&value).map_err(|e| Error::format("json", e.to_string()))?;
        let mut out = crate::stdout();
        return writeln!(out, "{text}").and_then(|()| out.flush()).map_err(crate::stdout_error);
    }
    let mut out = crate::stdout();
    print_gguf(&mut out, path, &file).and_then(|()| out.flush()).map_err(crate::stdout_error)
}

fn print_gguf(out: &mut impl Write, path: &Path, file: &GgufFile) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: GGUF v{}, {} tensors, {} metadata keys, alignment {}",
        printable(&path.display().to_string()),
        file.version,
        file.tensors.len(),
        file.metadata.len(),
        file.alignment
    )?;
    for (k, v) in &file.metadata {
        writeln!(out, "  {} = {}", printable(k), printable(&v.summary()))?;
    }
    let names: Vec<_> = file.tensors.iter().map(|t| printable(&t.name)).collect();
    let w = names.iter().map(|n| n.chars().count()).max().unwrap_or(4).max(4);
    writeln!(out, "{:<w$}  {:<5} {:<18} {:>12} {:>12}", "name", "type", "shape", "params", "bytes")?;
    for (t, name) in file.tensors.iter().zip(&names) {
        writeln!(
            out,
            "{:<w$}  {:<5} {:<18} {:>12} {:>12}",
            name,
            t.ty.name(),
            format!("{:?}", t.shape()),
            t.len(),
            t.size
        )?;
    }
    let (params, bytes) = file.tensors.iter().fold((0, 0), |(p, b), t| (p + t.len(), b + t.size));
    writeln!(out, "{:<w$}  {:<5} {:<18} {:>12} {:>12}", "total", "", "", params, bytes)
}

/// `greenai decompress X.gguf -o Y.safetensors`.
pub fn decompress(input: &Path, output: &Path) -> Result<()> {
    let bar = crate::files::progress_bar(0, "decompressing");
    gguf::decompress_gguf(input, output, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let mut out = crate::stdout();
    writeln!(out, "wrote {}", printable(&output.display().to_string()))
        .and_then(|()| out.flush())
        .map_err(crate::stdout_error)
}

/// `greenai compress DIR --format gguf --quant TYPE -o OUT.gguf`.
pub fn compress(input: &Path, output: &Path, quant: &str, report: Option<&Path>) -> Result<()> {
    let file_type = FileType::from_name(quant)?;
    if !input.is_dir() {
        return Err(Error::invalid(
            "model",
            input.display(),
            "GGUF output reads a model directory (config.json, model.safetensors, tokenizer)",
        ));
    }
    Destination::check(output)?;
    let mut paths = vec![("input", input), ("output", output)];
    if let Some(report) = report {
        paths.push(("--report", report));
    }
    model::check_distinct(&paths)?;
    let staged_report = report.map(|p| StagedFile::create(&Destination::check(p)?)).transpose()?;
    let bar = crate::files::progress_bar(0, "writing GGUF");
    let result = gguf::convert_to_gguf(input, output, file_type, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    if let Some(mut staged) = staged_report {
        let text = serde_json::to_string_pretty(&result).map_err(|e| Error::format("json", e.to_string()))?;
        staged.write_all(text.as_bytes())?;
        staged.write_all(b"\n")?;
        staged.commit()?;
    }
    let mut out = crate::stdout();
    print_report(&mut out, &result, output).and_then(|()| out.flush()).map_err(crate::stdout_error)
}

fn print_report(out: &mut impl Write, report: &GgufReport, output: &Path) -> std::io::Result<()> {
    let w = report.tensors.iter().map(|t| t.name.chars().count()).max().unwrap_or(4).max(4);
    writeln!(
        out,
        "{:<w$}  {:<18} {:<5} {:>12} {:>12}",
        "name", "shape", "type", "bytes before", "bytes after"
    )?;
    for t in &report.tensors {
        writeln!(
            out,
            "{:<w$}  {:<18} {:<5} {:>12} {:>12}",
            printable(&t.name),
            format!("{:?}", t.shape),
            t.ty,
            t.bytes_before,
            t.bytes_after
        )?;
    }
    let before: usize = report.tensors.iter().map(|t| t.bytes_before).sum();
    writeln!(
        out,
        "wrote {} (arch {}, {} metadata keys, {} tensors): {} -> {} bytes",
        printable(&output.display().to_string()),
        report.arch,
        report.metadata_keys,
        report.tensors.len(),
        before,
        report.file_bytes
    )
}
