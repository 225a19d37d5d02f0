//! CSV: records come from the `csv` crate (quoting, escapes, terminators, exact line positions),
//! fields are gathered as strings per column and converted to the table's types by [`conform`].
//! Columns map to the table's columns by position, as in MySQL's LOAD DATA.
//!
//! MySQL conventions: an unquoted `\N` is NULL, an empty field is NULL for non-string columns,
//! and the escape character escapes the quote character inside quoted fields.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use bytes::Bytes;
use chrono::{NaiveDate, NaiveDateTime};
use tarn_catalog::FileFormat;

use super::RowOrigin;
use super::{BATCH_ROWS, FileBatches, ReadOptions, decompressed};
use crate::error::{ConnectorError, Result};
use crate::listing::FileEntry;

fn reader_builder(format: &FileFormat) -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false)
        .flexible(true)
        .delimiter(format.field_delimiter)
        .double_quote(true)
        .escape(format.escaped_by)
        .terminator(match format.line_terminator {
            Some(t) => csv::Terminator::Any(t),
            None => csv::Terminator::CRLF,
        });
    match format.enclosed_by {
        Some(q) => b.quote(q),
        None => b.quoting(false),
    };
    b
}

pub(super) fn read(file: &FileEntry, bytes: Bytes, opts: &ReadOptions) -> Result<FileBatches> {
    let input = decompressed(
        file,
        bytes,
        opts.format.compression,
        Some(opts.progress.clone()),
    )?;
    let mut rdr = reader_builder(&opts.format).from_reader(input);
    let target = &opts.schema;
    let ncols = target.fields().len();
    let string_col: Vec<bool> = target
        .fields()
        .iter()
        .map(|f| {
            matches!(
                f.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        })
        .collect();
    let skip = opts.format.skip_lines + u64::from(opts.format.header);
    let mut out = FileBatches::default();
    let mut rec = csv::ByteRecord::new();
    let mut batch = Batch::new(ncols);
    let mut skipped = 0u64;
    loop {
        let more = rdr
            .read_byte_record(&mut rec)
            .map_err(|e| csv_error(file, e))?;
        if !more {
            break;
        }
        if skipped < skip {
            skipped += 1;
            continue;
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let row = batch.lines.len();
        batch.lines.push(line);
        if rec.len() != ncols {
            batch.bad.push((
                row,
                None,
                format!("expected {ncols} fields, found {}", rec.len()),
            ));
            batch.cols.iter_mut().for_each(|c| c.append_null());
        } else {
            for (i, field) in rec.iter().enumerate() {
                let b = &mut batch.cols[i];
                if field == b"\\N" || (field.is_empty() && !string_col[i]) {
                    b.append_null();
                } else {
                    match std::str::from_utf8(field) {
                        Ok(s) => b.append_value(s),
                        Err(_) => {
                            b.append_null();
                            batch.bad.push((
                                row,
                                Some(target.field(i).name().clone()),
                                "invalid UTF-8".into(),
                            ));
                        }
                    }
                }
            }
        }
        if batch.lines.len() == BATCH_ROWS {
            flush(file, &mut batch, opts, &mut out)?;
        }
    }
    flush(file, &mut batch, opts, &mut out)?;
    Ok(out)
}

struct Batch {
    cols: Vec<StringBuilder>,
    lines: Vec<u64>,
    bad: Vec<(usize, Option<String>, String)>,
}

impl Batch {
    fn new(ncols: usize) -> Self {
        Self {
            cols: (0..ncols)
                .map(|_| StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 8))
                .collect(),
            lines: Vec::with_capacity(BATCH_ROWS),
            bad: Vec::new(),
        }
    }
}

fn flush(
    file: &FileEntry,
    batch: &mut Batch,
    opts: &ReadOptions,
    out: &mut FileBatches,
) -> Result<()> {
    let n = batch.lines.len();
    if n == 0 {
        return Ok(());
    }
    let mut bad = std::mem::take(&mut batch.bad);
    let cols: Vec<Option<ArrayRef>> = batch
        .cols
        .iter_mut()
        .zip(opts.schema.fields())
        .map(|(b, f)| {
            let strings = b.finish();
            Some(custom_formats(
                strings,
                f.data_type(),
                f.name(),
                &opts.format,
                &mut bad,
            ))
        })
        .collect();
    let lines = std::mem::take(&mut batch.lines);
    let line = |r: usize| lines[r];
    let origin = RowOrigin {
        file: &file.uri,
        line: &line,
    };
    out.push(cols, n, &origin, opts, bad)?;
    batch.lines = Vec::with_capacity(BATCH_ROWS);
    Ok(())
}

/// Applies `DATE FORMAT` / `DATETIME FORMAT` where the table sets them; other columns are left for
/// arrow's cast (ISO 8601).
fn custom_formats(
    strings: StringArray,
    target: &DataType,
    column: &str,
    format: &FileFormat,
    bad: &mut Vec<(usize, Option<String>, String)>,
) -> ArrayRef {
    let mut fail = |r: usize, v: &str, f: &str| {
        bad.push((
            r,
            Some(column.to_string()),
            format!("value '{v}' does not match the format '{f}'"),
        ));
    };
    match (target, &format.date_format, &format.datetime_format) {
        (DataType::Date32, Some(f), _) => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
            let a: Date32Array = (0..strings.len())
                .map(|r| {
                    let v = strings.is_valid(r).then(|| strings.value(r))?;
                    match NaiveDate::parse_from_str(v, f) {
                        Ok(d) => Some((d - epoch).num_days() as i32),
                        Err(_) => {
                            fail(r, v, f);
                            None
                        }
                    }
                })
                .collect();
            Arc::new(a)
        }
        (DataType::Timestamp(TimeUnit::Microsecond, tz), _, Some(f)) => {
            let a: TimestampMicrosecondArray = (0..strings.len())
                .map(|r| {
                    let v = strings.is_valid(r).then(|| strings.value(r))?;
                    match NaiveDateTime::parse_from_str(v, f) {
                        Ok(d) => Some(d.and_utc().timestamp_micros()),
                        Err(_) => {
                            fail(r, v, f);
                            None
                        }
                    }
                })
                .collect();
            Arc::new(a.with_timezone_opt(tz.clone()))
        }
        _ => Arc::new(strings),
    }
}

