//! The `greenai` command (feature `cli`). One module per subcommand under `src/bin/greenai/`; a new
//! subcommand adds a variant to [`Command`] and a module with its `Args` and `run`.

#[path = "greenai/files.rs"]
mod files;
#[path = "greenai/flops.rs"]
mod flops;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Make neural networks smaller, faster and cheaper in energy, and say what they cost.
#[derive(Parser)]
#[command(name = "greenai", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// MACs, FLOPs, params, bytes, energy and carbon of a model, per layer and in total.
    Flops(flops::Args),
    /// The tensors of a safetensors file: dtype, shape, size, range and sparsity.
    Inspect(files::InspectArgs),
    /// Quantize and/or prune the float tensors of a safetensors file into a smaller one.
    Compress(files::CompressArgs),
    /// Turn a compressed file back into a plain float safetensors file.
    Decompress(files::DecompressArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Flops(args) => flops::run(&args),
        Command::Inspect(args) => files::inspect(&args),
        Command::Compress(args) => files::compress(&args),
        Command::Decompress(args) => files::decompress(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greenai: error: {e}");
            ExitCode::FAILURE
        }
    }
}
