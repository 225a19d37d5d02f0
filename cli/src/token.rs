//! `tarn token create|list|delete`: access tokens, through `POST/GET/DELETE /v1/tokens` (an
//! admin's). `create` prints the new token alone on standard output (it is shown this once).

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::http::{base_url, client, describe, token};

#[derive(Debug, clap::Args)]
pub struct Connection {
    /// The service's URL.
    #[arg(long, env = "TARN_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An admin token [default: the admin token in <data_dir>/admin.token, if there].
    #[arg(long, env = "TARN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The service's data directory, where a generated admin token is [default: ./tarn-data].
    #[arg(long, env = "TARN_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (shown this once).
    Create {
        #[command(flatten)]
        connection: Connection,
        /// Its name (letters, digits, '_', '.', '-').
        #[arg(long)]
        name: String,
        /// reader, loader or admin.
        #[arg(long)]
        role: String,
        /// Limit it to these databases (comma-separated) [default: all].
        #[arg(long, value_delimiter = ',')]
        databases: Option<Vec<String>>,
        /// How long it is valid, e.g. 30d [default: until deleted].
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List the tokens (without their secrets).
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete a token: it is refused from now on.
    Delete {
        #[command(flatten)]
        connection: Connection,
        /// The token's name.
        name: String,
    },
}

async fn send(
    connection: Connection,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let url = base_url(&connection.url, "--url")?;
    let http = client(
        token(connection.token, connection.data_dir).as_deref(),
        None,
    )?;
    let mut req = http.request(method, format!("{url}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {}", describe(&e)))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!(
            "ERROR ({}): {}",
            v["error"]["code"].as_str().unwrap_or("error"),
            v["error"]["message"].as_str().unwrap_or("no message")
        ));
    }
    Ok(v)
}

pub async fn run(command: TokenCommand) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout();
    match command {
        TokenCommand::Create {
            connection,
            name,
            role,
            databases,
            expires_in,
        } => {
            let body = json!({"name": name, "role": role, "databases": databases, "expires_in": expires_in});
            let v = send(connection, reqwest::Method::POST, "/v1/tokens", Some(body)).await?;
            writeln!(out, "{}", v["token"].as_str().unwrap_or_default()).map_err(|e| e.to_string())
        }
        TokenCommand::List { connection } => {
            let v = send(connection, reqwest::Method::GET, "/v1/tokens", None).await?;
            for t in v["tokens"].as_array().into_iter().flatten() {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    t["name"].as_str().unwrap_or_default(),
                    t["role"].as_str().unwrap_or_default(),
                    t["databases"]
                        .as_array()
                        .map(|d| d
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(","))
                        .unwrap_or_else(|| "*".into()),
                    t["expires_at"].as_str().unwrap_or("-")
                )
                .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        TokenCommand::Delete { connection, name } => {
            send(
                connection,
                reqwest::Method::DELETE,
                &format!("/v1/tokens/{name}"),
                None,
            )
            .await?;
            writeln!(out, "deleted {name}").map_err(|e| e.to_string())
        }
    }
}
