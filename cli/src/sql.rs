//! `tarn sql`: sends statements to a running service over `POST /v1/sql` and prints the answers
//! as a table (with a progress bar while a load runs), CSV or JSON.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use tarn_catalog::{Statement, parse_statement};

use crate::http::describe;

/// The address a service listens on when its config names none.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// `Accept` values of `POST /v1/sql`.
const ARROW: &str = "application/vnd.apache.arrow.stream";
const CSV: &str = "text/csv";
const JSON: &str = "application/json";

/// The keys of `tarn.toml` the client reads: where the service listens, and where its data
/// (with a generated admin token) is.
#[derive(Debug, Default, serde::Deserialize)]
struct ClientKeys {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// The service's URL [default: from the config's `listen`, else http://127.0.0.1:8080].
    #[arg(long, env = "TARN_URL")]
    url: Option<String>,
    /// Configuration file, used for the service's address.
    #[arg(long, env = "TARN_CONFIG")]
    config: Option<PathBuf>,
    /// A statement to run (repeatable).
    #[arg(short = 'e', long = "execute")]
    execute: Vec<String>,
    /// A file of statements, each ending with `;` at the end of a line (`-` for standard input).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// How to print answers.
    #[arg(long, value_enum, default_value = "table", env = "TARN_OUTPUT")]
    output: OutputFormat,
    /// The token to send [default: the admin token in <data_dir>/admin.token, if there].
    #[arg(long, env = "TARN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Splits a script into statements: each ends with `;` at the end of a line. `--` comment lines
/// are dropped.
pub fn split_script(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("--") || (cur.is_empty() && line.trim().is_empty()) {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if line.trim_end().ends_with(';') {
            out.push(std::mem::take(&mut cur).trim().to_string());
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// `tarn sql`: runs each statement in turn, stopping at the first that fails.
pub async fn run(args: SqlArgs) -> Result<(), String> {
    let keys = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => ClientKeys::default(),
    };
    let url = match args.url {
        Some(u) => u,
        None => format!(
            "http://{}",
            std::env::var("TARN_LISTEN")
                .ok()
                .or(keys.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.into())
        ),
    };
    let url = crate::http::base_url(&url, "--url")?;
    let mut statements = args.execute.clone();
    if let Some(f) = &args.file {
        let mut text = String::new();
        if f.as_os_str() == "-" {
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| e.to_string())?;
        } else {
            text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        }
        statements.extend(split_script(&text));
    }
    if statements.is_empty() {
        return Err("nothing to run: give statements with -e or a file with -f".into());
    }
    let token = crate::http::token(args.token, keys.data_dir);
    let http = crate::http::client(token.as_deref(), None)?;
    for stmt in statements {
        run_one(&http, &url, &stmt, args.output).await?;
    }
    Ok(())
}

async fn run_one(
    http: &reqwest::Client,
    url: &str,
    stmt: &str,
    output: OutputFormat,
) -> Result<(), String> {
    // A load shows a progress bar fed from the table's status while the statement runs.
    let progress = match parse_statement(stmt) {
        Ok(Statement::SecondaryLoad {
            table,
            validate_only: false,
        }) if std::io::stderr().is_terminal() => table.database.map(|db| {
            tokio::spawn(show_progress(
                http.clone(),
                format!("{url}/v1/tables/{db}/{}", table.table),
            ))
        }),
        _ => None,
    };
    let accept = match output {
        OutputFormat::Table => ARROW,
        OutputFormat::Csv => CSV,
        OutputFormat::Json => JSON,
    };
    let resp = http
        .post(format!("{url}/v1/sql"))
        .header("accept", accept)
        .header("content-type", "text/plain")
        .body(stmt.to_string())
        .send()
        .await;
    if let Some(p) = progress {
        p.abort();
        let _ = p.await;
    }
    let resp = resp.map_err(|e| format!("cannot reach {url}: {}", describe(&e)))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| {
        format!(
            "the answer from {url} was cut short: {}\n  in: {}",
            describe(&e),
            stmt.lines().next().unwrap_or("")
        )
    })?;
    if !status.is_success() {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let code = v["error"]["code"].as_str().unwrap_or("error");
        let msg = v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into());
        return Err(format!(
            "ERROR ({code}): {msg}\n  in: {}",
            stmt.lines().next().unwrap_or("")
        ));
    }
    let mut stdout = std::io::stdout();
    use std::io::Write;
    match output {
        OutputFormat::Table => {
            let reader =
                arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
                    .map_err(|e| e.to_string())?;
            let schema = reader.schema();
            let batches = reader
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            if schema.fields().is_empty() {
                writeln!(stdout, "OK").map_err(|e| e.to_string())?;
            } else {
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                let table = arrow::util::pretty::pretty_format_batches(&batches)
                    .map_err(|e| e.to_string())?;
                if rows > 0 {
                    writeln!(stdout, "{table}").map_err(|e| e.to_string())?;
                }
                writeln!(
                    stdout,
                    "{rows} row{} in set",
                    if rows == 1 { "" } else { "s" }
                )
                .map_err(|e| e.to_string())?;
            }
        }
        OutputFormat::Csv | OutputFormat::Json => {
            stdout.write_all(&body).map_err(|e| e.to_string())?;
            writeln!(stdout).map_err(|e| e.to_string())?;
            // A JSON answer whose query failed after its first rows says so after them.
            if let OutputFormat::Json = output
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                && let Some(e) = v.get("error")
            {
                return Err(format!(
                    "ERROR ({}): {}\n  in: {}",
                    e["code"].as_str().unwrap_or("error"),
                    e["message"].as_str().unwrap_or_default(),
                    stmt.lines().next().unwrap_or("")
                ));
            }
        }
    }
    Ok(())
}

async fn show_progress(http: reqwest::Client, status_url: String) {
    let bar = indicatif::ProgressBar::new(1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} loading [{bar:40}] {percent:>3}% {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(r) = http.get(&status_url).send().await
            && let Ok(v) = r.json::<serde_json::Value>().await
            && let Some(p) = v["status"]["status"]["load_progress"].as_f64()
        {
            bar.set_position((p * 10.0) as u64);
        }
        bar.tick();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_at_line_ends() {
        let s = split_script("-- c\nCREATE DATABASE a;\nSELECT 'x;y'\n  FROM t;\n\nSELECT 1");
        assert_eq!(
            s,
            vec!["CREATE DATABASE a;", "SELECT 'x;y'\n  FROM t;", "SELECT 1"]
        );
    }
}
