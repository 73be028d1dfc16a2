//! The `greenai` command (feature `cli`). One module per subcommand under `src/bin/greenai/`; a new
//! subcommand adds a variant to [`Command`] and a module with its `Args` and `run`.

#[path = "greenai/ct.rs"]
mod ct;
#[path = "greenai/files.rs"]
mod files;
#[path = "greenai/flops.rs"]
mod flops;
#[path = "greenai/gguf.rs"]
mod gguf;

use clap::{Parser, Subcommand};
use greenai::Error;
use std::io::Write;
use std::process::ExitCode;

/// The name standard output's errors carry, so that `main` tells a closed pipe from a failed file.
const STDOUT: &str = "<stdout>";

/// A failed write to standard output as an error.
fn stdout_error(e: std::io::Error) -> Error {
    Error::io(STDOUT, e)
}

/// Standard output, buffered; every write error is an [`Error`] (never a panic, unlike `println!`).
fn stdout() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::new(std::io::stdout().lock())
}

/// `text` with every control character (terminal escape sequences included) escaped, so that names
/// read from a file cannot drive the terminal.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect::<String>()
        .into()
}

/// Exit status of a run that stopped because standard output is a closed pipe: 128 + SIGPIPE, what a
/// shell reports for a program the signal ended (`greenai inspect F | head -1` ends quietly).
const CLOSED_PIPE: u8 = 141;

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
    /// The tensors of a safetensors file or model folder: dtype, shape, size, range and sparsity.
    Inspect(files::InspectArgs),
    /// Quantize and/or prune the float tensors of a safetensors file or model folder into a smaller one.
    Compress(files::CompressArgs),
    /// Turn a compressed file or folder back into plain float safetensors.
    Decompress(files::DecompressArgs),
}

/// On SIGINT or SIGTERM: removes the run's temporary files and exits with the status a shell gives a
/// program the signal ended (128 + the signal: 130, 143). Watched on a thread of its own, so the
/// removal runs outside any signal handler.
#[cfg(unix)]
fn stop_cleanly_on_signals() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let _closed = greenai::model::close_staging();
            std::process::exit(128 + signal);
        }
    })?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(unix)]
    if let Err(e) = stop_cleanly_on_signals() {
        let _ = writeln!(std::io::stderr(), "greenai: warning: cannot watch for SIGINT/SIGTERM: {e}");
    }
    let result = match cli.command {
        Command::Flops(args) => flops::run(&args),
        Command::Inspect(args) => files::inspect(&args),
        Command::Compress(args) => files::compress(&args),
        Command::Decompress(args) => files::decompress(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Io { path, source })
            if path == STDOUT && source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::from(CLOSED_PIPE)
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "greenai: error: {}", printable(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}
