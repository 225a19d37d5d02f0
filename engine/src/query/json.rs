//! MySQL's JSON functions over JSON text: `JSON_EXTRACT(doc, path[, path...])`, the `->` and `->>`
//! operators (`doc->'$.a'` is `JSON_EXTRACT(doc, '$.a')`, `doc->>'$.a'` is
//! `JSON_UNQUOTE(JSON_EXTRACT(doc, '$.a'))`), `JSON_UNQUOTE`, `JSON_VALID` and `JSON_TYPE`. Paths
//! and the text written follow MySQL ([`tarn_catalog::json`]); a document that is not JSON is an
//! error naming it, as in MySQL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanBuilder, StringArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{DFSchema, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use serde_json::Value;
use tarn_catalog::json::{self, JsonPath};

/// What a function computes from its arguments' text, row by row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Extract,
    Unquote,
    Valid,
    Type,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonFunction {
    kind: Kind,
    name: &'static str,
    signature: Signature,
}

impl JsonFunction {
    fn new(kind: Kind, name: &'static str) -> Self {
        let signature = match kind {
            Kind::Extract => Signature::variadic(vec![DataType::Utf8], Volatility::Immutable),
            _ => Signature::uniform(1, vec![DataType::Utf8], Volatility::Immutable),
        };
        Self {
            kind,
            name,
            signature,
        }
    }
}

/// The functions, to register with a context.
pub fn functions() -> Vec<ScalarUDF> {
    [
        (Kind::Extract, "json_extract"),
        (Kind::Unquote, "json_unquote"),
        (Kind::Valid, "json_valid"),
        (Kind::Type, "json_type"),
    ]
    .into_iter()
    .map(|(k, n)| ScalarUDF::from(JsonFunction::new(k, n)))
    .collect()
}

fn parse_doc(text: &str, function: &str) -> Result<Value> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(e) => exec_err!("invalid JSON text in argument 1 to function {function}: {e}"),
    }
}

/// The arguments as text arrays of equal length (of one row when all are constants).
fn text_arrays(args: &[ColumnarValue]) -> Result<Vec<ArrayRef>> {
    ColumnarValue::values_to_arrays(args)?
        .iter()
        .map(|a| Ok(cast(a, &DataType::Utf8)?))
        .collect()
}

impl ScalarUDFImpl for JsonFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match self.kind {
            Kind::Extract if arg_types.len() < 2 => {
                plan_err!("JSON_EXTRACT takes a document and at least one path")
            }
            Kind::Valid => Ok(DataType::Boolean),
            _ => Ok(DataType::Utf8),
        }
    }

    /// JSON_EXTRACT answers JSON documents: a JSON column, as clients are told.
    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<arrow::datatypes::FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let t = self.return_type(&types)?;
        Ok(Arc::new(match self.kind {
            Kind::Extract => tarn_catalog::types::json_field(self.name, true),
            _ => arrow::datatypes::Field::new(self.name, t, true),
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let constant = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = text_arrays(&args.args)?;
        let rows = arrays[0].len();
        let text = |i: usize| -> &StringArray {
            arrays[i]
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to Utf8")
        };
        let docs = text(0);
        let out: ArrayRef = match self.kind {
            Kind::Valid => {
                let mut b = BooleanBuilder::with_capacity(rows);
                for v in docs.iter() {
                    b.append_option(
                        v.map(|v| serde_json::from_str::<serde::de::IgnoredAny>(v).is_ok()),
                    );
                }
                Arc::new(b.finish())
            }
            Kind::Unquote => {
                let mut b = StringBuilder::with_capacity(rows, 0);
                for v in docs.iter() {
                    b.append_option(v.map(json::unquote));
                }
                Arc::new(b.finish())
            }
            Kind::Type => {
                let mut b = StringBuilder::with_capacity(rows, 0);
                for v in docs.iter() {
                    match v {
                        Some(v) => b.append_value(json::type_name(&parse_doc(v, self.name)?)),
                        None => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Extract => {
                let paths: Vec<&StringArray> = (1..arrays.len()).map(text).collect();
                // Constant paths (the usual case) are parsed once.
                let mut parsed: Vec<Option<(String, JsonPath)>> = vec![None; paths.len()];
                let mut b = StringBuilder::with_capacity(rows, 0);
                for r in 0..rows {
                    if docs.is_null(r) || paths.iter().any(|p| p.is_null(r)) {
                        b.append_null();
                        continue;
                    }
                    for (p, cache) in paths.iter().zip(parsed.iter_mut()) {
                        let text = p.value(r);
                        if cache.as_ref().is_none_or(|(t, _)| t != text) {
                            let path = JsonPath::parse(text)
                                .map_err(datafusion::common::DataFusionError::Execution)?;
                            *cache = Some((text.to_string(), path));
                        }
                    }
                    let these: Vec<&JsonPath> = parsed
                        .iter()
                        .map(|c| &c.as_ref().expect("parsed above").1)
                        .collect();
                    let doc = parse_doc(docs.value(r), self.name)?;
                    b.append_option(json::extract(&doc, &these));
                }
                Arc::new(b.finish())
            }
        };
        Ok(match constant {
            true => ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?),
            false => ColumnarValue::Array(out),
        })
    }
}

/// Plans `->` and `->>` as MySQL has them.
#[derive(Debug)]
pub struct JsonOperators;

impl ExprPlanner for JsonOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        _schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let extract = || ScalarUDF::from(JsonFunction::new(Kind::Extract, "json_extract"));
        let unquote = || ScalarUDF::from(JsonFunction::new(Kind::Unquote, "json_unquote"));
        match expr.op {
            BinaryOperator::Arrow => Ok(PlannerResult::Planned(
                extract().call(vec![expr.left, expr.right]),
            )),
            BinaryOperator::LongArrow => Ok(PlannerResult::Planned(
                unquote().call(vec![extract().call(vec![expr.left, expr.right])]),
            )),
            _ => Ok(PlannerResult::Original(expr)),
        }
    }
}
