//! Decimal arithmetic without per-value overflow checks where none can overflow.
//!
//! Arrow adds, subtracts and multiplies `Decimal128` values one at a time with checked 128-bit
//! arithmetic, branching on an overflow error for every value. Money columns (`DECIMAL(15,2)`)
//! are small next to the 38 digits a `Decimal128` holds, so for almost every batch no result can
//! overflow. [`DecimalArithmetic`] proves that per batch, from the two operands' largest magnitudes
//! (or from their declared precisions alone), and then runs a plain loop the compiler can unroll.
//! A batch where an overflow is possible goes to Arrow's kernel unchanged, so a real overflow is
//! still the same error. Results are exactly Arrow's: same values, same precision and scale.
//!
//! Measured on TPC-H Q1 (SF1, `./bench/tpch.sh`): see the README's Benchmarks section.

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Datum, PrimitiveArray, RecordBatch};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::compute::kernels::numeric;
use arrow::datatypes::{DataType, Decimal128Type, Schema};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::BinaryExpr;

const MAX_PRECISION: u8 = 38;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Sub,
    Mul,
}

impl Op {
    fn of(op: &Operator) -> Option<Self> {
        match op {
            Operator::Plus => Some(Op::Add),
            Operator::Minus => Some(Op::Sub),
            Operator::Multiply => Some(Op::Mul),
            _ => None,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
        }
    }

    /// The result type Arrow gives `Decimal128(p1, s1) op Decimal128(p2, s2)`, or `None` where
    /// Arrow refuses the operation (a scale above 38).
    fn result_type(self, (p1, s1): (u8, i8), (p2, s2): (u8, i8)) -> Option<(u8, i8)> {
        match self {
            Op::Add | Op::Sub => {
                let scale = s1.max(s2);
                let integer = (p1 as i16 - s1 as i16).max(p2 as i16 - s2 as i16);
                let precision = (scale as i16 + integer + 1).clamp(1, MAX_PRECISION as i16);
                (s1 >= 0 && s2 >= 0).then_some((precision as u8, scale))
            }
            Op::Mul => {
                let scale = s1 as i16 + s2 as i16;
                let precision = (p1 as u16 + p2 as u16 + 1).min(MAX_PRECISION as u16) as u8;
                (0..=MAX_PRECISION as i16)
                    .contains(&scale)
                    .then_some((precision, scale as i8))
            }
        }
    }
}

/// `left op right` over two `Decimal128` operands, exactly as DataFusion's binary expression
/// computes it, without per-value overflow checks when no value can overflow.
#[derive(Debug, Clone, Eq)]
pub struct DecimalArithmetic {
    op: Op,
    left: Arc<dyn PhysicalExpr>,
    right: Arc<dyn PhysicalExpr>,
    /// The result's precision and scale.
    result: (u8, i8),
    /// The factors that bring each operand to the result's scale (1 for a multiplication).
    rescale: (i128, i128),
    /// Whether the declared precisions alone prove that no value can overflow.
    fits_by_type: bool,
}

// By hand, as DataFusion's own expressions do (https://github.com/rust-lang/rust/issues/78808).
impl PartialEq for DecimalArithmetic {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op
            && self.left.eq(&other.left)
            && self.right.eq(&other.right)
            && self.result == other.result
    }
}

impl Hash for DecimalArithmetic {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.op.hash(state);
        self.left.hash(state);
        self.right.hash(state);
        self.result.hash(state);
    }
}

fn decimal(t: &DataType) -> Option<(u8, i8)> {
    match t {
        DataType::Decimal128(p, s) => Some((*p, *s)),
        _ => None,
    }
}

