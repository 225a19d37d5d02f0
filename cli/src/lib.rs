//! Tarn's command-line clients: `tarn sql` ([`sql`]) sends statements to a running service and
//! prints the answers, `tarn drill` ([`drill`]) rehearses a region's failure against running
//! instances, `tarn bench` ([`bench`]) runs Tarn's engine over Parquet files as they are, and
//! `tarn token` ([`token`]) manages access tokens.
//!
//! Architecture invariant: the clients know the service only by its public HTTP API (this crate
//! does not depend on `tarn-service`); `tarn bench` uses the engine's settings, not a server.

pub mod bench;
pub mod drill;
mod http;
pub mod sql;
pub mod token;

use clap::Subcommand;

/// The client commands of the `tarn` binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send SQL statements to a running service and print the answers.
    Sql(sql::SqlArgs),
    /// Rehearse what happens when a region fails, against running instances.
    #[command(subcommand)]
    Drill(DrillCommand),
    /// Benchmark helpers.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Create, list and delete access tokens (with an admin token).
    #[command(subcommand)]
    Token(token::TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Run queries with Tarn's engine over Parquet files as they are (no load); prints JSON.
    Parquet(bench::ParquetArgs),
}

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Take a region's stores away, measure recovery from the replicas and data lag, bring it
    /// back and check failback; exits non-zero when a check fails.
    Failover(drill::FailoverArgs),
}

/// Runs a client command; the error is what to print.
pub async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Sql(args) => sql::run(args).await,
        Command::Bench(BenchCommand::Parquet(args)) => bench::parquet(args).await,
        Command::Token(command) => token::run(command).await,
        Command::Drill(DrillCommand::Failover(args)) => {
            if drill::failover(args).await? {
                Ok(())
            } else {
                Err("the drill failed: see the checks above".to_string())
            }
        }
    }
}
