//! The `parley-bench` binary: Parley's benchmarks, kept out of the server
//! binary. Its API modes are the load generator (`parley_bench`), which
//! drives a running Parley through its public HTTP and WebSocket API;
//! `projection` runs the projector in-process on a backend of its own.

mod projection;

use clap::{Parser, Subcommand};
use parley::cli::BackendArgs;

/// The server's allocator: the load generator shares the box's cores with
/// the server it measures, so its own allocation costs should be as low as
/// the server's, and `projection` runs the server's code as it runs there.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "parley-bench",
    version,
    about = "Parley's benchmarks: a load generator for a running Parley, and the projector timed in-process"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    #[command(flatten)]
    args: parley_bench::BenchArgs,
}

// Parsed once at start: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Mode {
    #[command(flatten)]
    Api(parley_bench::Mode),
    /// Append N events through the log, then time the projector catching
    /// up and a full replay, in-process (use a fresh data dir or keyspace;
    /// --url and --ws are not used).
    Projection {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Conversations the events are spread over.
        #[arg(long, default_value_t = 1000)]
        conversations: u64,
        #[command(flatten)]
        backend: BackendArgs,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    parley::telemetry::init(parley::cli::LogFormat::Text);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parley-bench: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let run = async {
        match cli.mode {
            Mode::Api(mode) => parley_bench::run(mode, &cli.args).await,
            Mode::Projection {
                events,
                conversations,
                backend,
            } => projection::run(&backend, events, conversations, cli.args.json).await,
        }
    };
    match runtime.block_on(run) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