impl DecimalArithmetic {
    /// The fast form of `expr` when it is a `Decimal128` addition, subtraction or multiplication
    /// whose result type is Arrow's.
    pub fn of(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<Arc<dyn PhysicalExpr>> {
        let binary = (expr.as_ref() as &dyn Any).downcast_ref::<BinaryExpr>()?;
        // Overflow-checked or not, Arrow checks decimal arithmetic, and so does this.
        let op = Op::of(binary.op())?;
        let left_type = decimal(&binary.left().data_type(schema).ok()?)?;
        let right_type = decimal(&binary.right().data_type(schema).ok()?)?;
        let result = op.result_type(left_type, right_type)?;
        if decimal(&expr.data_type(schema).ok()?)? != result {
            return None;
        }
        let rescale = match op {
            Op::Mul => (1, 1),
            Op::Add | Op::Sub => (
                10i128.checked_pow((result.1 - left_type.1) as u32)?,
                10i128.checked_pow((result.1 - right_type.1) as u32)?,
            ),
        };
        let mut fast = Self {
            op,
            left: binary.left().clone(),
            right: binary.right().clone(),
            result,
            rescale,
            fits_by_type: false,
        };
        let precision_bound = |(p, _): (u8, i8)| 10u128.checked_pow(p as u32);
        fast.fits_by_type = precision_bound(left_type)
            .zip(precision_bound(right_type))
            .is_some_and(|(a, b)| fast.cannot_overflow(a, b));
        Some(Arc::new(fast))
    }

    /// Whether no result can overflow when the operands' magnitudes are at most `a` and `b`.
    fn cannot_overflow(&self, a: u128, b: u128) -> bool {
        let (ma, mb) = self.rescale;
        let bound = match self.op {
            Op::Mul => a.checked_mul(b),
            Op::Add | Op::Sub => a
                .checked_mul(ma as u128)
                .zip(b.checked_mul(mb as u128))
                .and_then(|(a, b)| a.checked_add(b)),
        };
        bound.is_some_and(|v| v <= i128::MAX as u128)
    }

    fn kernel(&self, l: &dyn Datum, r: &dyn Datum) -> Result<ArrayRef> {
        Ok(match self.op {
            Op::Add => numeric::add_wrapping(l, r)?,
            Op::Sub => numeric::sub_wrapping(l, r)?,
            Op::Mul => numeric::mul_wrapping(l, r)?,
        })
    }

    fn compute(&self, l: Operand, r: Operand) -> Result<ArrayRef> {
        let (ma, mb) = self.rescale;
        // Declared precisions settle most cases; otherwise the batch's own magnitudes do.
        let safe = self.fits_by_type || self.cannot_overflow(l.magnitude(), r.magnitude());
        let len = l.len().max(r.len());
        if !safe || l.is_null_scalar() || r.is_null_scalar() {
            return self.kernel(&l.datum(), &r.datum());
        }
        let values: ScalarBuffer<i128> = match self.op {
            Op::Add => zip_with(&l, &r, len, |a, b| {
                a.wrapping_mul(ma).wrapping_add(b.wrapping_mul(mb))
            }),
            Op::Sub => zip_with(&l, &r, len, |a, b| {
                a.wrapping_mul(ma).wrapping_sub(b.wrapping_mul(mb))
            }),
            Op::Mul => zip_with(&l, &r, len, |a, b| a.wrapping_mul(b)),
        };
        let nulls = NullBuffer::union(l.nulls(), r.nulls());
        let array = PrimitiveArray::<Decimal128Type>::new(values, nulls)
            .with_precision_and_scale(self.result.0, self.result.1)?;
        Ok(Arc::new(array))
    }
}

/// One side of the operation: a column of values or one value for every row.
enum Operand {
    Array(ArrayRef),
    Scalar(Option<i128>, ArrayRef),
}

impl Operand {
    fn new(value: ColumnarValue) -> Result<Self> {
        Ok(match value {
            ColumnarValue::Array(a) => Operand::Array(a),
            ColumnarValue::Scalar(s) => {
                let v = match &s {
                    ScalarValue::Decimal128(v, _, _) => *v,
                    _ => None,
                };
                Operand::Scalar(v, s.to_array_of_size(1)?)
            }
        })
    }

