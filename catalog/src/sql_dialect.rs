//! The SQL dialect Tarn parses: sqlparser's MySQL dialect, with MySQL's binding of the JSON
//! operators. In MySQL `doc->'$.a'` and `doc->>'$.a'` are column paths that bind tighter than any
//! operator (`doc->>'$.a' IS NULL` tests the path's value); the MySQL dialect of the parser gives
//! them a low precedence, so `IS NULL` would apply to the path text.

use std::any::TypeId;

use datafusion::sql::sqlparser::ast::{ColumnOption, Expr, Ident, SqlOption, Statement, Value};
use datafusion::sql::sqlparser::dialect::{Dialect, MySqlDialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

/// MySQL's dialect with `->` and `->>` binding as in MySQL (see the module).
#[derive(Debug, Default, Clone, Copy)]
pub struct TarnDialect(MySqlDialect);

/// The methods the MySQL dialect answers itself, answered by it.
macro_rules! as_mysql {
    ($($name:ident),* $(,)?) => {
        $(fn $name(&self) -> bool {
            self.0.$name()
        })*
    };
}

impl Dialect for TarnDialect {
    // The parser's own checks for MySQL (`dialect_of!`) see MySQL.
    fn dialect(&self) -> TypeId {
        self.0.dialect()
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        match parser.peek_token_ref().token {
            Token::Arrow | Token::LongArrow => Some(Ok(self.prec_value(Precedence::DoubleColon))),
            _ => self.0.get_next_precedence(parser),
        }
    }

    /// A column's `ENGINE_ATTRIBUTE [=] '<json>'` (HeatWave's column-level dialect), kept as the
    /// option `ENGINE_ATTRIBUTE = '<json>'` for the catalog to read.
    #[allow(clippy::type_complexity)]
    fn parse_column_option(
        &self,
        parser: &mut Parser,
    ) -> Result<Option<Result<Option<ColumnOption>, ParserError>>, ParserError> {
        if !parser.parse_keyword(Keyword::ENGINE_ATTRIBUTE) {
            return Ok(None);
        }
        let _ = parser.consume_token(&Token::Eq);
        let text = parser.parse_literal_string()?;
        Ok(Some(Ok(Some(ColumnOption::Options(vec![
            SqlOption::KeyValue {
                key: Ident::new("ENGINE_ATTRIBUTE"),
                value: Expr::Value(Value::SingleQuotedString(text).into()),
            },
        ])))))
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.0.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.0.is_identifier_part(ch)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.0.is_delimited_identifier_start(ch)
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.0.identifier_quote_style(identifier)
    }

    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        self.0.parse_infix(parser, expr, precedence)
    }

    fn parse_statement(&self, parser: &mut Parser) -> Option<Result<Statement, ParserError>> {
        self.0.parse_statement(parser)
    }

    fn is_table_factor_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool {
        self.0.is_table_factor_alias(explicit, kw, parser)
    }

    as_mysql!(
        supports_string_literal_backslash_escape,
        supports_string_literal_concatenation,
        ignores_wildcard_escapes,
        supports_numeric_prefix,
        supports_bitwise_shift_operators,
        supports_multiline_comment_hints,
        require_interval_qualifier,
        supports_limit_comma,
        supports_create_table_select,
        supports_insert_set,
        supports_user_host_grantee,
        supports_table_hints,
        requires_single_line_comment_whitespace,
        supports_match_against,
        supports_select_modifiers,
        supports_set_names,
        supports_comma_separated_set_assignments,
        supports_update_order_by,
        supports_data_type_signed_suffix,
        supports_cross_join_constraint,
        supports_double_ampersand_operator,
        supports_binary_kw_as_cast,
        supports_comment_optimizer_hint,
        supports_constraint_keyword_without_name,
        supports_key_column_option,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(d: &dyn Dialect, sql: &str) -> String {
        Parser::parse_sql(d, sql).unwrap()[0].to_string()
    }

    #[test]
    fn json_paths_bind_tighter_than_any_operator_and_the_rest_parses_as_mysql() {
        let sql = "SELECT a->>'$.k' IS NOT NULL, a->'$.x' = 1 AND b->>'$.y' LIKE 'q%' FROM t";
        let stmt = &Parser::parse_sql(&TarnDialect::default(), sql).unwrap()[0];
        let text = stmt.to_string();
        assert!(text.contains("a ->> '$.k' IS NOT NULL"), "{text}");
        let Statement::Query(q) = stmt else { panic!() };
        let datafusion::sql::sqlparser::ast::SetExpr::Select(s) = q.body.as_ref() else {
            panic!()
        };
        let first = format!("{:?}", s.projection[0]);
        assert!(
            first.starts_with("UnnamedExpr(IsNotNull(BinaryOp"),
            "{first}"
        );
        // Everything else reads as the MySQL dialect reads it.
        for sql in [
            "SELECT `a b`, 'it\\'s', x DIV 2, 1 << 2 FROM t LIMIT 1, 2",
            "SELECT * FROM t USE INDEX (i) WHERE a = 1 && b = 2",
            "SELECT CAST(x AS SIGNED), BINARY 'a' FROM t",
        ] {
            assert_eq!(
                parsed(&TarnDialect::default(), sql),
                parsed(&MySqlDialect {}, sql),
                "{sql}"
            );
        }
    }
}
