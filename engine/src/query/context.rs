//! The DataFusion context every query runs in: Tarn's catalog, the MySQL dialect, Tarn's own
//! optimizer rules, the engine settings Tarn chooses differently (each documented with the
//! measurement that chose it), and `@@` system variables.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::execution::context::SessionConfig;
use datafusion::logical_expr::var_provider::{VarProvider, VarType};
use datafusion::prelude::SessionContext;
use tarn_catalog::CatalogStore;

use super::catalog::TarnCatalog;
use super::cluster::ClusterSettings;
use super::exprs::FastExpressions;
use super::scan::WaitForJoinFilters;
use super::yields::YieldInJoins;
use crate::store::MemoryStore;

/// The DataFusion catalog Tarn's databases live in.
pub const CATALOG: &str = "tarn";
/// The schema unqualified table names resolve in when a session has no default database (none
/// exists by that name, so such a name is not found).
pub const DEFAULT_SCHEMA: &str = "default";

/// What `SELECT @@version` answers: the MySQL version whose dialect Tarn speaks, then Tarn's own.
pub fn server_version() -> String {
    format!("9.4.0-tarn-{}", env!("CARGO_PKG_VERSION"))
}

/// The system variables (`@@name`, `@@session.name`, `SHOW VARIABLES`) with the values MySQL
/// clients and drivers look for when they connect; besides `hostname`, fixed. Names are lower case.
pub fn system_variables(hostname: &str) -> Vec<(&'static str, ScalarValue)> {
    let s = |v: &str| ScalarValue::Utf8(Some(v.to_string()));
    let n = |v: i64| ScalarValue::Int64(Some(v));
    vec![
        ("auto_increment_increment", n(1)),
        ("autocommit", n(1)),
        ("character_set_client", s("utf8mb4")),
        ("character_set_connection", s("utf8mb4")),
        ("character_set_database", s("utf8mb4")),
        ("character_set_results", s("utf8mb4")),
        ("character_set_server", s("utf8mb4")),
        ("collation_connection", s("utf8mb4_0900_ai_ci")),
        ("collation_database", s("utf8mb4_0900_ai_ci")),
        ("collation_server", s("utf8mb4_0900_ai_ci")),
        ("hostname", s(hostname)),
        ("init_connect", s("")),
        ("interactive_timeout", n(28800)),
        ("license", s("Apache-2.0")),
        ("lower_case_table_names", n(1)),
        ("max_allowed_packet", n(67108864)),
        ("net_buffer_length", n(16384)),
        ("net_write_timeout", n(60)),
        ("performance_schema", n(1)),
        ("query_cache_size", n(0)),
        ("query_cache_type", s("OFF")),
        (
            "sql_mode",
            s(
                "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION",
            ),
        ),
        ("sql_select_limit", n(i64::MAX)),
        ("system_time_zone", s("UTC")),
        ("time_zone", s("+00:00")),
        ("transaction_isolation", s("REPEATABLE-READ")),
        ("transaction_read_only", n(0)),
        ("tx_isolation", s("REPEATABLE-READ")),
        ("tx_read_only", n(0)),
        ("version", s(&server_version())),
        ("version_comment", s("Tarn lakehouse query service")),
        ("version_compile_machine", s(std::env::consts::ARCH)),
        ("version_compile_os", s(std::env::consts::OS)),
        ("wait_timeout", n(28800)),
    ]
}

