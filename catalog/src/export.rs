//! `SELECT ... INTO OUTFILE` to object storage, as HeatWave writes it: the SQL form
//! (`INTO OUTFILE URI 'oci://bucket@ns/prefix/' FORMAT csv HEADER ON FIELDS TERMINATED BY ','
//! ...`) and the JSON form (`INTO OUTFILE WITH PARAMETERS '{"file": [{"uri": ...}], "dialect":
//! {"format": "parquet", ...}}'`). The clause ends the statement; what comes before it is the
//! query whose rows are written.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use serde::Serialize;

use crate::error::{CatalogError, Result};
use crate::model::FormatKind;
use crate::tokens::{eat_word, expect_word, optional_byte};

/// What an export writes and where.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportSpec {
    /// The query, without the `INTO OUTFILE` clause.
    pub query: String,
    /// The prefix the export's folder is made under (ends in `/`).
    pub uri: String,
    pub format: ExportFormat,
    pub compression: ExportCompression,
    pub csv: CsvDialect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Csv,
    Parquet,
    Json,
}

impl ExportFormat {
    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Parquet => "parquet",
            Self::Json => "json",
        }
    }

    /// The format a table reading the written files declares.
    pub fn kind(self) -> FormatKind {
        match self {
            Self::Csv => FormatKind::Csv,
            Self::Parquet => FormatKind::Parquet,
            Self::Json => FormatKind::Json,
        }
    }
}

/// Compression: of the whole file for CSV and JSON (gzip, zstd, bzip2), of pages for Parquet
/// (snappy, the default, gzip, brotli, zstd, lz4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportCompression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Snappy,
    Brotli,
    Lz4,
}

impl ExportCompression {
    fn parse(format: ExportFormat, s: &str) -> Result<Self> {
        let c = match s.to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Self::None,
            "gzip" | "gz" => Self::Gzip,
            "zstd" => Self::Zstd,
            "bzip2" => Self::Bzip2,
            "snappy" => Self::Snappy,
            "brotli" => Self::Brotli,
            "lz4" => Self::Lz4,
            _ => {
                return Err(CatalogError::invalid(format!(
                    "unknown COMPRESSION '{s}': expected {}",
                    Self::choices(format)
                )));
            }
        };
        let fits = match format {
            ExportFormat::Parquet => !matches!(c, Self::Bzip2),
            _ => matches!(c, Self::None | Self::Gzip | Self::Zstd | Self::Bzip2),
        };
        match fits {
            true => Ok(c),
            false => Err(CatalogError::invalid(format!(
                "COMPRESSION '{s}' does not apply to {} exports: expected {}",
                format.extension(),
                Self::choices(format)
            ))),
        }
    }

    fn choices(format: ExportFormat) -> &'static str {
        match format {
            ExportFormat::Parquet => "uncompressed, snappy, gzip, brotli, zstd or lz4",
            _ => "uncompressed, gzip, zstd or bzip2",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::None => "uncompressed",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::Bzip2 => "bzip2",
            Self::Snappy => "snappy",
            Self::Brotli => "brotli",
            Self::Lz4 => "lz4",
        }
    }
}

impl ExportSpec {
    /// The written files' extension: the format's, after the codec for Parquet
    /// (`snappy.parquet`), before the whole-file compression for text (`csv.gz`), where readers
    /// look for it.
    pub fn extension(&self) -> String {
        let format = self.format.extension();
        match (self.format, self.compression) {
            (_, ExportCompression::None) => format.to_string(),
            (ExportFormat::Parquet, c) => format!("{}.{format}", c.name()),
            (_, ExportCompression::Gzip) => format!("{format}.gz"),
            (_, ExportCompression::Zstd) => format!("{format}.zst"),
            (_, ExportCompression::Bzip2) => format!("{format}.bz2"),
            _ => format.to_string(),
        }
    }
}

/// How CSV is written (HeatWave's export defaults: `,`, `"` when needed, `\` escapes, `\N` for
/// NULL, `\n` between lines, no header).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CsvDialect {
    pub header: bool,
    pub delimiter: String,
    pub enclosed_by: Option<u8>,
    /// `ENCLOSED BY` without `OPTIONALLY`: every field is enclosed, not only those that need it.
    pub always_enclose: bool,
    pub escaped_by: Option<u8>,
    pub null_value: String,
    pub line_terminator: String,
}

