//! The `greenai` command (feature `cli`). One module per subcommand under `src/bin/greenai/`; a new
//! subcommand adds a variant to [`Command`] and a module with its `Args` and `run`.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Flops(args) => flops::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greenai: error: {e}");
            ExitCode::FAILURE
        }
    }
}
