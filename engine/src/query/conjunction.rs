//! A filter's conjunction of cheap comparisons, evaluated on whole batches.
//!
//! DataFusion evaluates `a AND b` by evaluating `a`, and when it keeps at most a fifth of the
//! rows, by filtering the whole batch to those rows, evaluating `b` on them and scattering the
//! answer back. For an expensive `b` that pays; for a comparison of a column with a constant it
//! does not: the filtering and scattering cost several times the comparison. A table whose rows
//! are not in date order (declared without a placement key) evaluates `l_shipdate >= d1 AND
//! l_shipdate < d2 AND l_discount BETWEEN x AND y AND l_quantity < z` that way over every row.
//!
//! [`AllOf`] evaluates the cheap conjuncts of a filter (comparisons between columns and
//! constants of fixed-width types, `IS [NOT] NULL`) each over the whole batch and combines them
//! with SQL's three-valued `AND`, stopping early when no row can pass; the other conjuncts stay
//! behind it in an `AND`, where DataFusion's pre-selection serves them. It computes exactly what
//! the `AND` it replaces computes, nulls included.

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::and_kleene;
use arrow::datatypes::{DataType, Schema};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, Column, IsNotNullExpr, IsNullExpr, Literal,
};

/// The conjunction of `conjuncts`, each cheap to evaluate over a whole batch.
#[derive(Debug, Clone)]
pub struct AllOf {
    conjuncts: Vec<Arc<dyn PhysicalExpr>>,
}

impl AllOf {
    /// `predicate` with its cheap conjuncts (at least two) evaluated as one [`AllOf`], in front
    /// of the others; `None` when it has fewer than two.
    pub fn of(predicate: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<Arc<dyn PhysicalExpr>> {
        let mut conjuncts = Vec::new();
        split(predicate, &mut conjuncts);
        let (cheap, other): (Vec<_>, Vec<_>) =
            conjuncts.into_iter().partition(|c| is_cheap(c, schema));
        if cheap.len() < 2 {
            return None;
        }
        let all: Arc<dyn PhysicalExpr> = Arc::new(Self { conjuncts: cheap });
        Some(other.into_iter().fold(all, |left, right| {
            Arc::new(BinaryExpr::new(left, Operator::And, right))
        }))
    }
}

/// The conjuncts of a tree of `AND`s, left to right.
fn split(expr: &Arc<dyn PhysicalExpr>, out: &mut Vec<Arc<dyn PhysicalExpr>>) {
    match (expr.as_ref() as &dyn Any).downcast_ref::<BinaryExpr>() {
        Some(b) if *b.op() == Operator::And => {
            split(b.left(), out);
            split(b.right(), out);
        }
        _ => out.push(expr.clone()),
    }
}

/// A comparison between columns and constants of fixed-width types, or a column's `IS [NOT]
/// NULL`: a pass over one or two arrays, cheaper than filtering a batch.
fn is_cheap(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> bool {
    let any = expr.as_ref() as &dyn Any;
    if let Some(e) = any.downcast_ref::<IsNullExpr>() {
        return is_column(e.arg());
    }
    if let Some(e) = any.downcast_ref::<IsNotNullExpr>() {
        return is_column(e.arg());
    }
    let Some(b) = any.downcast_ref::<BinaryExpr>() else {
        return false;
    };
    use Operator::*;
    if !matches!(b.op(), Eq | NotEq | Lt | LtEq | Gt | GtEq) {
        return false;
    }
    let operand = |e: &Arc<dyn PhysicalExpr>| {
        (is_column(e) || (e.as_ref() as &dyn Any).is::<Literal>())
            && e.data_type(schema).is_ok_and(|t| fixed_width(&t))
    };
    (is_column(b.left()) || is_column(b.right())) && operand(b.left()) && operand(b.right())
}

fn is_column(e: &Arc<dyn PhysicalExpr>) -> bool {
    (e.as_ref() as &dyn Any).is::<Column>()
}

fn fixed_width(t: &DataType) -> bool {
    t.is_primitive() || matches!(t, DataType::Boolean)
}

impl PhysicalExpr for AllOf {
    fn data_type(&self, _input_schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        for c in &self.conjuncts {
            if c.nullable(input_schema)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let rows = batch.num_rows();
        let mut all: Option<BooleanArray> = None;
        for c in &self.conjuncts {
            let value = match c.evaluate(batch)? {
                ColumnarValue::Array(a) => a,
                ColumnarValue::Scalar(s) => s.to_array_of_size(rows)?,
            };
            let value = value.as_boolean().clone();
            let next = match all {
                None => value,
                Some(so_far) => and_kleene(&so_far, &value)?,
            };
            // Nothing can pass: `false AND x` is false whatever x is.
            if next.null_count() == 0 && next.true_count() == 0 {
                return Ok(ColumnarValue::Array(Arc::new(next) as ArrayRef));
            }
            all = Some(next);
        }
        match all {
            Some(a) => Ok(ColumnarValue::Array(Arc::new(a))),
            None => Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true)))),
        }
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        self.conjuncts.iter().collect()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(Arc::new(Self {
            conjuncts: children,
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.conjuncts.iter().enumerate() {
            if i > 0 {
                write!(f, " AND ")?;
            }
            c.fmt_sql(f)?;
        }
        Ok(())
    }
}

// By hand, as DataFusion's own expressions do (https://github.com/rust-lang/rust/issues/78808).
impl PartialEq for AllOf {
    fn eq(&self, other: &Self) -> bool {
        self.conjuncts.len() == other.conjuncts.len()
            && self
                .conjuncts
                .iter()
                .zip(&other.conjuncts)
                .all(|(a, b)| a.eq(b))
    }
}

impl Eq for AllOf {}

impl Hash for AllOf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for c in &self.conjuncts {
            c.hash(state);
        }
    }
}

