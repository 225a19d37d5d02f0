//! Small pieces of the hand-written parts of Tarn's grammar (the DDL dialect and the export
//! clause): unquoted words and single characters.

use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{CatalogError, Result};

pub(crate) fn word(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

pub(crate) fn is_word(t: &Token, expected: &str) -> bool {
    word(t).is_some_and(|w| w == expected)
}

/// Consumes the next token if it is the unquoted word `expected`.
pub(crate) fn eat_word(p: &mut Parser, expected: &str) -> bool {
    let hit = is_word(&p.peek_token().token, expected);
    if hit {
        p.next_token();
    }
    hit
}

pub(crate) fn expect_word(p: &mut Parser, expected: &str) -> Result<()> {
    let tok = p.next_token();
    if is_word(&tok.token, expected) {
        Ok(())
    } else {
        Err(p.expected::<()>(expected, tok).unwrap_err().into())
    }
}

pub(crate) fn single_byte(what: &str, s: &str) -> Result<u8> {
    match s.as_bytes() {
        [b] => Ok(*b),
        _ => Err(CatalogError::invalid(format!(
            "{what} must be a single character, got '{}'",
            s.escape_default()
        ))),
    }
}

/// An enclosure or escape character: empty turns it off.
pub(crate) fn optional_byte(what: &str, s: &str) -> Result<Option<u8>> {
    if s.is_empty() {
        Ok(None)
    } else {
        single_byte(what, s).map(Some)
    }
}
