//! MySQL column types to Arrow types. The type text is parsed by sqlparser's own type grammar.

use arrow::datatypes::{DataType as Arrow, Field, Schema, SchemaRef, TimeUnit};
use datafusion::sql::sqlparser::ast::{CharacterLength, DataType as Sql, ExactNumberInfo};
use datafusion::sql::sqlparser::dialect::MySqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use std::sync::Arc;

use crate::error::{CatalogError, Result};
use crate::model::ColumnDef;

/// The Arrow extension type (canonical) that marks a text column holding JSON documents.
pub const JSON_EXTENSION: &str = "arrow.json";
const EXTENSION_KEY: &str = "ARROW:extension:name";

/// A JSON column: UTF-8 text marked as JSON, so that DESCRIBE, the MySQL door and exports call it
/// JSON.
pub fn json_field(name: &str, nullable: bool) -> Field {
    Field::new(name, Arrow::Utf8, nullable).with_metadata(
        [(EXTENSION_KEY.to_string(), JSON_EXTENSION.to_string())]
            .into_iter()
            .collect(),
    )
}

/// Whether `field` is a JSON column ([`json_field`]).
pub fn is_json(field: &Field) -> bool {
    field.metadata().get(EXTENSION_KEY).map(String::as_str) == Some(JSON_EXTENSION)
}

/// Whether values of `t` are nested (lists, structs, maps): Tarn keeps those as JSON documents.
pub fn is_nested(t: &Arrow) -> bool {
    matches!(
        t,
        Arrow::List(_)
            | Arrow::LargeList(_)
            | Arrow::FixedSizeList(..)
            | Arrow::ListView(_)
            | Arrow::LargeListView(_)
            | Arrow::Struct(_)
            | Arrow::Map(..)
            | Arrow::Union(..)
    )
}

