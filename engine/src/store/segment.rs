//! Segments: the batches read from one source file, with per-batch statistics. A segment is
//! shared (never copied) by every version that keeps its file.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayData, AsArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::Accumulator;
use tarn_connectors::RejectedRow;

/// Min, max and null count of each column of one batch.
#[derive(Debug, Clone)]
pub struct BatchStats {
    pub min: Vec<ScalarValue>,
    pub max: Vec<ScalarValue>,
    pub nulls: Vec<u64>,
    pub rows: u64,
}

impl BatchStats {
    pub fn compute(batch: &RecordBatch) -> Self {
        let mut min = Vec::with_capacity(batch.num_columns());
        let mut max = Vec::with_capacity(batch.num_columns());
        let mut nulls = Vec::with_capacity(batch.num_columns());
        for col in batch.columns() {
            let t = col.data_type();
            let null = || ScalarValue::try_from(t).unwrap_or(ScalarValue::Null);
            let mn = MinAccumulator::try_new(t)
                .and_then(|mut a| {
                    a.update_batch(std::slice::from_ref(col))
                        .and_then(|_| a.evaluate())
                })
                .unwrap_or_else(|_| null());
            let mx = MaxAccumulator::try_new(t)
                .and_then(|mut a| {
                    a.update_batch(std::slice::from_ref(col))
                        .and_then(|_| a.evaluate())
                })
                .unwrap_or_else(|_| null());
            min.push(mn);
            max.push(mx);
            nulls.push(col.null_count() as u64);
        }
        Self {
            min,
            max,
            nulls,
            rows: batch.num_rows() as u64,
        }
    }
}

/// The batches read from one source file, with their statistics. Shared (never copied) between
/// versions that keep the file.
#[derive(Debug)]
pub struct Segment {
    /// Unique in the process: what a segment is known by (snapshots keep its file by it), never
    /// reused, unlike its address.
    pub id: u64,
    pub file: String,
    /// Rows of this file left out of a non-strict load.
    pub rejected: Vec<RejectedRow>,
    pub batches: Vec<RecordBatch>,
    pub stats: Vec<BatchStats>,
    pub bytes: u64,
    pub rows: u64,
    /// Whether the rows are in the order of the table's placement key (ordered after a load by
    /// the service); false as read from a file or a snapshot.
    pub placed: bool,
}

impl Segment {
    pub fn new(file: String, batches: Vec<RecordBatch>, rejected: Vec<RejectedRow>) -> Self {
        // Readers build with headroom; loaded data keeps only what it uses.
        let batches: Vec<RecordBatch> = batches.into_iter().map(shrink).collect();
        let stats = batches.iter().map(BatchStats::compute).collect();
        let bytes = memory_size(&batches);
        Self::from_parts(file, batches, stats, rejected, bytes)
    }

    fn from_parts(
        file: String,
        batches: Vec<RecordBatch>,
        stats: Vec<BatchStats>,
        rejected: Vec<RejectedRow>,
        bytes: u64,
    ) -> Self {
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            file,
            rejected,
            batches,
            stats,
            bytes,
            rows,
            placed: false,
        }
    }

    /// The same rows as `self`, reordered by the placement key into `batches`.
    pub fn placed(&self, batches: Vec<RecordBatch>) -> Self {
        Self {
            placed: true,
            ..Self::new(self.file.clone(), batches, self.rejected.clone())
        }
    }

    /// Batches read back from a snapshot: already compact, so kept as they are, pointing into
    /// the snapshot file's `bytes` (one allocation, which is what they hold) without a copy.
    /// Statistics come with them when the snapshot kept them (else they are computed again).
    pub fn recovered(
        file: String,
        batches: Vec<RecordBatch>,
        stats: Option<Vec<BatchStats>>,
        rejected: Vec<RejectedRow>,
        bytes: u64,
    ) -> Self {
        let stats = stats.unwrap_or_else(|| batches.iter().map(BatchStats::compute).collect());
        Self::from_parts(file, batches, stats, rejected, bytes)
    }

    /// The same data under `schema`, which adds columns at the end: they hold NULLs.
    pub fn widen(&self, schema: &SchemaRef) -> Self {
        let batches = self
            .batches
            .iter()
            .map(|b| {
                let mut cols = b.columns().to_vec();
                for f in schema.fields().iter().skip(cols.len()) {
                    cols.push(arrow::array::new_null_array(f.data_type(), b.num_rows()));
                }
                RecordBatch::try_new(schema.clone(), cols).expect("added columns are nullable")
            })
            .collect();
        Self::new(self.file.clone(), batches, self.rejected.clone())
    }
}

/// Bytes the batches hold, counting each allocation once: batches may share buffers (Parquet's
/// string views point into page buffers shared by many batches), which
/// `RecordBatch::get_array_memory_size` would count again for every batch.
pub fn memory_size(batches: &[RecordBatch]) -> u64 {
    fn walk(d: &ArrayData, seen: &mut HashSet<usize>, total: &mut u64) {
        let nulls = d.nulls().map(|n| n.buffer());
        for b in d.buffers().iter().chain(nulls) {
            if seen.insert(b.data_ptr().as_ptr() as usize) {
                *total += b.capacity() as u64;
            }
        }
        for c in d.child_data() {
            walk(c, seen, total);
        }
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for b in batches {
        for c in b.columns() {
            walk(&c.to_data(), &mut seen, &mut total);
        }
    }
    total
}

fn shrink(batch: RecordBatch) -> RecordBatch {
    let (schema, mut columns, rows) = batch.into_parts();
    for c in &mut columns {
        // String views from Parquet point into whole decoded pages; keep only the bytes they use.
        match c.data_type() {
            DataType::Utf8View => *c = Arc::new(c.as_string_view().gc()),
            DataType::BinaryView => *c = Arc::new(c.as_binary_view().gc()),
            _ => arrow::array::Array::shrink_to_fit(c),
        }
    }
    RecordBatch::try_new_with_options(
        schema,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .expect("same columns, same schema")
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn shared_buffers_count_once() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let ints = Int64Array::from_iter_values(0..1000);
        let strs =
            StringArray::from_iter((0..1000).map(|i| (i % 3 != 0).then(|| format!("value {i}"))));
        let whole = RecordBatch::try_new(schema, vec![Arc::new(ints), Arc::new(strs)]).unwrap();
        let one = memory_size(std::slice::from_ref(&whole));
        assert!((8000 + 4004 + 5000..25_000).contains(&one), "{one}");
        // Ten slices of one batch share its buffers: same memory, not ten times it.
        let slices: Vec<RecordBatch> = (0..10).map(|i| whole.slice(i * 100, 100)).collect();
        assert_eq!(memory_size(&slices), one);
        assert!(
            slices
                .iter()
                .map(|b| b.get_array_memory_size() as u64)
                .sum::<u64>()
                > 5 * one
        );
    }
}
