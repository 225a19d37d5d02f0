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
#[derive(Debug, Clone)]
pub struct Shard {
    pub batches: Vec<RecordBatch>,
    pub mins: Vec<ArrayRef>,
    pub maxs: Vec<ArrayRef>,
    pub nulls: Vec<ArrayRef>,
    pub rows: ArrayRef,
    /// Per column, its min, max and null count over the whole shard (for the planner).
    pub columns: Vec<datafusion::common::ColumnStatistics>,
}

/// The batches of `segments` dealt round robin over `nshards` shards, the first to shard
/// `start % nshards` (as if `start` batches had been dealt before), each with its statistics.
fn deal(
    segments: &[Arc<Segment>],
    nshards: usize,
    start: usize,
) -> Vec<Vec<(RecordBatch, &BatchStats)>> {
    let mut parts: Vec<Vec<(RecordBatch, &BatchStats)>> =
        (0..nshards).map(|_| Vec::new()).collect();
    let mut i = start;
    for seg in segments {
        for (b, s) in seg.batches.iter().zip(&seg.stats) {
            parts[i % nshards].push((b.clone(), s));
            i += 1;
        }
    }
    parts
}

impl Shard {
    /// The shard of `part`'s batches, with their statistics as arrays.
    fn of(schema: &SchemaRef, part: Vec<(RecordBatch, &BatchStats)>) -> Shard {
        let ncols = schema.fields().len();
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
        shard.columns = shard.statistics(schema);
        shard
    }

    /// This shard with `more`'s batches after its own. Statistics arrays that cannot be joined
    /// (their types differ) come out as NULLs, which prune nothing. A column's figures over the
    /// whole are the two shards' merged (the smallest min, the largest max, the nulls added),
    /// not gathered again over every batch; gathered only where a shard has no bound (all its
    /// values null) or the arrays could not be joined.
    fn extended(&self, schema: &SchemaRef, more: Shard) -> Shard {
        let n = self.batches.len() + more.batches.len();
        let mut gather = vec![false; schema.fields().len()];
        let mut join = |a: &ArrayRef, b: &ArrayRef, c: Option<usize>| -> ArrayRef {
            arrow::compute::concat(&[a.as_ref(), b.as_ref()]).unwrap_or_else(|_| {
                if let Some(c) = c {
                    gather[c] = true;
                }
                let t = c.map_or(DataType::UInt64, |c| schema.field(c).data_type().clone());
                arrow::array::new_null_array(&t, n)
            })
        };
        let mins = (0..self.mins.len())
            .map(|c| join(&self.mins[c], &more.mins[c], Some(c)))
            .collect();
        let maxs = (0..self.maxs.len())
            .map(|c| join(&self.maxs[c], &more.maxs[c], Some(c)))
            .collect();
        let nulls = (0..self.nulls.len())
            .map(|c| join(&self.nulls[c], &more.nulls[c], None))
            .collect();
        let rows = join(&self.rows, &more.rows, None);
        let mut batches = self.batches.clone();
        batches.extend(more.batches);
        let mut shard = Shard {
            batches,
            mins,
            maxs,
            nulls,
            rows,
            columns: Vec::new(),
        };
        let bounded = |s: &ColumnStatistics| {
            !matches!(s.min_value, Precision::Absent) && !matches!(s.max_value, Precision::Absent)
        };
        shard.columns = (0..schema.fields().len())
            .map(|c| {
                let (a, b) = (&self.columns[c], &more.columns[c]);
                if gather[c] || !bounded(a) || !bounded(b) {
                    column_statistics(&shard, c, schema.field(c).data_type(), None)
                } else {
                    merge_column(a.clone(), b)
                }
            })
            .collect();
        shard
    }

    /// Per column, its min, max and null count over the whole shard.
    fn statistics(&self, schema: &SchemaRef) -> Vec<ColumnStatistics> {
        (0..schema.fields().len())
            .map(|c| column_statistics(self, c, schema.field(c).data_type(), None))
            .collect()
    }
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

/// A column's bounds over one worker's part, as the worker reports them: the coordinator's
/// planner sees a cluster table's ranges through them (date filters' selectivity, how many keys
/// a join can match), as it sees a table held here through its shards' statistics.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColumnBounds {
    /// The smallest and largest value, as DataFusion's protobuf encodes a scalar (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nulls: Option<u64>,
}

