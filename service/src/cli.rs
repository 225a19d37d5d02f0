//! The `tarn` command: `tarn serve` runs the service; `tarn sql`, `tarn drill` and `tarn bench`
//! are the clients of `tarn-cli`, which reach a running service through its HTTP API only.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ServeArgs};

#[derive(Debug, Parser)]
#[command(
    name = "tarn",
    version,
    about = "Tarn: SQL over files in object storage, loaded into memory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service.
    Serve(Box<ServeArgs>),
    /// Run a cluster's worker: it holds the parts of tables its coordinator (a `tarn serve` with
    /// `workers`) gives it and runs the query tasks it sends. Needs --cluster-token; listens on
    /// --listen (HTTP and gRPC on one port).
    Worker(Box<ServeArgs>),
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    #[command(flatten)]
    Client(tarn_cli::Command),
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Check a tarn.toml: exit 0 when `tarn serve` would start with it, else name the key and
    /// its line.
    Check {
        /// The file [default: TARN_CONFIG, else ./tarn.toml].
        #[arg(long, env = "TARN_CONFIG")]
        config: Option<std::path::PathBuf>,
    },
}

pub fn main() -> ExitCode {
    crate::allocator::configure();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TARN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tarn: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => match query_runtime() {
            Ok(queries) => rt.block_on(serve(Config::load(&args), queries.handle().clone())),
            Err(e) => Err(format!("cannot start the query runtime: {e}")),
        },
        Command::Worker(args) => match query_runtime() {
            Ok(queries) => rt.block_on(serve(Config::load_worker(&args), queries.handle().clone())),
            Err(e) => Err(format!("cannot start the query runtime: {e}")),
        },
        Command::Config {
            action: ConfigAction::Check { config },
        } => {
            let path = config.unwrap_or_else(|| "tarn.toml".into());
            crate::config::check(&path).map(|summary| eprintln!("{summary}"))
        }
        Command::Client(command) => rt.block_on(tarn_cli::run(command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("tarn: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime queries run on: one worker per core, apart from the service's runtime (its API,
/// loads, refreshes, health checks), so that a heavy query cannot hold those up.
fn query_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name("tarn-query")
        .enable_all()
        .build()
}

async fn serve(
    config: crate::Result<Config>,
    queries: tokio::runtime::Handle,
) -> Result<(), String> {
    let config = config.map_err(|e| e.to_string())?;
    let app = crate::Application::build(config, queries)
        .await
        .map_err(|e| e.to_string())?;
    app.run_until_stopped().await.map_err(|e| e.to_string())
}
