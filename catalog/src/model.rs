//! The table definition as the catalog keeps it. Everything here is plain data (serde), free of
//! secrets: locations are kept as written, credentials live in the service's config only.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `database.table`, folded to lower case as MySQL does with `lower_case_table_names=1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableKey {
    pub database: String,
    pub table: String,
}

impl TableKey {
    pub fn new(database: impl AsRef<str>, table: impl AsRef<str>) -> Self {
        Self {
            database: database.as_ref().to_lowercase(),
            table: table.as_ref().to_lowercase(),
        }
    }
}

impl fmt::Display for TableKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub key: TableKey,
    /// Declared columns; `None` when the schema is inferred from the files at load time.
    pub columns: Option<Vec<ColumnDef>>,
    pub format: FileFormat,
    pub files: Vec<FileSpec>,
    pub options: TableOptions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Lower-cased column name.
    pub name: String,
    /// The MySQL type as written (normalised), e.g. `DECIMAL(15,2)`; mapped to Arrow by [`crate::types`].
    pub sql_type: String,
    pub nullable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FormatKind {
    Csv,
    Parquet,
    Avro,
    Json,
    Delta,
}

impl FormatKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "csv" => Self::Csv,
            "parquet" => Self::Parquet,
            "avro" => Self::Avro,
            "json" | "ndjson" => Self::Json,
            "delta" | "deltatable" => Self::Delta,
            _ => return None,
        })
    }
}

impl fmt::Display for FormatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Csv => "csv",
            Self::Parquet => "parquet",
            Self::Avro => "avro",
            Self::Json => "json",
            Self::Delta => "delta",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Decided per file by its name (`.gz`, `.bz2`, `.zst`); no suffix means uncompressed.
    #[default]
    Auto,
    Gzip,
    Bzip2,
    Zstd,
    /// A zip archive: its entries, one after another.
    Zip,
    None,
}

impl Compression {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "auto" => Self::Auto,
            "gzip" | "gz" => Self::Gzip,
            "bzip2" | "bz2" => Self::Bzip2,
            "zstd" | "zst" => Self::Zstd,
            "zip" => Self::Zip,
            "none" | "uncompressed" => Self::None,
            _ => return None,
        })
    }

    /// The codec for one file: `Auto` looks at the file name.
    pub fn for_file(self, path: &str) -> Self {
        if self != Self::Auto {
            return self;
        }
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".gz") || lower.ends_with(".gzip") {
            Self::Gzip
        } else if lower.ends_with(".bz2") {
            Self::Bzip2
        } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
            Self::Zstd
        } else if lower.ends_with(".zip") {
            Self::Zip
        } else {
            Self::None
        }
    }
}

/// How the files are written. The CSV fields matter only for CSV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFormat {
    pub kind: FormatKind,
    pub compression: Compression,
    /// `FIELDS TERMINATED BY 'auto'`: each file's delimiter is found from its first lines
    /// (`field_delimiter` is then only the fallback).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub field_delimiter_auto: bool,
    /// First line is a header (skipped; not used for names).
    pub header: bool,
    pub field_delimiter: u8,
    /// Quote character; `None` disables quoting.
    pub enclosed_by: Option<u8>,
    pub escaped_by: Option<u8>,
    /// `None` means `\n` with an optional preceding `\r`.
    pub line_terminator: Option<u8>,
    /// Lines skipped at the start of every file, after which the header (if any) is read.
    pub skip_lines: u64,
    /// chrono format strings for DATE and DATETIME/TIMESTAMP columns; ISO 8601 when absent.
    pub date_format: Option<String>,
    pub datetime_format: Option<String>,
    /// chrono format for TIME columns (`TIME FORMAT`, `time_format`); `HH:MM:SS[.ffffff]` when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_format: Option<String>,
    /// CSV: a field with this text is NULL (besides `\N`), HeatWave's `null_value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_value: Option<String>,
    /// CSV: a field with this text is the empty string, HeatWave's `empty_value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_value: Option<String>,
    /// CSV: leading and trailing spaces of every field are dropped, HeatWave's `trim_spaces`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trim_spaces: bool,
    /// Formats of single columns (a column's `ENGINE_ATTRIBUTE`), over the table's.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub column_formats: std::collections::BTreeMap<String, ColumnFormats>,
    /// Parquet: how file columns meet the table's (HeatWave's `match_columns_by`).
    #[serde(default, skip_serializing_if = "MatchColumns::is_default")]
    pub match_columns_by: MatchColumns,
    /// Whether a file may lack some of the table's columns (they read as NULL). Tarn's default
    /// is yes (files of a table gain columns over time); `allow_missing_columns: false` makes a
    /// missing column fail the load, naming it.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub allow_missing_columns: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

/// The formats a column's `ENGINE_ATTRIBUTE` sets for it (chrono formats).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnFormats {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_format: Option<String>,
}

/// How a Parquet file's columns are matched with the table's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchColumns {
    /// By name, any case (the default).
    #[default]
    NameCaseInsensitive,
    /// By name, exactly.
    NameCaseSensitive,
    /// By position: the file's first column is the table's first.
    Position,
}

impl MatchColumns {
    fn is_default(&self) -> bool {
        *self == Self::NameCaseInsensitive
    }

