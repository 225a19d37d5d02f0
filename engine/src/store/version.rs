//! Table versions: what a load or refresh publishes. A version is immutable: its segments laid
//! out over N shards, each shard with its batches' statistics as arrays (the shape DataFusion's
//! pruning wants) and each column's figures over the whole shard (for the planner).

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, UInt32Array, UInt64Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, Schema, SchemaRef, UInt64Type};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, Result, ScalarValue};
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::Accumulator;
use tarn_connectors::{Manifest, RejectedRow};

use super::segment::{BatchStats, Segment};

/// One shard: the batches a scan partition reads, and their statistics as arrays (one entry per
/// batch) in the shape DataFusion's pruning wants.
#[derive(Debug)]
pub struct Shard {
    pub batches: Vec<RecordBatch>,
    pub mins: Vec<ArrayRef>,
    pub maxs: Vec<ArrayRef>,
    pub nulls: Vec<ArrayRef>,
    pub rows: ArrayRef,
    /// Per column, its min, max and null count over the whole shard (for the planner).
    pub columns: Vec<datafusion::common::ColumnStatistics>,
}

/// One worker's part of a table spread over a cluster: which worker holds it, and the version of
/// it (the worker's own numbering) that belongs to the cluster's version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemotePart {
    /// The worker's URL.
    pub worker: String,
    pub version: u64,
    pub rows: u64,
    pub bytes: u64,
    pub files: usize,
    /// The worker's shards: its scan's partitions.
    pub shards: usize,
}

#[derive(Debug)]
pub struct TableVersion {
    pub version: u64,
    pub schema: SchemaRef,
    /// `schema` as queries see this version: a column without a single NULL in it is NOT NULL.
    /// The planner then needs no NULL handling for it (a `NOT IN` over it becomes a plain anti
    /// join, which can build on its smaller side). Loads still conform to `schema`.
    pub query_schema: SchemaRef,
    pub segments: Vec<Arc<Segment>>,
    pub shards: Vec<Shard>,
    pub manifest: Manifest,
    pub rows: u64,
    pub bytes: u64,
    pub rejected: Vec<RejectedRow>,
    pub loaded_at: DateTime<Utc>,
    /// On a cluster's coordinator: the workers' parts, which hold the rows (this version then
    /// holds none itself). `None` for a table held here.
    pub remote: Option<Vec<RemotePart>>,
}

impl TableVersion {
    /// Lays the segments' batches out over `nshards` shards, round robin, so every shard gets a
    /// similar share of every file.
    pub fn build(
        version: u64,
        schema: SchemaRef,
        segments: Vec<Arc<Segment>>,
        manifest: Manifest,
        nshards: usize,
    ) -> Self {
        let nshards = nshards.max(1);
        let mut parts: Vec<Vec<(RecordBatch, &BatchStats)>> =
            (0..nshards).map(|_| Vec::new()).collect();
        let mut i = 0;
        for seg in &segments {
            for (b, s) in seg.batches.iter().zip(&seg.stats) {
                parts[i % nshards].push((b.clone(), s));
                i += 1;
            }
        }
        let ncols = schema.fields().len();
        let shards: Vec<Shard> = parts
            .into_iter()
            .map(|part| {
                let col = |f: &dyn Fn(&BatchStats) -> ScalarValue, c: usize| -> ArrayRef {
                    let vals: Vec<ScalarValue> = part.iter().map(|(_, s)| f(s)).collect();
                    if vals.is_empty() {
                        return arrow::array::new_empty_array(schema.field(c).data_type());
                    }
                    ScalarValue::iter_to_array(vals).unwrap_or_else(|_| {
                        arrow::array::new_null_array(schema.field(c).data_type(), part.len())
                    })
                };
                let mut shard = Shard {
                    columns: Vec::new(),
                    mins: (0..ncols).map(|c| col(&|s| s.min[c].clone(), c)).collect(),
                    maxs: (0..ncols).map(|c| col(&|s| s.max[c].clone(), c)).collect(),
                    nulls: (0..ncols)
                        .map(|c| {
                            Arc::new(UInt64Array::from_iter_values(
                                part.iter().map(|(_, s)| s.nulls[c]),
                            )) as ArrayRef
                        })
                        .collect(),
                    rows: Arc::new(UInt64Array::from_iter_values(
                        part.iter().map(|(_, s)| s.rows),
                    )),
                    batches: part.into_iter().map(|(b, _)| b).collect(),
                };
                shard.columns = (0..ncols)
                    .map(|c| column_statistics(&shard, c, schema.field(c).data_type(), None))
                    .collect();
                shard
            })
            .collect();
        let query_schema = without_nulls(&schema, &shards);
        let rows = segments.iter().map(|s| s.rows).sum();
        let bytes = segments.iter().map(|s| s.bytes).sum();
        let rejected = segments
            .iter()
            .flat_map(|s| s.rejected.iter().cloned())
            .collect();
        Self {
            version,
            schema,
            query_schema,
            segments,
            shards,
            manifest,
            rows,
            bytes,
            rejected,
            loaded_at: Utc::now(),
            remote: None,
        }
    }

