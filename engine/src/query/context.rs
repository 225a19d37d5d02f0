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
use super::exprs::FastExpressions;
use super::scan::WaitForJoinFilters;
use super::yields::YieldInJoins;
use crate::store::MemoryStore;

/// The DataFusion catalog Tarn's databases live in.
pub const CATALOG: &str = "tarn";
/// The schema unqualified table names resolve in when a session has no default database (none
/// exists by that name, so such a name is not found).
pub const DEFAULT_SCHEMA: &str = "default";

/// `@@hostname` and friends.
#[derive(Debug)]
struct SystemVariables {
    hostname: String,
}

impl VarProvider for SystemVariables {
    fn get_value(&self, var_names: Vec<String>) -> datafusion::error::Result<ScalarValue> {
        let name = var_names
            .first()
            .map(|s| s.trim_start_matches('@').to_lowercase())
            .unwrap_or_default();
        match name.as_str() {
            "hostname" => Ok(ScalarValue::Utf8(Some(self.hostname.clone()))),
            "version" => Ok(ScalarValue::Utf8(Some(format!(
                "8.4.0-tarn-{}",
                env!("CARGO_PKG_VERSION")
            )))),
            "version_comment" => Ok(ScalarValue::Utf8(Some(
                "Tarn lakehouse query service".into(),
            ))),
            other => datafusion::common::plan_err!("unknown system variable @@{other}"),
        }
    }

    fn get_type(&self, _var_names: &[String]) -> Option<DataType> {
        Some(DataType::Utf8)
    }
}

/// The DataFusion context every query runs in.
pub(super) fn new_context(
    catalog: Arc<CatalogStore>,
    memory: Arc<MemoryStore>,
    hostname: String,
) -> SessionContext {
    // The partitions follow the shards.
    let config = engine_config(memory.shards)
        .with_default_catalog_and_schema(CATALOG, DEFAULT_SCHEMA)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(false);
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(FastExpressions))
        .with_physical_optimizer_rule(Arc::new(WaitForJoinFilters))
        .with_physical_optimizer_rule(Arc::new(YieldInJoins))
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.register_catalog(CATALOG, Arc::new(TarnCatalog { catalog, memory }));
    ctx.register_variable(VarType::System, Arc::new(SystemVariables { hostname }));
    ctx
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
        let env = key.to_uppercase().replace('.', "_");
        if std::env::var_os(&env).is_none() {
            // The keys are DataFusion's own (checked by a test).
            let _ = config.options_mut().set(key, value);
        }
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