    /// HeatWave's names: `name_case_insensitive`, `name_case_sensitive`, `position` (or `order`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "name_case_insensitive" | "name" => Self::NameCaseInsensitive,
            "name_case_sensitive" => Self::NameCaseSensitive,
            "position" | "order" => Self::Position,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NameCaseInsensitive => "name_case_insensitive",
            Self::NameCaseSensitive => "name_case_sensitive",
            Self::Position => "position",
        }
    }
}

impl FileFormat {
    /// Defaults as HeatWave Lakehouse has them: `|`-separated, `"`-enclosed, `\`-escaped, no header.
    pub fn heatwave(kind: FormatKind) -> Self {
        Self {
            kind,
            compression: Compression::Auto,
            field_delimiter_auto: false,
            header: false,
            field_delimiter: b'|',
            enclosed_by: Some(b'"'),
            escaped_by: Some(b'\\'),
            line_terminator: None,
            skip_lines: 0,
            date_format: None,
            datetime_format: None,
            time_format: None,
            null_value: None,
            empty_value: None,
            trim_spaces: false,
            column_formats: Default::default(),
            match_columns_by: MatchColumns::default(),
            allow_missing_columns: true,
        }
    }

    /// Defaults of DataFusion's `STORED AS` form: comma-separated with a header.
    pub fn datafusion(kind: FormatKind) -> Self {
        Self {
            field_delimiter: b',',
            header: true,
            escaped_by: None,
            ..Self::heatwave(kind)
        }
    }
}

/// One `URI '...' [PATTERN '...']` entry of `FILES = (...)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    pub uri: String,
    /// Regular expression that object paths below the URI must match.
    pub pattern: Option<String>,
    /// Region named by the definition itself (the ENGINE_ATTRIBUTE form's `region`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl FileSpec {
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            pattern: None,
            region: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableOptions {
    pub allow_missing_files: bool,
    pub strict_load: bool,
    #[serde(default, with = "opt_duration")]
    pub refresh_interval: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub max_staleness: Option<Duration>,
    /// Columns whose order the rows of each file take when loaded (HeatWave's data placement
    /// key), lower-cased, first key first. Empty: rows stay in file order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement_key: Vec<String>,
    /// `PRIMARY KEY` and `UNIQUE` keys declared with the columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyDef>,
    /// `VERIFY_KEY_CONSTRAINTS = 1` (HeatWave's `check_constraints`): every load and refresh
    /// checks the keys; otherwise they are declarations only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify_keys: bool,
    /// On a cluster's worker, for a Delta table: the data files (URIs) of the table that are this
    /// worker's part; the others in the log are left to the other workers. Not part of the DDL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_files: Option<Vec<String>>,
}

/// A declared key: its columns (lower case) hold no two equal rows. A primary key's columns are
/// NOT NULL; a unique key lets rows with a NULL in it repeat, as in MySQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDef {
    pub primary: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub columns: Vec<String>,
}

impl KeyDef {
    /// `PRIMARY KEY (a, b)` or `UNIQUE KEY name (a)`, as DDL and errors name it.
    pub fn describe(&self) -> String {
        let kind = if self.primary {
            "PRIMARY KEY"
        } else {
            "UNIQUE KEY"
        };
        let name = self
            .name
            .as_ref()
            .map(|n| format!(" `{n}`"))
            .unwrap_or_default();
        format!("{kind}{name} ({})", self.columns.join(", "))
    }
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            allow_missing_files: false,
            strict_load: true,
            refresh_interval: None,
            max_staleness: None,
            placement_key: Vec::new(),
            keys: Vec::new(),
            verify_keys: false,
            part_files: None,
        }
    }
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let v: Option<String> = Option::deserialize(d)?;
        v.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Replaces the token of a pre-authenticated request path (`p/<token>/n/...`) with `<redacted>`.
pub fn redact_path(key: &str) -> String {
    let mut parts: Vec<&str> = key.split('/').collect();
    for i in 0..parts.len().saturating_sub(2) {
        if parts[i] == "p" && parts[i + 2] == "n" && (i == 0 || parts[i - 1].is_empty()) {
            parts[i + 1] = "<redacted>";
        }
    }
    parts.join("/")
}

/// Any text (an error message, a store's answer) with every pre-authenticated request token in
/// it redacted: the segment after `/p/` wherever `/n/` follows it.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("/p/") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let end = rest
            .find(['/', ' ', '"', '\'', '?', ')'])
            .unwrap_or(rest.len());
        if rest[end..].starts_with("/n/") && end > 0 {
            out.push_str("<redacted>");
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// A URI as it may be shown: pre-authenticated request tokens redacted.
pub fn redact_uri(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) if scheme.starts_with("http") => match rest.split_once('/') {
            Some((host, path)) => format!("{scheme}://{host}/{}", redact_path(path)),
            None => uri.to_string(),
        },
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted_wherever_they_stand_in_a_text() {
        let t = "Error performing GET https://objectstorage.r.oraclecloud.com/p/SeCrEt-1/n/ns/b/bkt/o/a.csv in 30s (timeout); \
                 retried /p/Other_2/n/x";
        let r = redact_text(t);
        assert!(!r.contains("SeCrEt-1") && !r.contains("Other_2"), "{r}");
        assert_eq!(r.matches("/p/<redacted>/n/").count(), 2, "{r}");
        // Not a token: a p/ segment without n/ after it stays.
        assert_eq!(redact_text("s3://b/p/q/data"), "s3://b/p/q/data");
        assert_eq!(redact_text("/p/"), "/p/");
    }
}