/// `schema` with its nested columns as JSON columns (what a load keeps of them).
pub fn nested_as_json(schema: &SchemaRef) -> SchemaRef {
    if !schema.fields().iter().any(|f| is_nested(f.data_type())) {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match is_nested(f.data_type()) {
            true => json_field(f.name(), f.is_nullable()),
            false => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Maps one parsed MySQL type to Arrow; `None` when Tarn has no mapping for it.
pub fn sql_to_arrow(t: &Sql) -> Option<Arrow> {
    Some(match t {
        Sql::Bool | Sql::Boolean => Arrow::Boolean,
        Sql::TinyInt(_) => Arrow::Int8,
        Sql::TinyIntUnsigned(_) | Sql::UTinyInt => Arrow::UInt8,
        Sql::SmallInt(_) | Sql::Int2(_) => Arrow::Int16,
        Sql::SmallIntUnsigned(_) | Sql::USmallInt | Sql::Int2Unsigned(_) => Arrow::UInt16,
        Sql::MediumInt(_) | Sql::Int(_) | Sql::Integer(_) | Sql::Int4(_) => Arrow::Int32,
        Sql::MediumIntUnsigned(_)
        | Sql::IntUnsigned(_)
        | Sql::IntegerUnsigned(_)
        | Sql::Int4Unsigned(_) => Arrow::UInt32,
        Sql::BigInt(_) | Sql::Int8(_) | Sql::Int64 => Arrow::Int64,
        Sql::BigIntUnsigned(_) | Sql::UBigInt | Sql::Int8Unsigned(_) | Sql::UInt64 => Arrow::UInt64,
        Sql::Float(info) | Sql::FloatUnsigned(info) => match info {
            // MySQL: FLOAT(p) with p > 24 is a DOUBLE.
            ExactNumberInfo::Precision(p) if *p > 24 => Arrow::Float64,
            _ => Arrow::Float32,
        },
        Sql::Float4 | Sql::Float32 => Arrow::Float32,
        Sql::Double(_)
        | Sql::DoubleUnsigned(_)
        | Sql::DoublePrecision
        | Sql::DoublePrecisionUnsigned
        | Sql::Real
        | Sql::RealUnsigned
        | Sql::Float8
        | Sql::Float64 => Arrow::Float64,
        Sql::Decimal(info)
        | Sql::DecimalUnsigned(info)
        | Sql::Numeric(info)
        | Sql::Dec(info)
        | Sql::DecUnsigned(info) => {
            let (p, s) = match info {
                ExactNumberInfo::None => (10, 0),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
            };
            let (p, s) = (u8::try_from(p).ok()?, i8::try_from(s).ok()?);
            if p == 0 || p > 76 || s as i16 > p as i16 {
                return None;
            }
            if p <= 38 {
                Arrow::Decimal128(p, s)
            } else {
                Arrow::Decimal256(p, s)
            }
        }
        Sql::Char(_)
        | Sql::Character(_)
        | Sql::Varchar(_)
        | Sql::Nvarchar(_)
        | Sql::CharacterVarying(_)
        | Sql::CharVarying(_)
        | Sql::Text
        | Sql::TinyText
        | Sql::MediumText
        | Sql::LongText
        | Sql::String(_)
        | Sql::JSON
        | Sql::Uuid
        | Sql::Enum(..)
        | Sql::Set(_) => Arrow::Utf8,
        Sql::Binary(_)
        | Sql::Varbinary(_)
        | Sql::Blob(_)
        | Sql::TinyBlob
        | Sql::MediumBlob
        | Sql::LongBlob
        | Sql::Bytea
        | Sql::Bytes(_) => Arrow::Binary,
        Sql::Date => Arrow::Date32,
        Sql::Datetime(_) | Sql::Timestamp(..) | Sql::TimestampNtz(_) => {
            Arrow::Timestamp(TimeUnit::Microsecond, None)
        }
        Sql::Time(..) => Arrow::Time64(TimeUnit::Microsecond),
        Sql::Custom(name, _) if name.to_string().eq_ignore_ascii_case("year") => Arrow::Int16,
        Sql::Bit(_) => Arrow::UInt64,
        _ => return None,
    })
}

/// Parses a type as written in DDL (`DECIMAL(15,2)`, `varchar(25)`) into its Arrow type.
pub fn parse_sql_type(column: &str, text: &str) -> Result<Arrow> {
    let unsupported = || CatalogError::UnsupportedType {
        column: column.to_string(),
        sql_type: text.to_string(),
    };
    let dialect = MySqlDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|_| unsupported())?;
    let t = parser.parse_data_type().map_err(|_| unsupported())?;
    sql_to_arrow(&t).ok_or_else(unsupported)
}

/// The Arrow schema of declared columns.
pub fn schema_of(columns: &[ColumnDef]) -> Result<SchemaRef> {
    let fields = columns
        .iter()
        .map(|c| {
            let t = parse_sql_type(&c.name, &c.sql_type)?;
            Ok(match c.sql_type.trim().eq_ignore_ascii_case("json") {
                true => json_field(&c.name, c.nullable),
                false => Field::new(&c.name, t, c.nullable),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// Column definitions for an Arrow schema (an inferred one): the inverse of [`schema_of`].
pub fn columns_of(schema: &Schema) -> Vec<ColumnDef> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnDef {
            name: f.name().clone(),
            sql_type: field_sql_name(f),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// The MySQL type of a column: JSON for JSON and nested columns, else [`arrow_to_sql_name`].
pub fn field_sql_name(f: &Field) -> String {
    match is_json(f) || is_nested(f.data_type()) {
        true => "JSON".into(),
        false => arrow_to_sql_name(f.data_type()),
    }
}

/// The MySQL name for an Arrow type, as DESCRIBE shows columns of an inferred schema.
pub fn arrow_to_sql_name(t: &Arrow) -> String {
    match t {
        Arrow::Boolean => "BOOLEAN".into(),
        Arrow::Int8 => "TINYINT".into(),
        Arrow::Int16 => "SMALLINT".into(),
        Arrow::Int32 => "INT".into(),
        Arrow::Int64 => "BIGINT".into(),
        Arrow::UInt8 => "TINYINT UNSIGNED".into(),
        Arrow::UInt16 => "SMALLINT UNSIGNED".into(),
        Arrow::UInt32 => "INT UNSIGNED".into(),
        Arrow::UInt64 => "BIGINT UNSIGNED".into(),
        Arrow::Float16 | Arrow::Float32 => "FLOAT".into(),
        Arrow::Float64 => "DOUBLE".into(),
        Arrow::Decimal32(p, s)
        | Arrow::Decimal64(p, s)
        | Arrow::Decimal128(p, s)
        | Arrow::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        Arrow::Utf8 | Arrow::LargeUtf8 | Arrow::Utf8View => "LONGTEXT".into(),
        Arrow::Binary | Arrow::LargeBinary | Arrow::BinaryView | Arrow::FixedSizeBinary(_) => {
            "LONGBLOB".into()
        }
        Arrow::Date32 | Arrow::Date64 => "DATE".into(),
        Arrow::Timestamp(_, None) => "DATETIME(6)".into(),
        Arrow::Timestamp(_, Some(_)) => "TIMESTAMP(6)".into(),
        Arrow::Time32(_) | Arrow::Time64(_) => "TIME(6)".into(),
        other => other.to_string(),
    }
}

/// Keeps `VARCHAR(25)` readable when normalising a parsed type back to text.
pub fn sql_type_text(t: &Sql) -> String {
    match t {
        Sql::Varchar(Some(CharacterLength::IntegerLength { length, .. })) => {
            format!("VARCHAR({length})")
        }
        other => other.to_string().to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_mysql_types() {
        let cases = [
            ("INT", Arrow::Int32),
            ("bigint", Arrow::Int64),
            ("DECIMAL(15,2)", Arrow::Decimal128(15, 2)),
            ("DECIMAL", Arrow::Decimal128(10, 0)),
            ("DECIMAL(50,10)", Arrow::Decimal256(50, 10)),
            ("DOUBLE", Arrow::Float64),
            ("FLOAT", Arrow::Float32),
            ("VARCHAR(25)", Arrow::Utf8),
            ("LONGTEXT", Arrow::Utf8),
            ("DATE", Arrow::Date32),
            ("DATETIME", Arrow::Timestamp(TimeUnit::Microsecond, None)),
            ("TIMESTAMP", Arrow::Timestamp(TimeUnit::Microsecond, None)),
            ("TIME", Arrow::Time64(TimeUnit::Microsecond)),
            ("BOOLEAN", Arrow::Boolean),
            ("TINYINT", Arrow::Int8),
            ("INT UNSIGNED", Arrow::UInt32),
        ];
        for (text, want) in cases {
            assert_eq!(parse_sql_type("c", text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn unknown_type_names_column_and_type() {
        let err = parse_sql_type("geo", "GEOMETRY").unwrap_err().to_string();
        assert_eq!(err, "unsupported column type GEOMETRY for column geo");
    }
}
