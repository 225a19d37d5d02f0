//! `LIKE` patterns made of several parts between `%` wildcards (`'%special%requests%'`).
//!
//! Arrow matches a pattern with one `%`-delimited part by substring search, but turns one with
//! several into a regular expression, which costs about 50 ns a row on TPC-H's comments.
//! [`SubstringsLike`] matches such a pattern directly: the first part as a prefix, the last as a
//! suffix, and the parts between by substring search, each after the one before. For a
//! pattern without `_` or escapes that is exactly what `LIKE` means, so only those are taken.

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::buffer::BooleanBuffer;
use arrow::datatypes::{DataType, Schema};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{LikeExpr, Literal};
use memchr::memmem::Finder;

/// `expr [NOT] LIKE 'prefix%part%...%suffix'`, matched without a regular expression.
#[derive(Debug, Clone)]
pub struct SubstringsLike {
    expr: Arc<dyn PhysicalExpr>,
    negated: bool,
    pattern: String,
    prefix: Vec<u8>,
    /// The parts between the first and the last, each as a searcher set up once.
    middle: Vec<Finder<'static>>,
    suffix: Vec<u8>,
    /// The shortest string that can match.
    min_len: usize,
}

impl SubstringsLike {
    /// The direct form of `expr` when it is a case-sensitive `LIKE` of a string column against a
    /// constant pattern of at least two `%`-separated parts, with no `_` and no escapes.
    pub fn of(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<Arc<dyn PhysicalExpr>> {
        let like = (expr.as_ref() as &dyn Any).downcast_ref::<LikeExpr>()?;
        if like.case_insensitive() {
            return None;
        }
        let input = like.expr().data_type(schema).ok()?;
        if !matches!(
            input,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            return None;
        }
        let literal = (like.pattern().as_ref() as &dyn Any).downcast_ref::<Literal>()?;
        let pattern = match literal.value() {
            ScalarValue::Utf8(Some(p))
            | ScalarValue::LargeUtf8(Some(p))
            | ScalarValue::Utf8View(Some(p)) => p.clone(),
            _ => return None,
        };
        Some(Arc::new(Self::new(
            like.expr().clone(),
            like.negated(),
            pattern,
        )?))
    }

    fn new(expr: Arc<dyn PhysicalExpr>, negated: bool, pattern: String) -> Option<Self> {
        if pattern.contains(['_', '\\']) {
            return None;
        }
        let parts: Vec<&str> = pattern.split('%').collect();
        // One part or fewer: Arrow's own equality, prefix, suffix or substring test is as fast.
        if parts.iter().filter(|p| !p.is_empty()).count() < 2 {
            return None;
        }
        let (first, rest) = parts.split_first()?;
        let (last, between) = rest.split_last()?;
        let middle: Vec<Finder<'static>> = between
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| Finder::new(p.as_bytes()).into_owned())
            .collect();
        let min_len =
            first.len() + last.len() + middle.iter().map(|f| f.needle().len()).sum::<usize>();
        Some(Self {
            expr,
            negated,
            prefix: first.as_bytes().to_vec(),
            suffix: last.as_bytes().to_vec(),
            middle,
            min_len,
            pattern,
        })
    }

    fn matches(&self, s: &str) -> bool {
        let s = s.as_bytes();
        if s.len() < self.min_len
            || (!self.prefix.is_empty() && !s.starts_with(&self.prefix))
            || (!self.suffix.is_empty() && !s.ends_with(&self.suffix))
        {
            return false;
        }
        let mut rest = &s[self.prefix.len()..s.len() - self.suffix.len()];
        for part in &self.middle {
            match part.find(rest) {
                Some(i) => rest = &rest[i + part.needle().len()..],
                None => return false,
            }
        }
        true
    }

    /// The rows holding every middle part somewhere, found by one search per part over the
    /// column's bytes instead of one per row: over a whole buffer the search runs at memory
    /// speed, where searches of a few tens of bytes each are dominated by their start. Only these
    /// rows can match. `None` when the pattern has no middle part.
    fn candidates<O: arrow::array::OffsetSizeTrait>(
        &self,
        data: &[u8],
        offsets: &[O],
    ) -> Option<Vec<bool>> {
        let (first, rest) = self.middle.split_first()?;
        let mut found = Self::holding(first, data, offsets);
        for part in rest {
            for (f, h) in found.iter_mut().zip(Self::holding(part, data, offsets)) {
                *f &= h;
            }
        }
        Some(found)
    }

    /// Per row, whether it holds `finder`'s needle.
    fn holding<O: arrow::array::OffsetSizeTrait>(
        finder: &Finder<'_>,
        data: &[u8],
        offsets: &[O],
    ) -> Vec<bool> {
        let rows = offsets.len().saturating_sub(1);
        let mut found = vec![false; rows];
        let end = offsets.last().map_or(0, |o| o.as_usize());
        let mut pos = offsets.first().map_or(0, |o| o.as_usize());
        let mut row = 0;
        while pos < end {
            let Some(at) = finder.find(&data[pos..end]).map(|i| pos + i) else {
                break;
            };
            while offsets[row + 1].as_usize() <= at {
                row += 1;
            }
            let row_end = offsets[row + 1].as_usize();
            // A match running into the next row is no match; either way this row is settled
            // (the search gave its leftmost match) and the search goes on at the next row.
            found[row] = at + finder.needle().len() <= row_end;
            pos = row_end;
            row += 1;
        }
        found
    }