    /// A cluster's version of a table whose rows the workers hold in `parts`: `schema` is the
    /// one every part has, `manifest` all the files.
    pub fn remote(
        version: u64,
        schema: SchemaRef,
        manifest: Manifest,
        rejected: Vec<RejectedRow>,
        parts: Vec<RemotePart>,
    ) -> Self {
        Self {
            version,
            query_schema: schema.clone(),
            schema,
            segments: Vec::new(),
            shards: Vec::new(),
            manifest,
            rows: parts.iter().map(|p| p.rows).sum(),
            bytes: parts.iter().map(|p| p.bytes).sum(),
            rejected,
            loaded_at: Utc::now(),
            remote: Some(parts),
        }
    }

    /// Whether workers hold the rows (this process coordinates a cluster).
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }
}

/// `schema` with every column that holds no NULL in `shards` (by their column statistics)
/// marked NOT NULL.
fn without_nulls(schema: &SchemaRef, shards: &[Shard]) -> SchemaRef {
    let no_nulls = |c: usize| {
        shards
            .iter()
            .all(|s| s.columns[c].null_count == datafusion::common::stats::Precision::Exact(0))
    };
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(c, f)| match f.is_nullable() && no_nulls(c) {
            true => Arc::new(f.as_ref().clone().with_nullable(false)),
            false => f.clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Min, max and null count of one column over a shard's batches `keep` (all when `None`), from
/// the per-batch statistics; the bounds are inexact (DataFusion must not answer MIN/MAX from
/// them).
pub fn column_statistics(
    shard: &Shard,
    column: usize,
    data_type: &DataType,
    keep: Option<&[usize]>,
) -> ColumnStatistics {
    let (mins, maxs, nulls) = match keep {
        None => {
            let nulls = shard.nulls[column].as_primitive::<UInt64Type>();
            (
                Some(shard.mins[column].clone()),
                Some(shard.maxs[column].clone()),
                nulls.values().iter().sum::<u64>(),
            )
        }
        Some(keep) => {
            let kept = UInt32Array::from_iter_values(keep.iter().map(|&b| b as u32));
            let counts = shard.nulls[column].as_primitive::<UInt64Type>();
            (
                take(shard.mins[column].as_ref(), &kept, None).ok(),
                take(shard.maxs[column].as_ref(), &kept, None).ok(),
                keep.iter().map(|&b| counts.value(b)).sum::<u64>(),
            )
        }
    };
    let bound = |acc: Result<Box<dyn Accumulator>>, values: Option<ArrayRef>| {
        let folded = acc.and_then(|mut acc| {
            if let Some(v) = values {
                acc.update_batch(&[v])?;
            }
            acc.evaluate()
        });
        match folded {
            Ok(v) if !v.is_null() => Precision::Inexact(v),
            _ => Precision::Absent,
        }
    };
    let min = bound(
        MinAccumulator::try_new(data_type).map(|a| Box::new(a) as Box<dyn Accumulator>),
        mins,
    );
    let max = bound(
        MaxAccumulator::try_new(data_type).map(|a| Box::new(a) as Box<dyn Accumulator>),
        maxs,
    );
    ColumnStatistics {
        null_count: Precision::Exact(nulls as usize),
        min_value: min,
        max_value: max,
        ..ColumnStatistics::new_unknown()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn shards_get_batches_round_robin_with_their_stats() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch = |lo: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from_iter_values(lo..lo + 10))],
            )
            .unwrap()
        };
        let seg = Segment::new("f".into(), (0..5).map(|i| batch(i * 10)).collect(), vec![]);
        assert_eq!(seg.rows, 50);
        let v = TableVersion::build(
            1,
            schema.clone(),
            vec![Arc::new(seg)],
            Manifest::default(),
            2,
        );
        assert_eq!(v.shards[0].batches.len(), 3);
        assert_eq!(v.shards[1].batches.len(), 2);
        let mins = v.shards[1].mins[0]
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let maxs = v.shards[1].maxs[0]
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(mins.values(), &[10, 30]);
        assert_eq!(maxs.values(), &[19, 39]);
        assert_eq!(v.rows, 50);
    }
}
