//! Faster forms of a few expressions, put in place after planning by [`FastExpressions`]:
//! decimal arithmetic ([`super::decimal`]), `LIKE` patterns made of several `%`-separated
//! parts ([`super::like`]) and a filter's cheap comparisons evaluated together
//! ([`super::conjunction`]). Each computes exactly what DataFusion's own expression computes.

use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;

use super::conjunction::AllOf;
use super::decimal::DecimalArithmetic;
use super::like::SubstringsLike;

/// Rewrites the expressions of projections, filters and aggregate arguments (where the engine
/// evaluates expressions row by row) into their faster forms.
#[derive(Debug, Default)]
pub struct FastExpressions;

/// `expr` with every sub-expression that has a faster form replaced by it.
fn rewrite(
    expr: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Transformed<Arc<dyn PhysicalExpr>>> {
    expr.clone().transform_up(|e| {
        let fast = DecimalArithmetic::of(&e, schema).or_else(|| SubstringsLike::of(&e, schema));
        Ok(match fast {
            Some(fast) => Transformed::yes(fast),
            None => Transformed::no(e),
        })
    })
}

fn projection(p: &ProjectionExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let schema = p.input().schema();
    let mut changed = false;
    let mut exprs = p.expr().to_vec();
    for e in &mut exprs {
        let t = rewrite(&e.expr, &schema)?;
        changed |= t.transformed;
        e.expr = t.data;
    }
    Ok(match changed {
        true => Some(Arc::new(ProjectionExec::try_new(exprs, p.input().clone())?)),
        false => None,
    })
}

fn filter(f: &FilterExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let schema = f.input().schema();
    let t = rewrite(f.predicate(), &schema)?;
    let predicate = match AllOf::of(&t.data, &schema) {
        Some(all) => all,
        None if t.transformed => t.data,
        None => return Ok(None),
    };
    Ok(Some(Arc::new(
        FilterExecBuilder::from(f)
            .with_predicate(predicate)
            .build()?,
    )))
}

fn aggregate(a: &AggregateExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let schema = a.input_schema();
    let mut changed = false;
    let mut aggr = Vec::with_capacity(a.aggr_expr().len());
    for f in a.aggr_expr() {
        let mut args = Vec::new();
        let mut any = false;
        for e in f.expressions() {
            let t = rewrite(&e, &schema)?;
            any |= t.transformed;
            args.push(t.data);
        }
        let order = f.order_bys().iter().map(|s| s.expr.clone()).collect();
        match f.with_new_expressions(args, order).filter(|_| any) {
            Some(new) => {
                changed = true;
                aggr.push(Arc::new(new));
            }
            None => aggr.push(f.clone()),
        }
    }
    Ok(changed.then(|| Arc::new(a.with_new_aggr_exprs(aggr)) as Arc<dyn ExecutionPlan>))
}

impl PhysicalOptimizerRule for FastExpressions {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let new = if let Some(p) = node.downcast_ref::<ProjectionExec>() {
                projection(p)?
            } else if let Some(f) = node.downcast_ref::<FilterExec>() {
                filter(f)?
            } else if let Some(a) = node.downcast_ref::<AggregateExec>() {
                aggregate(a)?
            } else {
                None
            };
            Ok(match new {
                Some(new) => Transformed::yes(new),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "tarn_fast_expressions"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