impl fmt::Display for AllOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "all_of(")?;
        for (i, c) in self.conjuncts.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{c}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, AsArray, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
    };
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{ColumnarValue, Operator};
    use datafusion::physical_expr::PhysicalExpr;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal, like};

    use super::AllOf;

    /// Rows with nulls in every column, from a fixed seed.
    fn batch(rows: usize) -> RecordBatch {
        let mut x = 42u64;
        let mut next = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let mut date = Vec::new();
        let mut price = Vec::new();
        let mut qty = Vec::new();
        let mut mode = Vec::new();
        for i in 0..rows {
            date.push((i % 11 != 4).then_some(8000 + (next() % 2600) as i32));
            price.push((i % 13 != 5).then_some((next() % 11) as i128));
            qty.push((i % 17 != 6).then_some((next() % 50) as i64));
            mode.push((i % 5 != 2).then_some(["MAIL", "SHIP", "AIR"][(next() % 3) as usize]));
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("d", DataType::Date32, true),
            Field::new("p", DataType::Decimal128(15, 2), true),
            Field::new("q", DataType::Int64, true),
            Field::new("m", DataType::Utf8, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Date32Array::from(date)),
            Arc::new(
                Decimal128Array::from(price)
                    .with_precision_and_scale(15, 2)
                    .unwrap(),
            ),
            Arc::new(Int64Array::from(qty)),
            Arc::new(StringArray::from(mode)),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn col(name: &str, i: usize) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new(name, i))
    }

    fn lit(v: ScalarValue) -> Arc<dyn PhysicalExpr> {
        Arc::new(Literal::new(v))
    }

    fn op(
        l: Arc<dyn PhysicalExpr>,
        o: Operator,
        r: Arc<dyn PhysicalExpr>,
    ) -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(l, o, r))
    }

    /// `a AND b AND ...`, left-deep as the planner builds it.
    fn and(all: Vec<Arc<dyn PhysicalExpr>>) -> Arc<dyn PhysicalExpr> {
        all.into_iter()
            .reduce(|l, r| op(l, Operator::And, r))
            .unwrap()
    }

    fn values(e: &Arc<dyn PhysicalExpr>, b: &RecordBatch) -> Vec<Option<bool>> {
        match e.evaluate(b).unwrap() {
            ColumnarValue::Array(a) => a.as_boolean().iter().collect(),
            ColumnarValue::Scalar(s) => panic!("a scalar: {s}"),
        }
    }

    /// `m LIKE '%AI%'`: a conjunct that is not among the cheap ones.
    fn like_ai(s: &Schema) -> Arc<dyn PhysicalExpr> {
        like(false, false, col("m", 3), lit(ScalarValue::from("%AI%")), s).unwrap()
    }

    /// TPC-H Q6's filter over rows with nulls, and a `LIKE` behind it.
    fn q6_like(b: &RecordBatch) -> Arc<dyn PhysicalExpr> {
        let s = b.schema();
        let dec = |v: i128| lit(ScalarValue::Decimal128(Some(v), 15, 2));
        and(vec![
            op(
                col("d", 0),
                Operator::GtEq,
                lit(ScalarValue::Date32(Some(8766))),
            ),
            op(
                col("d", 0),
                Operator::Lt,
                lit(ScalarValue::Date32(Some(9131))),
            ),
            op(col("p", 1), Operator::GtEq, dec(5)),
            like_ai(&s),
            op(col("p", 1), Operator::LtEq, dec(7)),
            op(col("q", 2), Operator::Lt, lit(ScalarValue::Int64(Some(24)))),
        ])
    }

    #[test]
    fn answers_what_the_and_it_replaces_answers_nulls_included() {
        let b = batch(5000);
        let plain = q6_like(&b);
        let fast = AllOf::of(&plain, &b.schema()).expect("five cheap conjuncts");
        let (want, got) = (values(&plain, &b), values(&fast, &b));
        assert_eq!(got, want);
        assert!(want.contains(&Some(true)) && want.contains(&None) && want.contains(&Some(false)));
    }

    #[test]
    fn the_cheap_conjuncts_go_first_together_and_the_others_stay_behind_them() {
        let b = batch(10);
        let fast = AllOf::of(&q6_like(&b), &b.schema()).unwrap();
        let text = fast.to_string();
        assert!(text.starts_with("all_of(d@0 >= "), "{text}");
        assert_eq!(text.matches(", ").count(), 4, "five in all_of: {text}");
        assert!(text.ends_with("AND m@3 LIKE %AI%"), "{text}");
    }

    #[test]
    fn a_filter_with_fewer_than_two_cheap_conjuncts_is_left_as_it_is() {
        let b = batch(10);
        let s = b.schema();
        let one = and(vec![
            op(col("q", 2), Operator::Lt, lit(ScalarValue::Int64(Some(24)))),
            like_ai(&s),
        ]);
        assert!(AllOf::of(&one, &s).is_none());
        // A comparison of strings is not among the cheap ones.
        let strings = and(vec![
            op(col("m", 3), Operator::Eq, lit(ScalarValue::from("MAIL"))),
            op(col("q", 2), Operator::Lt, lit(ScalarValue::Int64(Some(24)))),
        ]);
        assert!(AllOf::of(&strings, &s).is_none());
    }

    #[test]
    fn stops_once_no_row_can_pass_and_says_false() {
        let b = batch(1000);
        let none = and(vec![
            op(col("q", 2), Operator::Lt, lit(ScalarValue::Int64(Some(-1)))),
            op(
                col("d", 0),
                Operator::GtEq,
                lit(ScalarValue::Date32(Some(0))),
            ),
        ]);
        let fast = AllOf::of(&none, &b.schema()).unwrap();
        let got = values(&fast, &b);
        assert_eq!(got, values(&none, &b));
        // Kleene: false AND NULL is false, so rows with a null date are false too.
        assert!(got.iter().all(|v| *v == Some(false) || v.is_none()));
        assert_eq!(got.len(), b.num_rows());
    }
}