fn csv_error(file: &FileEntry, e: csv::Error) -> ConnectorError {
    let line = e.position().map(|p| p.line());
    let message = match e.into_kind() {
        csv::ErrorKind::Io(io) => format!("cannot read: {io}"),
        other => format!("{other:?}"),
    };
    ConnectorError::Data {
        file: file.uri.clone(),
        line,
        column: None,
        message,
    }
}

/// Infers column types from the first 1,000 records with arrow-csv's inference; names come from the
/// header when there is one, else `c1`, `c2`, ...
pub(super) fn infer(file: &FileEntry, bytes: Bytes, format: &FileFormat) -> Result<SchemaRef> {
    let mut input = BufReader::new(decompressed(file, bytes, format.compression, None)?);
    let term = format.line_terminator.unwrap_or(b'\n');
    let mut sink = Vec::new();
    for _ in 0..format.skip_lines {
        sink.clear();
        input
            .read_until(term, &mut sink)
            .map_err(|e| ConnectorError::data(&file.uri, e))?;
    }
    let mut f = arrow::csv::reader::Format::default()
        .with_header(format.header)
        .with_delimiter(format.field_delimiter);
    if let Some(q) = format.enclosed_by {
        f = f.with_quote(q);
    }
    if let Some(e) = format.escaped_by {
        f = f.with_escape(e);
    }
    if let Some(t) = format.line_terminator {
        f = f.with_terminator(t);
    }
    let (schema, _) = f
        .infer_schema(input.take(u64::MAX), Some(1000))
        .map_err(|e| ConnectorError::data(&file.uri, format!("cannot infer a schema: {e}")))?;
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, fl)| {
            let name = if format.header {
                fl.name().clone()
            } else {
                format!("c{}", i + 1)
            };
            let t = match fl.data_type() {
                DataType::Null => DataType::Utf8,
                DataType::Timestamp(_, tz) => {
                    DataType::Timestamp(TimeUnit::Microsecond, tz.clone())
                }
                other => other.clone(),
            };
            arrow::datatypes::Field::new(name, t, true)
        })
        .collect();
    Ok(Arc::new(arrow::datatypes::Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use arrow::array::AsArray;
    use arrow::datatypes::{Date32Type, Field, Int32Type, Schema};
    use tarn_catalog::{Compression, FormatKind};

    use super::*;

    fn entry(name: &str) -> FileEntry {
        FileEntry {
            uri: format!("file:///t/{name}"),
            key: format!("t/{name}"),
            size: 0,
            etag: None,
            last_modified: Default::default(),
        }
    }

    fn opts(format: FileFormat, strict: bool) -> ReadOptions {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("day", DataType::Date32, true),
        ]));
        ReadOptions::new(format, schema, strict)
    }

    #[test]
    fn options_delimiter_enclosure_escape_terminator_ignore_and_date_format() {
        let mut f = FileFormat::heatwave(FormatKind::Csv);
        f.field_delimiter = b';';
        f.enclosed_by = Some(b'\'');
        f.line_terminator = Some(b'\r');
        f.skip_lines = 2;
        f.header = true;
        f.date_format = Some("%d/%m/%Y".into());
        let text = "junk line 1\rjunk line 2\rid;name;day\r1;'a;b';31/12/2024\r2;\\N;01/02/2023\r3;'it\\'s';\r";
        let o = opts(f, true);
        let out = read(&entry("x.csv"), Bytes::from(text), &o).unwrap();
        assert_eq!(
            o.progress.load(std::sync::atomic::Ordering::Relaxed),
            text.len() as u64,
            "progress counts the whole file"
        );
        let b = &out.batches[0];
        assert_eq!(b.num_rows(), 3);
        assert_eq!(b.column(0).as_primitive::<Int32Type>().values(), &[1, 2, 3]);
        let names = b.column(1).as_string::<i32>();
        assert_eq!(names.value(0), "a;b");
        assert!(names.is_null(1), "\\N is NULL");
        assert_eq!(names.value(2), "it's");
        let days = b.column(2).as_primitive::<Date32Type>();
        assert_eq!(days.value(0), 20088); // 2024-12-31
        assert!(days.is_null(2), "empty date is NULL");
    }

    #[test]
    fn compressed_files_by_name_or_option() {
        let text = b"1,x,2024-01-01\n2,y,2024-01-02\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(text).unwrap();
        let zst = zstd::encode_all(&text[..], 3).unwrap();
        let mut f = FileFormat::heatwave(FormatKind::Csv);
        f.field_delimiter = b',';
        for (name, bytes, compression) in [
            ("a.csv.gz", gz.finish().unwrap(), Compression::Auto),
            ("a.csv.bz2", bz.finish().unwrap(), Compression::Auto),
            ("a.data", zst, Compression::Zstd),
        ] {
            f.compression = compression;
            let out = read(&entry(name), Bytes::from(bytes), &opts(f.clone(), true)).unwrap();
            assert_eq!(out.batches[0].num_rows(), 2, "{name}");
            assert_eq!(
                out.batches[0].column(1).as_string::<i32>().value(1),
                "y",
                "{name}"
            );
        }
    }

    #[test]
    fn strict_error_and_rejected_rows_name_file_line_and_column() {
        let mut f = FileFormat::heatwave(FormatKind::Csv);
        f.field_delimiter = b',';
        let text = "1,a,2024-01-01\nx,b,2024-01-02\n3,c\n4,d,2024-02-30\n5,e,2024-01-05\n";
        let e = read(&entry("bad.csv"), Bytes::from(text), &opts(f.clone(), true))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "file:///t/bad.csv, line 2, column id: value 'x' is not a valid INT"
        );
        let out = read(&entry("bad.csv"), Bytes::from(text), &opts(f, false)).unwrap();
        assert_eq!(
            out.batches[0]
                .column(0)
                .as_primitive::<Int32Type>()
                .values(),
            &[1, 5]
        );
        let got: Vec<(u64, Option<&str>)> = out
            .rejected
            .iter()
            .map(|r| (r.line, r.column.as_deref()))
            .collect();
        assert_eq!(got, vec![(2, Some("id")), (3, None), (4, Some("day"))]);
        assert_eq!(out.rejected[1].reason, "expected 3 fields, found 2");
    }
}