/// Two sets of one column's figures as one: the smaller min, the larger max, the nulls added.
pub fn merge_column(a: ColumnStatistics, b: &ColumnStatistics) -> ColumnStatistics {
    ColumnStatistics {
        null_count: a.null_count.add(&b.null_count),
        min_value: a.min_value.min(&b.min_value),
        max_value: a.max_value.max(&b.max_value),
        ..ColumnStatistics::new_unknown()
    }
}

fn scalar_hex(p: &Precision<ScalarValue>) -> Option<String> {
    use prost::Message;
    let v = p.get_value().filter(|v| !v.is_null())?;
    let proto = datafusion_proto::protobuf::ScalarValue::try_from(v).ok()?;
    Some(hex::encode(proto.encode_to_vec()))
}

fn hex_scalar(h: &str) -> Option<ScalarValue> {
    use prost::Message;
    let bytes = hex::decode(h).ok()?;
    let proto = datafusion_proto::protobuf::ScalarValue::decode(bytes.as_slice()).ok()?;
    ScalarValue::try_from(&proto).ok()
}

/// The planner's figures for a table spread over parts, from each part's [`ColumnBounds`]
/// (`parts` holding rows only): per column, the smallest min, the largest max and the nulls,
/// all inexact (a scan's filters prune); a column some part gives no figure for stays unknown.
pub fn merge_bounds(parts: &[&[ColumnBounds]], columns: usize) -> Vec<ColumnStatistics> {
    let inexact = |v: Option<ScalarValue>| v.map_or(Precision::Absent, Precision::Inexact);
    (0..columns)
        .map(|c| {
            let mut merged: Option<ColumnStatistics> = None;
            for part in parts {
                let Some(b) = part.get(c) else {
                    return ColumnStatistics::new_unknown();
                };
                let stats = ColumnStatistics {
                    min_value: inexact(b.min.as_deref().and_then(hex_scalar)),
                    max_value: inexact(b.max.as_deref().and_then(hex_scalar)),
                    null_count: b
                        .nulls
                        .map_or(Precision::Absent, |n| Precision::Inexact(n as usize)),
                    ..ColumnStatistics::new_unknown()
                };
                merged = Some(match merged {
                    None => stats,
                    Some(m) => merge_column(m, &stats),
                });
            }
            merged.unwrap_or_else(ColumnStatistics::new_unknown)
        })
        .collect()
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
    /// On a cluster's coordinator: per column, the figures the planner uses, merged from the
    /// parts' [`ColumnBounds`] (empty when the workers gave none).
    pub remote_statistics: Vec<ColumnStatistics>,
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
        let shards: Vec<Shard> = deal(&segments, nshards, 0)
            .into_iter()
            .map(|part| Shard::of(&schema, part))
            .collect();
        Self::with_shards(version, schema, segments, shards, manifest)
    }

    /// [`Self::build`] for the version after `previous` (a refresh): when it only adds segments
    /// to `previous`'s (every one of them kept, the same columns, as many shards), `previous`'s
    /// shards are kept and only the added segments' batches are dealt out, on from where
    /// `previous` left off, so a refresh that adds one file beside thousands does not gather
    /// every batch's statistics again. Otherwise, a build from scratch.
    pub fn build_on(
        previous: Option<&TableVersion>,
        version: u64,
        schema: SchemaRef,
        segments: Vec<Arc<Segment>>,
        manifest: Manifest,
        nshards: usize,
    ) -> Self {
        let nshards = nshards.max(1);
        let Some(prev) = previous.filter(|p| {
            p.remote.is_none()
                && p.shards.len() == nshards
                && p.schema.fields() == schema.fields()
                && p.segments.len() <= segments.len()
        }) else {
            return Self::build(version, schema, segments, manifest, nshards);
        };
        // Each of previous's segments, in order, among the new ones; the rest are added.
        let mut kept = prev.segments.iter().peekable();
        let mut added = Vec::new();
        for seg in &segments {
            match kept.peek() {
                Some(k) if Arc::ptr_eq(k, seg) => {
                    kept.next();
                }
                _ => added.push(seg.clone()),
            }
        }
        if kept.peek().is_some() {
            return Self::build(version, schema, segments, manifest, nshards);
        }
        let dealt: usize = prev.shards.iter().map(|s| s.batches.len()).sum();
        let shards: Vec<Shard> = prev
            .shards
            .iter()
            .zip(deal(&added, nshards, dealt))
            .map(|(old, part)| {
                if part.is_empty() {
                    old.clone()
                } else {
                    old.extended(&schema, Shard::of(&schema, part))
                }
            })
            .collect();
        Self::with_shards(version, schema, segments, shards, manifest)
    }

    fn with_shards(
        version: u64,
        schema: SchemaRef,
        segments: Vec<Arc<Segment>>,
        shards: Vec<Shard>,
        manifest: Manifest,
    ) -> Self {
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
            remote_statistics: Vec::new(),
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
        statistics: Vec<ColumnStatistics>,
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
            remote_statistics: statistics,
        }
    }

    /// Per column, its bounds over every shard: what a worker reports of its part.
    pub fn column_bounds(&self) -> Vec<ColumnBounds> {
        (0..self.schema.fields().len())
            .map(|c| {
                let mut merged: Option<ColumnStatistics> = None;
                for shard in self.shards.iter().filter(|s| !s.batches.is_empty()) {
                    let Some(stats) = shard.columns.get(c) else {
                        return ColumnBounds::default();
                    };
                    merged = Some(match merged {
                        None => stats.clone(),
                        Some(m) => merge_column(m, stats),
                    });
                }
                let Some(m) = merged else {
                    return ColumnBounds::default();
                };
                ColumnBounds {
                    min: scalar_hex(&m.min_value),
                    max: scalar_hex(&m.max_value),
                    nulls: m.null_count.get_value().map(|&n| n as u64),
                }
            })
            .collect()
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
    fn a_parts_bounds_travel_as_text_and_merge_into_the_planners_figures() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("d", DataType::Date32, false),
        ]));
        let part = |lo: i64, null: bool| {
            let a: Int64Array = (lo..lo + 10)
                .map(|v| (!null || v != lo).then_some(v))
                .collect();
            let d = arrow::array::Date32Array::from_iter_values((lo..lo + 10).map(|v| v as i32));
            let batch =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(a), Arc::new(d)]).unwrap();
            let seg = Segment::new(
                "f".into(),
                vec![batch.slice(0, 4), batch.slice(4, 6)],
                vec![],
            );
            let v = TableVersion::build(
                1,
                schema.clone(),
                vec![Arc::new(seg)],
                Manifest::default(),
                3,
            );
            let bounds = v.column_bounds();
            // As a worker sends them and the coordinator reads them.
            let json = serde_json::to_string(&bounds).unwrap();
            serde_json::from_str::<Vec<ColumnBounds>>(&json).unwrap()
        };
        let (one, two) = (part(100, true), part(5, false));
        assert_eq!(one.len(), 2);
        assert_eq!(one[0].nulls, Some(1));
        let merged = merge_bounds(&[&one, &two], 2);
        let a = &merged[0];
        assert_eq!(a.min_value, Precision::Inexact(ScalarValue::Int64(Some(5))));
        assert_eq!(
            a.max_value,
            Precision::Inexact(ScalarValue::Int64(Some(109)))
        );
        assert_eq!(a.null_count, Precision::Inexact(1));
        let d = &merged[1];
        assert_eq!(
            d.min_value,
            Precision::Inexact(ScalarValue::Date32(Some(5)))
        );
        assert_eq!(
            d.max_value,
            Precision::Inexact(ScalarValue::Date32(Some(109)))
        );
        // A part that gave no figure for a column leaves it unknown.
        let none = vec![ColumnBounds::default(); 2];
        let merged = merge_bounds(&[&one, &none], 2);
        assert_eq!(merged[0].min_value, Precision::Absent);
        assert_eq!(merged[0].max_value, Precision::Absent);
        let short: Vec<ColumnBounds> = Vec::new();
        assert_eq!(
            merge_bounds(&[&one, &short], 2)[1],
            ColumnStatistics::new_unknown()
        );
    }

    /// A refresh that only adds files keeps the previous version's shards and deals out only
    /// the new batches; one that drops a file builds from scratch. Either way the shards hold
    /// every row once, with statistics that match them.
    /// A shard whose column held only NULLs has no bound to merge: the column's figures are
    /// gathered again once the added batches bring values (and stay those of every batch).
    #[test]
    fn a_column_of_nulls_gets_the_bounds_of_the_values_added_to_it() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let seg = |name: &str, values: Vec<Option<i64>>| {
            let a: Int64Array = values.into_iter().collect();
            let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(a)]).unwrap();
            Arc::new(Segment::new(name.into(), vec![b], vec![]))
        };
        let a = seg("a", vec![None, None]);
        let prev = TableVersion::build(1, schema.clone(), vec![a.clone()], Manifest::default(), 1);
        assert_eq!(prev.shards[0].columns[0].min_value, Precision::Absent);
        let b = seg("b", vec![Some(7), None, Some(3)]);
        let next = TableVersion::build_on(
            Some(&prev),
            2,
            schema.clone(),
            vec![a, b],
            Manifest::default(),
            1,
        );
        let shard = &next.shards[0];
        assert_eq!(shard.batches.len(), 2);
        assert_eq!(shard.columns, shard.statistics(&schema));
        assert_eq!(
            shard.columns[0].min_value,
            Precision::Inexact(ScalarValue::Int64(Some(3)))
        );
        assert_eq!(shard.columns[0].null_count, Precision::Exact(3));
    }

    #[test]
    fn a_version_that_only_adds_segments_is_built_on_the_previous_shards() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let seg = |name: &str, lo: i64, batches: i64| {
            let b = |i: i64| {
                let a: Int64Array = (lo + i * 10..lo + i * 10 + 10)
                    .map(|v| (v % 7 != 0).then_some(v))
                    .collect();
                RecordBatch::try_new(schema.clone(), vec![Arc::new(a)]).unwrap()
            };
            Arc::new(Segment::new(
                name.into(),
                (0..batches).map(b).collect(),
                vec![],
            ))
        };
        let (a, c) = (seg("a", 0, 3), seg("c", 1000, 2));
        let prev = TableVersion::build(
            1,
            schema.clone(),
            vec![a.clone(), c.clone()],
            Manifest::default(),
            2,
        );
        // b sorts between a and c; its batches go on after the 5 dealt before.
        let b = seg("b", 500, 2);
        let segments = vec![a.clone(), b.clone(), c.clone()];
        let next = TableVersion::build_on(
            Some(&prev),
            2,
            schema.clone(),
            segments.clone(),
            Manifest::default(),
            2,
        );
        let fresh = TableVersion::build(2, schema.clone(), segments, Manifest::default(), 2);
        let values = |v: &TableVersion| {
            let mut all: Vec<Option<i64>> = v
                .shards
                .iter()
                .flat_map(|s| s.batches.iter())
                .flat_map(|b| {
                    b.column(0)
                        .as_primitive::<arrow::datatypes::Int64Type>()
                        .iter()
                        .collect::<Vec<_>>()
                })
                .collect();
            all.sort();
            all
        };
        assert_eq!(values(&next), values(&fresh));
        assert_eq!((next.rows, next.segments.len()), (70, 3));
        // The previous shards' batches stay first, unchanged; b's two batches go to shard 1
        // (batch 5) and shard 0 (batch 6).
        assert_eq!(next.shards[0].batches.len(), 4);
        assert_eq!(next.shards[1].batches.len(), 3);
        for (old, new) in prev.shards.iter().zip(&next.shards) {
            for (x, y) in old.batches.iter().zip(&new.batches) {
                assert!(Arc::ptr_eq(x.column(0), y.column(0)));
            }
        }
        let first = |s: &Shard, i: usize| ScalarValue::try_from_array(&s.mins[0], i).unwrap();
        assert_eq!(first(&next.shards[1], 2), ScalarValue::Int64(Some(500)));
        assert_eq!(first(&next.shards[0], 3), ScalarValue::Int64(Some(510)));
        for shard in &next.shards {
            assert_eq!(shard.mins[0].len(), shard.batches.len());
            assert_eq!(shard.rows.len(), shard.batches.len());
            let nulls: usize = shard.batches.iter().map(|b| b.column(0).null_count()).sum();
            assert_eq!(shard.columns[0].null_count, Precision::Exact(nulls));
            // Merged figures are the ones gathered again over every batch.
            assert_eq!(shard.columns, shard.statistics(&schema));
        }
        let bounds = |v: &TableVersion| {
            v.column_bounds()
                .iter()
                .map(|b| format!("{:?} {:?} {:?}", b.min, b.max, b.nulls))
                .collect::<Vec<_>>()
        };
        assert_eq!(bounds(&next), bounds(&fresh));

        // Dropping c: built from scratch, as `build` lays it out.
        let dropped = TableVersion::build_on(
            Some(&next),
            3,
            schema.clone(),
            vec![a.clone(), b.clone()],
            Manifest::default(),
            2,
        );
        let plain = TableVersion::build(3, schema.clone(), vec![a, b], Manifest::default(), 2);
        let layout =
            |v: &TableVersion| v.shards.iter().map(|s| s.batches.len()).collect::<Vec<_>>();
        assert_eq!(layout(&dropped), layout(&plain));
        assert_eq!(values(&dropped), values(&plain));
    }

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