    fn len(&self) -> usize {
        match self {
            Operand::Array(a) => a.len(),
            Operand::Scalar(..) => 1,
        }
    }

    fn is_null_scalar(&self) -> bool {
        matches!(self, Operand::Scalar(None, _))
    }

    fn nulls(&self) -> Option<&NullBuffer> {
        match self {
            // Decimal arrays hold their nulls in the validity buffer.
            Operand::Array(a) => a.nulls(),
            Operand::Scalar(..) => None,
        }
    }

    /// The largest magnitude among the operand's non-null values.
    fn magnitude(&self) -> u128 {
        match self {
            Operand::Scalar(v, _) => v.map_or(0, i128::unsigned_abs),
            Operand::Array(a) => {
                let a = a.as_primitive::<Decimal128Type>();
                let lo = arrow::compute::min(a).map_or(0, i128::unsigned_abs);
                let hi = arrow::compute::max(a).map_or(0, i128::unsigned_abs);
                lo.max(hi)
            }
        }
    }

    fn datum(&self) -> OperandDatum<'_> {
        match self {
            Operand::Array(a) => OperandDatum(a, false),
            Operand::Scalar(_, a) => OperandDatum(a, true),
        }
    }
}

struct OperandDatum<'a>(&'a ArrayRef, bool);

impl Datum for OperandDatum<'_> {
    fn get(&self) -> (&dyn Array, bool) {
        (self.0.as_ref(), self.1)
    }
}

/// `f(l[i], r[i])` for every row, a scalar operand repeating its value.
fn zip_with(
    l: &Operand,
    r: &Operand,
    len: usize,
    f: impl Fn(i128, i128) -> i128,
) -> ScalarBuffer<i128> {
    let values = |o: &Operand| -> Result<ScalarBuffer<i128>, i128> {
        match o {
            Operand::Array(a) => Ok(a.as_primitive::<Decimal128Type>().values().clone()),
            Operand::Scalar(v, _) => Err(v.unwrap_or(0)),
        }
    };
    match (values(l), values(r)) {
        (Ok(a), Ok(b)) => a.iter().zip(b.iter()).map(|(&a, &b)| f(a, b)).collect(),
        (Ok(a), Err(b)) => a.iter().map(|&a| f(a, b)).collect(),
        (Err(a), Ok(b)) => b.iter().map(|&b| f(a, b)).collect(),
        (Err(a), Err(b)) => std::iter::repeat_n(f(a, b), len).collect(),
    }
}

impl fmt::Display for DecimalArithmetic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Operands that are operations themselves in parentheses: `p * (1 - d)`.
        let operand = |f: &mut fmt::Formatter<'_>, e: &Arc<dyn PhysicalExpr>| {
            let any = e.as_ref() as &dyn Any;
            if any.is::<DecimalArithmetic>() || any.is::<BinaryExpr>() {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        };
        operand(f, &self.left)?;
        write!(f, " {} ", self.op.symbol())?;
        operand(f, &self.right)
    }
}