    /// Over strings in one buffer with offsets: only the rows [`Self::candidates`] finds are
    /// checked.
    fn evaluate_offsets<O: arrow::array::OffsetSizeTrait>(
        &self,
        a: &arrow::array::GenericStringArray<O>,
    ) -> BooleanBuffer {
        let len = a.len();
        match self.candidates(a.value_data(), a.value_offsets()) {
            Some(c) => BooleanBuffer::collect_bool(len, |i| {
                (c[i] && self.matches(a.value(i))) != self.negated
            }),
            None => BooleanBuffer::collect_bool(len, |i| self.matches(a.value(i)) != self.negated),
        }
    }

    fn evaluate_array(&self, array: &ArrayRef) -> Result<ArrayRef> {
        let values = match array.data_type() {
            DataType::Utf8 => self.evaluate_offsets(array.as_string::<i32>()),
            DataType::LargeUtf8 => self.evaluate_offsets(array.as_string::<i64>()),
            DataType::Utf8View => {
                let a = array.as_string_view();
                BooleanBuffer::collect_bool(a.len(), |i| self.matches(a.value(i)) != self.negated)
            }
            other => {
                return Err(datafusion::error::DataFusionError::Internal(format!(
                    "LIKE over {other}"
                )));
            }
        };
        Ok(Arc::new(BooleanArray::new(values, array.nulls().cloned())))
    }
}

// By hand, as DataFusion's own expressions do (https://github.com/rust-lang/rust/issues/78808).
impl PartialEq for SubstringsLike {
    fn eq(&self, other: &Self) -> bool {
        self.expr.eq(&other.expr) && self.negated == other.negated && self.pattern == other.pattern
    }
}

impl Eq for SubstringsLike {}

impl Hash for SubstringsLike {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.expr.hash(state);
        self.negated.hash(state);
        self.pattern.hash(state);
    }
}

impl fmt::Display for SubstringsLike {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.negated { "NOT LIKE" } else { "LIKE" };
        write!(f, "{} {op} {}", self.expr, self.pattern)
    }
}

impl PhysicalExpr for SubstringsLike {
    fn data_type(&self, _input_schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.expr.nullable(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        Ok(match self.expr.evaluate(batch)? {
            ColumnarValue::Array(a) => ColumnarValue::Array(self.evaluate_array(&a)?),
            ColumnarValue::Scalar(s) => {
                let out = self.evaluate_array(&s.to_array_of_size(1)?)?;
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            }
        })
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.expr]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let mut out = self.as_ref().clone();
        out.expr = children[0].clone();
        Ok(Arc::new(out))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt_sql(f)?;
        let op = if self.negated { "NOT LIKE" } else { "LIKE" };
        write!(f, " {op} '{}'", self.pattern.replace('\'', "''"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, LargeStringArray, RecordBatch, StringArray, StringViewArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::ScalarValue;
    use datafusion::physical_expr::PhysicalExpr;
    use datafusion::physical_expr::expressions::{Column, Literal, like};

    use super::SubstringsLike;

    const STRINGS: &[Option<&str>] = &[
        Some("special requests"),
        Some("the special, quiet requests sleep"),
        Some("requests special"),
        Some("specialrequests"),
        Some("special"),
        Some(""),
        None,
        Some("aba"),
        Some("ab"),
        Some("abba"),
        Some("ab€ba"),
        Some("xspecial requestsx"),
        Some("special requests requests"),
        Some("ab%ba"),
        // A part running across two rows' bytes matches in neither.
        Some("the spe"),
        Some("cial requests"),
        Some("requests, then special requests"),
    ];

    const PATTERNS: &[&str] = &[
        "%special%requests%",
        "special%requests",
        "%special%requests",
        "special%requests%",
        "ab%ba",
        "a%b%a",
        "%b%b%",
        "ab%%ba",
        "%€%b%",
        // Not taken (one part, or `_`): Arrow's own kernel stays.
        "%special%",
        "a_a",
    ];

    #[test]
    fn matches_as_arrow_does_for_every_pattern_string_type_and_negation() {
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(STRINGS.to_vec())),
            Arc::new(LargeStringArray::from(STRINGS.to_vec())),
            Arc::new(StringViewArray::from(STRINGS.to_vec())),
        ];
        let mut taken = 0;
        for array in arrays {
            let schema = Arc::new(Schema::new(vec![Field::new(
                "s",
                array.data_type().clone(),
                true,
            )]));
            // Sliced, so the rows start inside the column's buffers.
            let array = array.slice(1, array.len() - 1);
            let batch = RecordBatch::try_new(schema.clone(), vec![array]).unwrap();
            for pattern in PATTERNS {
                for negated in [false, true] {
                    let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new("s", 0));
                    let p = Some(pattern.to_string());
                    let value = match schema.field(0).data_type() {
                        DataType::LargeUtf8 => ScalarValue::LargeUtf8(p),
                        DataType::Utf8View => ScalarValue::Utf8View(p),
                        _ => ScalarValue::Utf8(p),
                    };
                    let literal: Arc<dyn PhysicalExpr> = Arc::new(Literal::new(value));
                    let expr = like(negated, false, column, literal, &schema).unwrap();
                    let expected = expr
                        .evaluate(&batch)
                        .unwrap()
                        .into_array(batch.num_rows())
                        .unwrap();
                    match SubstringsLike::of(&expr, &schema) {
                        Some(fast) => {
                            taken += 1;
                            let got = fast
                                .evaluate(&batch)
                                .unwrap()
                                .into_array(batch.num_rows())
                                .unwrap();
                            assert_eq!(expected.as_ref(), got.as_ref(), "{pattern} {negated}");
                        }
                        None => assert!(
                            ["%special%", "a_a"].contains(pattern),
                            "{pattern} not taken"
                        ),
                    }
                }
            }
        }
        assert_eq!(taken, 3 * 2 * (PATTERNS.len() - 2));
    }
}