/// `@@hostname` and the other [`system_variables`].
#[derive(Debug)]
struct SystemVariables {
    values: Vec<(&'static str, ScalarValue)>,
}

impl SystemVariables {
    /// The variable `@@name`, `@@session.name` or `@@global.name`.
    fn get(&self, var_names: &[String]) -> Option<&ScalarValue> {
        let name = var_names
            .iter()
            .map(|s| s.trim_start_matches('@').to_lowercase())
            .filter(|s| !matches!(s.as_str(), "session" | "global" | "local"))
            .collect::<Vec<_>>()
            .join(".");
        let name = name
            .strip_prefix("session.")
            .or_else(|| name.strip_prefix("global."))
            .or_else(|| name.strip_prefix("local."))
            .unwrap_or(&name);
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl VarProvider for SystemVariables {
    fn get_value(&self, var_names: Vec<String>) -> datafusion::error::Result<ScalarValue> {
        match self.get(&var_names) {
            Some(v) => Ok(v.clone()),
            None => {
                datafusion::common::plan_err!("unknown system variable {}", var_names.join("."))
            }
        }
    }

    fn get_type(&self, var_names: &[String]) -> Option<DataType> {
        Some(
            self.get(var_names)
                .map_or(DataType::Utf8, |v| v.data_type()),
        )
    }
}

/// The DataFusion context every query runs in.
pub(super) fn new_context(
    catalog: Arc<CatalogStore>,
    memory: Arc<MemoryStore>,
    hostname: String,
    cluster: Option<&ClusterSettings>,
) -> crate::Result<SessionContext> {
    // The partitions follow the shards.
    let config = engine_config(memory.shards)
        .with_default_catalog_and_schema(CATALOG, DEFAULT_SCHEMA)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(false);
    let mut builder = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_default_features();
    builder = match cluster {
        // Plans travel to workers in DataFusion's protobuf form, which has no place for Tarn's
        // own expressions (FastExpressions) and no run-time filters across processes.
        Some(cluster) => super::cluster::coordinator(builder, cluster)?,
        None => builder
            .with_physical_optimizer_rule(Arc::new(FastExpressions))
            .with_physical_optimizer_rule(Arc::new(WaitForJoinFilters)),
    };
    let state = builder
        .with_physical_optimizer_rule(Arc::new(YieldInJoins))
        .build();
    let ctx = SessionContext::new_with_state(state);
    for f in super::json::functions() {
        ctx.register_udf(f);
    }
    {
        use datafusion::execution::FunctionRegistry;
        // Registering a planner on a fresh context cannot fail.
        let _ = ctx
            .state_ref()
            .write()
            .register_expr_planner(Arc::new(super::json::JsonOperators));
    }
    ctx.register_catalog(CATALOG, Arc::new(TarnCatalog { catalog, memory }));
    ctx.register_variable(
        VarType::System,
        Arc::new(SystemVariables {
            values: system_variables(&hostname),
        }),
    );
    Ok(ctx)
}

/// DataFusion settings Tarn chooses differently, each kept unless a `DATAFUSION_*` variable
/// names it.
///
/// Joins whose build side has up to a million rows (or 128 MiB) build one shared hash table
/// instead of hash-partitioning both sides: on few cores, repartitioning the probe side (often
/// lineitem-sized) costs more than building the small side once, and the join's run-time filter
/// then reaches the scan as a plain key set instead of one set per partition. Measured with
/// `./bench/tpch.sh`: TPC-H SF1 geometric mean 1.57 -> 1.32 of DuckDB's time, Q7 96 -> 59 ms.
///
/// Integer join keys get a direct-indexed table (DataFusion's perfect hash join) when their range
/// is under a million values, or when at least 9 in 1,000 values of the range are keys: the table
/// (4 bytes a value of the range) then costs at most about 450 bytes per build row, reserved from
/// the query's memory pool, and both the join's probe and the run-time filter it hands the scan
/// become an array lookup. Measured: geometric mean 1.06 -> 0.87, Q17 40 -> 18 ms, Q5 61 -> 33 ms
/// at 3 in 100; then 9 in 1,000, which takes in Q4's 57 K orders spread over 6 M order keys:
/// Q4 48 -> 20 ms, Q10 54 -> 43 ms, Q21 82 -> 67 ms (the same server state, one run each).
///
/// Partial aggregation is given up once it keeps more than 3 in 10 of its input rows as groups
/// (DataFusion gives up at 8 in 10): a grouping by a near-unique key (TPC-H Q18's orders) then
/// goes straight to the final, partitioned aggregation instead of being hashed twice. Measured:
/// Q18 206 -> 141 ms, no other TPC-H query changed beyond noise.
const TARN_DEFAULTS: [(&str, &str); 5] = [
    (
        "datafusion.execution.skip_partial_aggregation_probe_ratio_threshold",
        "0.3",
    ),
    (
        "datafusion.execution.perfect_hash_join_small_build_threshold",
        "1048576",
    ),
    (
        "datafusion.execution.perfect_hash_join_min_key_density",
        "0.009",
    ),
    (
        "datafusion.optimizer.hash_join_single_partition_threshold_rows",
        "1000000",
    ),
    (
        "datafusion.optimizer.hash_join_single_partition_threshold",
        "134217728",
    ),
];

/// The engine's settings, for the server and for `tarn bench parquet` alike: DataFusion's own
/// `DATAFUSION_*` variables (for example DATAFUSION_EXECUTION_BATCH_SIZE), the MySQL dialect,
/// [`TARN_DEFAULTS`], and `partitions` scan partitions.
pub fn engine_config(partitions: usize) -> SessionConfig {
    let mut config = SessionConfig::from_env()
        .unwrap_or_default()
        .with_target_partitions(partitions);
    config.options_mut().sql_parser.dialect = datafusion::config::Dialect::MySQL;
    tarn_defaults(&mut config);
    config
}

/// Applies [`TARN_DEFAULTS`] to `config`, except those a `DATAFUSION_*` variable sets.
fn tarn_defaults(config: &mut SessionConfig) {
    for (key, value) in TARN_DEFAULTS {
        default_unless_env(config, key, value);
    }
}

/// Sets DataFusion's setting `key` to `value`, unless its `DATAFUSION_*` variable sets it.
pub(super) fn default_unless_env(config: &mut SessionConfig, key: &str, value: &str) {
    let env = key.to_uppercase().replace('.', "_");
    if std::env::var_os(&env).is_none() {
        // The keys are DataFusion's own (checked by tests).
        let _ = config.options_mut().set(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tarn_default_is_a_datafusion_setting_and_takes_effect() {
        let mut config = SessionConfig::new();
        for (key, value) in TARN_DEFAULTS {
            let mut options = datafusion::config::ConfigOptions::default();
            assert!(options.set(key, value).is_ok(), "{key} = {value}");
        }
        tarn_defaults(&mut config);
        let options = config.options();
        assert_eq!(
            options.optimizer.hash_join_single_partition_threshold_rows,
            1_000_000
        );
        assert_eq!(options.execution.perfect_hash_join_min_key_density, 0.009);
    }
}
