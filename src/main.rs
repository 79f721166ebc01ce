//! The `parley` binary: parses flags and hands over to the library.

use clap::Parser;

/// mimalloc rather than the system allocator: a send allocates and frees
/// dozens of small buffers across threads (request, JSON, event, frames),
/// which mimalloc serves with less CPU, for a little more memory per idle
/// socket (docs/perf/history.md has the figures).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = parley::cli::Cli::parse();
    parley::telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parley: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(parley::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "parley stopped");
            eprintln!("parley: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