impl Default for CsvDialect {
    fn default() -> Self {
        Self {
            header: false,
            delimiter: ",".into(),
            enclosed_by: Some(b'"'),
            always_enclose: false,
            escaped_by: Some(b'\\'),
            null_value: "\\N".into(),
            line_terminator: "\n".into(),
        }
    }
}

/// Splits `sql` at a top-level `INTO OUTFILE` (outside quotes and parentheses): the query before
/// it and the clause's text after `OUTFILE`; `None` when there is none.
pub fn split_into_outfile(sql: &str) -> Option<(String, String)> {
    let dialect = crate::TarnDialect::default();
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .ok()?;
    let mut depth = 0i32;
    let words: Vec<_> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    for (i, t) in words.iter().enumerate() {
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w) if depth == 0 && w.keyword == Keyword::INTO => {
                let Some(next) = words.get(i + 1) else {
                    continue;
                };
                if !matches!(&next.token, Token::Word(n) if n.value.eq_ignore_ascii_case("outfile"))
                {
                    continue;
                }
                let at = offset(sql, t.span.start);
                let after = offset(sql, next.span.end);
                return Some((sql[..at].trim().to_string(), sql[after..].to_string()));
            }
            _ => {}
        }
    }
    None
}

/// The byte offset of a 1-based line and column.
fn offset(sql: &str, loc: datafusion::sql::sqlparser::tokenizer::Location) -> usize {
    let mut line = 1;
    let mut col = 1;
    for (i, c) in sql.char_indices() {
        if line == loc.line && col == loc.column {
            return i;
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    sql.len()
}

/// Parses the clause after `INTO OUTFILE` for `query`.
pub fn parse_export(query: String, clause: &str) -> Result<ExportSpec> {
    let dialect = crate::TarnDialect::default();
    let mut p = Parser::new(&dialect).try_with_sql(clause)?;
    let spec = if p.parse_keyword(Keyword::WITH) {
        expect_word(&mut p, "PARAMETERS")?;
        let json = p.parse_literal_string()?;
        with_parameters(query, &json)?
    } else if eat_word(&mut p, "URL") || eat_word(&mut p, "URI") {
        let uri = p.parse_literal_string()?;
        sql_form(query, uri, &mut p)?
    } else {
        return Err(CatalogError::invalid(
            "INTO OUTFILE writes to object storage only: write INTO OUTFILE URI 'oci://...' or \
             's3://...' [FORMAT csv|parquet|json] ..., or INTO OUTFILE WITH PARAMETERS '{\"file\": \
             [{\"uri\": ...}], \"dialect\": {...}}' (a file on the server is not written)",
        ));
    };
    while p.consume_token(&Token::SemiColon) {}
    if p.peek_token().token != Token::EOF {
        return Err(p
            .expected::<()>("end of the INTO OUTFILE clause", p.peek_token())
            .unwrap_err()
            .into());
    }
    check_prefix(&spec.uri)?;
    Ok(spec)
}

fn check_prefix(uri: &str) -> Result<()> {
    if uri.ends_with('/') {
        Ok(())
    } else {
        Err(CatalogError::invalid(format!(
            "the export location '{}' must be a prefix ending in '/': the export writes a folder \
             of files under it",
            crate::model::redact_text(uri)
        )))
    }
}

/// A word or a quoted string (HeatWave takes `FORMAT csv` and `FORMAT 'csv'` alike).
fn word_or_string(p: &mut Parser) -> Result<String> {
    let tok = p.next_token();
    match tok.token {
        Token::Word(w) => Ok(w.value),
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s),
        _ => Err(p.expected::<()>("a name", tok).unwrap_err().into()),
    }
}

fn format_named(s: &str) -> Result<ExportFormat> {
    match s.to_ascii_lowercase().as_str() {
        "csv" => Ok(ExportFormat::Csv),
        "parquet" => Ok(ExportFormat::Parquet),
        "json" | "ndjson" => Ok(ExportFormat::Json),
        _ => Err(CatalogError::invalid(format!(
            "unknown export FORMAT '{s}': expected csv, parquet or json"
        ))),
    }
}

fn default_compression(format: ExportFormat) -> ExportCompression {
    match format {
        ExportFormat::Parquet => ExportCompression::Snappy,
        _ => ExportCompression::None,
    }
}

fn sql_form(query: String, uri: String, p: &mut Parser) -> Result<ExportSpec> {
    let mut format = ExportFormat::Csv;
    let mut compression: Option<String> = None;
    let mut csv = CsvDialect::default();
    let mut csv_options: Vec<String> = Vec::new();
    loop {
        let tok = p.peek_token();
        let Token::Word(w) = &tok.token else { break };
        let w = w.value.to_ascii_uppercase();
        p.next_token();
        match w.as_str() {
            "FORMAT" => format = format_named(&word_or_string(p)?)?,
            "COMPRESSION" => compression = Some(word_or_string(p)?),
            "CHARACTER" => {
                p.expect_keyword(Keyword::SET)?;
                let cs = word_or_string(p)?;
                if !cs.to_ascii_lowercase().starts_with("utf8") {
                    return Err(CatalogError::invalid(format!(
                        "CHARACTER SET {cs} is not supported: exports are written in utf8mb4"
                    )));
                }
            }
            "HEADER" => {
                csv_options.push(w.clone());
                csv.header = match word_or_string(p)?.to_ascii_uppercase().as_str() {
                    "ON" => true,
                    "OFF" => false,
                    other => {
                        return Err(CatalogError::invalid(format!(
                            "HEADER takes ON or OFF, not {other}"
                        )));
                    }
                };
            }
            "FIELDS" | "COLUMNS" => {
                csv_options.push(w.clone());
                loop {
                    if p.parse_keyword(Keyword::NULL) {
                        p.expect_keyword(Keyword::AS)?;
                        csv.null_value = p.parse_literal_string()?;
                    } else if p.parse_keywords(&[Keyword::TERMINATED, Keyword::BY]) {
                        csv.delimiter = p.parse_literal_string()?;
                        if csv.delimiter.is_empty() {
                            return Err(CatalogError::invalid(
                                "FIELDS TERMINATED BY may not be empty",
                            ));
                        }
                    } else if eat_word(p, "OPTIONALLY") {
                        expect_word(p, "ENCLOSED")?;
                        p.expect_keyword(Keyword::BY)?;
                        csv.enclosed_by = optional_byte("ENCLOSED BY", &p.parse_literal_string()?)?;
                        csv.always_enclose = false;
                    } else if eat_word(p, "ENCLOSED") {
                        p.expect_keyword(Keyword::BY)?;
                        csv.enclosed_by = optional_byte("ENCLOSED BY", &p.parse_literal_string()?)?;
                        csv.always_enclose = csv.enclosed_by.is_some();
                    } else if p.parse_keywords(&[Keyword::ESCAPED, Keyword::BY]) {
                        csv.escaped_by = optional_byte("ESCAPED BY", &p.parse_literal_string()?)?;
                    } else {
                        break;
                    }
                }
            }
            "LINES" => {
                if eat_word(p, "STARTING") {
                    return Err(CatalogError::invalid(
                        "LINES STARTING BY is not supported in exports",
                    ));
                }
                p.expect_keywords(&[Keyword::TERMINATED, Keyword::BY])?;
                csv.line_terminator = p.parse_literal_string()?;
                if csv.line_terminator.is_empty() {
                    return Err(CatalogError::invalid(
                        "LINES TERMINATED BY may not be empty",
                    ));
                }
                if format != ExportFormat::Json {
                    csv_options.push(w.clone());
                }
            }
            other => {
                return Err(CatalogError::invalid(format!(
                    "unknown INTO OUTFILE option {other}: expected FORMAT, COMPRESSION, CHARACTER \
                     SET, HEADER, FIELDS or LINES"
                )));
            }
        }
    }
    if format == ExportFormat::Parquet
        && let Some(o) = csv_options.first()
    {
        return Err(CatalogError::invalid(format!(
            "{o} applies to CSV exports, not parquet"
        )));
    }
    if format == ExportFormat::Json
        && let Some(o) = csv_options.iter().find(|o| *o != "LINES")
    {
        return Err(CatalogError::invalid(format!(
            "{o} applies to CSV exports, not json"
        )));
    }
    let compression = match compression {
        Some(c) => ExportCompression::parse(format, &c)?,
        None => default_compression(format),
    };
    spec(query, uri, format, compression, csv)
}

/// The spec, once its CSV dialect is checked.
fn spec(
    query: String,
    uri: String,
    format: ExportFormat,
    compression: ExportCompression,
    csv: CsvDialect,
) -> Result<ExportSpec> {
    if csv.delimiter.is_empty() || csv.line_terminator.is_empty() {
        return Err(CatalogError::invalid(
            "the field and line delimiters may not be empty",
        ));
    }
    Ok(ExportSpec {
        query,
        uri,
        format,
        compression,
        csv,
    })
}

fn with_parameters(query: String, text: &str) -> Result<ExportSpec> {
    use serde_json::Value as J;
    let v: J = serde_json::from_str(text)
        .map_err(|e| CatalogError::invalid(format!("WITH PARAMETERS is not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| CatalogError::invalid("WITH PARAMETERS must be a JSON object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "file" | "dialect"))
    {
        return Err(CatalogError::invalid(format!(
            "unknown export parameter '{k}': expected \"file\" and \"dialect\""
        )));
    }
    let files = obj
        .get("file")
        .and_then(J::as_array)
        .ok_or_else(|| CatalogError::invalid("WITH PARAMETERS needs a \"file\" array"))?;
    let [entry] = files.as_slice() else {
        return Err(CatalogError::invalid(
            "an export writes to one location: give one \"file\" entry",
        ));
    };
    let get = |k: &str| entry.get(k).and_then(J::as_str);
    let uri = if let Some(uri) = get("uri") {
        uri.to_string()
    } else if let Some(par) = get("par") {
        format!("{par}{}", get("prefix").unwrap_or(""))
    } else if let (Some(bucket), Some(ns)) = (get("bucket"), get("namespace")) {
        format!("oci://{bucket}@{ns}/{}", get("prefix").unwrap_or(""))
    } else {
        return Err(CatalogError::invalid(
            "the \"file\" entry needs \"uri\", \"par\", or \"bucket\" and \"namespace\"",
        ));
    };
    let dialect = obj.get("dialect").and_then(J::as_object);
    let format = match dialect.and_then(|d| d.get("format")).and_then(J::as_str) {
        Some(f) => format_named(f)?,
        None => ExportFormat::Csv,
    };
    let mut compression = default_compression(format);
    let mut csv = CsvDialect::default();
    for (key, val) in dialect.into_iter().flatten() {
        let s = val
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| val.to_string());
        let csv_only = || -> Result<()> {
            match format {
                ExportFormat::Csv => Ok(()),
                other => Err(CatalogError::invalid(format!(
                    "dialect option '{key}' applies to CSV exports, not {}",
                    other.extension()
                ))),
            }
        };
        match key.as_str() {
            "format" => {}
            "encoding" | "character_set" => {
                if !s.to_ascii_lowercase().starts_with("utf8") {
                    return Err(CatalogError::invalid(format!(
                        "encoding '{s}' is not supported: exports are written in utf8mb4"
                    )));
                }
            }
            "compression" => compression = ExportCompression::parse(format, &s)?,
            "field_delimiter" => {
                csv_only()?;
                csv.delimiter = s;
            }
            "record_delimiter" => {
                if format == ExportFormat::Parquet {
                    csv_only()?;
                }
                csv.line_terminator = s;
            }
            "escape_character" => {
                csv_only()?;
                csv.escaped_by = optional_byte("escape_character", &s)?;
            }
            "quotation_marks" => {
                csv_only()?;
                csv.enclosed_by = optional_byte("quotation_marks", &s)?;
            }
            "null_value" => {
                csv_only()?;
                csv.null_value = s;
            }
            "has_header" => {
                csv_only()?;
                csv.header = val.as_bool().unwrap_or(matches!(s.as_str(), "1" | "true"));
            }
            other => {
                return Err(CatalogError::invalid(format!(
                    "unknown export dialect option '{other}'"
                )));
            }
        }
    }
    spec(query, uri, format, compression, csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sql: &str) -> Result<ExportSpec> {
        let (query, clause) = split_into_outfile(sql).expect("has INTO OUTFILE");
        parse_export(query, &clause)
    }

    #[test]
    fn the_sql_form_takes_heatwaves_options() {
        let s = spec(
            "SELECT a, 'x into outfile y' FROM t WHERE b IN (SELECT 1) INTO OUTFILE URI 's3://b/out/' \
             FORMAT csv COMPRESSION 'gzip' CHARACTER SET 'utf8mb4' HEADER ON FIELDS NULL AS 'NIL' \
             TERMINATED BY '|' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\\\\' LINES TERMINATED BY '\\r\\n';",
        )
        .unwrap();
        assert_eq!(
            s.query,
            "SELECT a, 'x into outfile y' FROM t WHERE b IN (SELECT 1)"
        );
        assert_eq!(s.uri, "s3://b/out/");
        assert_eq!(
            (s.format, s.compression),
            (ExportFormat::Csv, ExportCompression::Gzip)
        );
        assert_eq!(
            s.csv,
            CsvDialect {
                header: true,
                delimiter: "|".into(),
                enclosed_by: Some(b'"'),
                always_enclose: false,
                escaped_by: Some(b'\\'),
                null_value: "NIL".into(),
                line_terminator: "\r\n".into(),
            }
        );
        let p = spec("SELECT 1 INTO OUTFILE URL 'oci://b@ns/p/' FORMAT parquet COMPRESSION zstd")
            .unwrap();
        assert_eq!(
            (p.format, p.compression),
            (ExportFormat::Parquet, ExportCompression::Zstd)
        );
        let j = spec("SELECT 1 INTO OUTFILE URI 'file:///x/' FORMAT json").unwrap();
        assert_eq!(
            (j.format, j.compression),
            (ExportFormat::Json, ExportCompression::None)
        );
        assert_eq!(split_into_outfile("SELECT 'INTO OUTFILE' FROM t"), None);
    }

    #[test]
    fn the_json_form_takes_uri_par_and_bucket_entries() {
        let s = spec(
            r#"SELECT * FROM t INTO OUTFILE WITH PARAMETERS '{"file": [{"bucket": "b", "namespace": "ns", "prefix": "out/"}], "dialect": {"format": "csv", "field_delimiter": ";", "has_header": true, "null_value": "", "compression": "zstd"}}'"#,
        )
        .unwrap();
        assert_eq!(s.uri, "oci://b@ns/out/");
        assert_eq!(s.compression, ExportCompression::Zstd);
        assert_eq!(
            (
                s.csv.delimiter.as_str(),
                s.csv.header,
                s.csv.null_value.as_str()
            ),
            (";", true, "")
        );
        let par = spec(
            r#"SELECT 1 INTO OUTFILE WITH PARAMETERS '{"file": [{"par": "https://h/p/tok/n/ns/b/bk/o/", "prefix": "x/"}], "dialect": {"format": "parquet"}}'"#,
        )
        .unwrap();
        assert_eq!(par.uri, "https://h/p/tok/n/ns/b/bk/o/x/");
        assert_eq!(par.compression, ExportCompression::Snappy);
    }

    #[test]
    fn what_does_not_fit_is_refused_by_name() {
        for (sql, says) in [
            ("SELECT 1 INTO OUTFILE '/tmp/x.csv'", "object storage only"),
            (
                "SELECT 1 INTO OUTFILE URI 's3://b/file.csv'",
                "must be a prefix",
            ),
            (
                "SELECT 1 INTO OUTFILE URI 's3://b/' FORMAT avro",
                "unknown export FORMAT 'avro'",
            ),
            (
                "SELECT 1 INTO OUTFILE URI 's3://b/' FORMAT parquet HEADER ON",
                "HEADER applies to CSV exports",
            ),
            (
                "SELECT 1 INTO OUTFILE URI 's3://b/' FORMAT csv COMPRESSION snappy",
                "does not apply to csv exports",
            ),
            (
                "SELECT 1 INTO OUTFILE URI 's3://b/' PARTITIONS 4",
                "unknown INTO OUTFILE option PARTITIONS",
            ),
            (
                r#"SELECT 1 INTO OUTFILE WITH PARAMETERS '{"file": [{"uri": "s3://b/"}], "dialect": {"format": "json", "has_header": true}}'"#,
                "'has_header' applies to CSV exports, not json",
            ),
            (
                r#"SELECT 1 INTO OUTFILE WITH PARAMETERS '{"file": [{"uri": "s3://b/"}], "dialect": {"sampling": 1}}'"#,
                "unknown export dialect option 'sampling'",
            ),
            (
                r#"SELECT 1 INTO OUTFILE WITH PARAMETERS '{"file": [{"uri": "s3://b/"}, {"uri": "s3://c/"}]}'"#,
                "one location",
            ),
            (
                "SELECT 1 INTO OUTFILE URI 's3://b/' FIELDS TERMINATED BY ',' junk",
                "unknown INTO OUTFILE option JUNK",
            ),
        ] {
            let e = spec(sql).unwrap_err().to_string();
            assert!(e.contains(says), "{sql}: {e}");
        }
    }
}