impl PhysicalExpr for DecimalArithmetic {
    fn data_type(&self, _input_schema: &Schema) -> Result<DataType> {
        Ok(DataType::Decimal128(self.result.0, self.result.1))
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        Ok(self.left.nullable(input_schema)? || self.right.nullable(input_schema)?)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let l = Operand::new(self.left.evaluate(batch)?)?;
        let r = Operand::new(self.right.evaluate(batch)?)?;
        let scalar = matches!((&l, &r), (Operand::Scalar(..), Operand::Scalar(..)));
        let out = self.compute(l, r)?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.left, &self.right]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let mut out = self.as_ref().clone();
        out.left = children[0].clone();
        out.right = children[1].clone();
        Ok(Arc::new(out))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(")?;
        self.left.fmt_sql(f)?;
        write!(f, " {} ", self.op.symbol())?;
        self.right.fmt_sql(f)?;
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, Decimal128Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::PhysicalExpr;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
    use datafusion::prelude::SessionContext;

    use super::DecimalArithmetic;
    use datafusion::common::ScalarValue;

    fn decimals(values: Vec<Option<i128>>, p: u8, s: i8) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(values)
                .with_precision_and_scale(p, s)
                .unwrap(),
        )
    }

    /// Values spread over `digits` digits, every seventh one NULL, from a fixed seed.
    fn sample(n: usize, digits: u32, seed: u64) -> Vec<Option<i128>> {
        let mut x = seed;
        (0..n)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = (x >> 11) as i128 % 10i128.pow(digits);
                (i % 7 != 3).then_some(if x & 1 == 0 { v } else { -v })
            })
            .collect()
    }

    /// Evaluates `left op right` both ways over `batch`: DataFusion's expression and the fast one.
    fn both(
        batch: &RecordBatch,
        left: Arc<dyn PhysicalExpr>,
        op: Operator,
        right: Arc<dyn PhysicalExpr>,
    ) -> (
        datafusion::common::Result<ArrayRef>,
        datafusion::common::Result<ArrayRef>,
    ) {
        let schema = batch.schema();
        let binary: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(left, op, right));
        let fast = DecimalArithmetic::of(&binary, &schema).expect("a decimal operation");
        let run = |e: &Arc<dyn PhysicalExpr>| {
            e.evaluate(batch)
                .and_then(|v| v.into_array(batch.num_rows()))
        };
        (run(&binary), run(&fast))
    }

    fn col(name: &str, schema: &Schema) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new_with_schema(name, schema).unwrap())
    }

    #[test]
    fn results_are_arrows_for_columns_scalars_nulls_and_mixed_scales() {
        let n = 10_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("price", DataType::Decimal128(15, 2), true),
            Field::new("rate", DataType::Decimal128(15, 2), true),
            Field::new("wide", DataType::Decimal128(38, 4), true),
            Field::new("fine", DataType::Decimal128(20, 6), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                decimals(sample(n, 9, 1), 15, 2),
                decimals(sample(n, 3, 2), 15, 2),
                decimals(sample(n, 20, 3), 38, 4),
                decimals(sample(n, 12, 4), 20, 6),
            ],
        )
        .unwrap();
        let one: Arc<dyn PhysicalExpr> =
            Arc::new(Literal::new(ScalarValue::Decimal128(Some(1), 20, 0)));
        let null: Arc<dyn PhysicalExpr> =
            Arc::new(Literal::new(ScalarValue::Decimal128(None, 20, 0)));
        let mut checked = 0;
        for (l, r) in [
            ("price", "rate"),
            ("price", "wide"),
            ("wide", "fine"),
            ("fine", "price"),
            ("wide", "wide"),
        ] {
            for op in [Operator::Plus, Operator::Minus, Operator::Multiply] {
                let (expected, fast) = both(&batch, col(l, &schema), op, col(r, &schema));
                match (expected, fast) {
                    (Ok(e), Ok(f)) => {
                        assert_eq!(e.data_type(), f.data_type(), "{l} {op} {r}");
                        assert_eq!(e.as_ref(), f.as_ref(), "{l} {op} {r}");
                        checked += 1;
                    }
                    (Err(e), Err(f)) => assert_eq!(e.to_string(), f.to_string(), "{l} {op} {r}"),
                    (e, f) => panic!("{l} {op} {r}: Arrow {e:?}, fast {f:?}"),
                }
            }
        }
        assert!(checked >= 12, "only {checked} pairs computed");
        for op in [Operator::Plus, Operator::Minus, Operator::Multiply] {
            for (l, r) in [
                (one.clone(), col("rate", &schema)),
                (col("price", &schema), one.clone()),
                (null.clone(), col("rate", &schema)),
                (one.clone(), one.clone()),
            ] {
                let (expected, fast) = both(&batch, l, op, r);
                let (e, f) = (expected.unwrap(), fast.unwrap());
                assert_eq!(e.data_type(), f.data_type());
                assert_eq!(e.as_ref(), f.as_ref(), "{op}");
            }
        }
    }

    #[test]
    fn an_overflow_is_the_same_error_and_the_rest_of_the_column_unchanged() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Decimal128(38, 0), true),
            Field::new("b", DataType::Decimal128(38, 0), true),
        ]));
        let big = 10i128.pow(37);
        let batch = |a: Vec<Option<i128>>, b: Vec<Option<i128>>| {
            RecordBatch::try_new(schema.clone(), vec![decimals(a, 38, 0), decimals(b, 38, 0)])
                .unwrap()
        };
        // 10^37 * 20 overflows: both fail alike.
        let over = batch(vec![Some(big), Some(1)], vec![Some(20), Some(2)]);
        let (e, f) = both(
            &over,
            col("a", &schema),
            Operator::Multiply,
            col("b", &schema),
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            f.expect_err("the fast form must fail too").to_string()
        );
        // The same declared types with small values compute, equal to Arrow's.
        let fine = batch(
            vec![Some(big), None, Some(-3)],
            vec![Some(9), Some(5), Some(7)],
        );
        let (e, f) = both(
            &fine,
            col("a", &schema),
            Operator::Multiply,
            col("b", &schema),
        );
        let f = f.unwrap();
        assert_eq!(e.unwrap().as_ref(), f.as_ref());
        assert!(f.is_null(1));
    }

    #[tokio::test]
    async fn the_rule_puts_the_fast_form_in_projections_and_aggregates() {
        let ctx = SessionContext::new_with_state(
            datafusion::execution::SessionStateBuilder::new()
                .with_default_features()
                .with_physical_optimizer_rule(Arc::new(crate::query::exprs::FastExpressions))
                .build(),
        );
        let sql = "SELECT g, sum(p * (1 - d)), sum(p * (1 - d) * (1 + t)), max(p - d) FROM \
                   (SELECT g, CAST(p AS DECIMAL(15, 2)) AS p, CAST(d AS DECIMAL(15, 2)) AS d, \
                   CAST(t AS DECIMAL(15, 2)) AS t FROM (VALUES ('a', '10.50', '0.05', '0.10'), \
                   ('b', '3.25', '0.00', '0.02'), ('a', '1.00', NULL, '0.00')) AS v(g, p, d, t)) \
                   GROUP BY g ORDER BY g";
        let plain = SessionContext::new();
        let expected = plain.sql(sql).await.unwrap().collect().await.unwrap();
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        let got = df.collect().await.unwrap();
        assert_eq!(
            arrow::util::pretty::pretty_format_batches(&expected)
                .unwrap()
                .to_string(),
            arrow::util::pretty::pretty_format_batches(&got)
                .unwrap()
                .to_string()
        );
        let mut fast = 0;
        let mut visit = |e: &Arc<dyn PhysicalExpr>| {
            let _ = datafusion::common::tree_node::TreeNode::apply(e, |e| {
                if (e.as_ref() as &dyn std::any::Any).is::<DecimalArithmetic>() {
                    fast += 1;
                }
                Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
            });
        };
        let mut stack = vec![plan.clone()];
        while let Some(node) = stack.pop() {
            let _ = node.apply_expressions(&mut |e| {
                visit(e);
                Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
            });
            if let Some(a) =
                node.downcast_ref::<datafusion::physical_plan::aggregates::AggregateExec>()
            {
                for f in a.aggr_expr() {
                    for e in f.expressions() {
                        visit(&e);
                    }
                }
            }
            stack.extend(node.children().into_iter().cloned());
        }
        assert!(fast >= 3, "{fast} fast decimal expressions in\n{shown}");
    }
}
