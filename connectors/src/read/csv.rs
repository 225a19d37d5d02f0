//! CSV: records come from the `csv` crate (quoting, escapes, terminators, exact line positions),
//! fields are gathered as strings per column and converted to the table's types by [`conform`].
//! Columns map to the table's columns by position, as in MySQL's LOAD DATA.
//!
//! MySQL conventions: an unquoted `\N` is NULL, an empty field is NULL for non-string columns,
//! and the escape character escapes the quote character inside quoted fields.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, StringArray, StringBuilder, Time64MicrosecondArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use bytes::Bytes;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use tarn_catalog::{Compression, FileFormat};

use super::RowOrigin;
use super::memory::Releaser;
use super::{BATCH_ROWS, FileBatches, ReadOptions, counting, decompressed};
use super::{LineGuard, LineTooLong};
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

/// Uncompressed files at least this large are parsed in parallel chunks.
const PARALLEL_MIN_BYTES: usize = 32 << 20;

/// Delimiters `FIELDS TERMINATED BY 'auto'` chooses among.
const AUTO_DELIMITERS: [u8; 4] = [b',', b'|', b'\t', b';'];

/// The delimiter the first lines of `text` use: the candidate found the same number of times
/// (outside quotes) on every one of up to 20 lines, the most often; else the one found on the most
/// lines; `fallback` when none is found at all.
fn sniff_delimiter(text: &[u8], quote: Option<u8>, fallback: u8) -> u8 {
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .take(20)
        .collect();
    // A last line cut short by the end of the sample is not judged.
    let lines = if lines.len() > 1 && !text.ends_with(b"\n") {
        &lines[..lines.len() - 1]
    } else {
        &lines[..]
    };
    let count = |line: &[u8], d: u8| {
        let mut quoted = false;
        line.iter()
            .filter(|&&b| {
                if Some(b) == quote {
                    quoted = !quoted;
                }
                b == d && !quoted
            })
            .count()
    };
    let mut best: Option<(bool, usize, usize, u8)> = None;
    for d in AUTO_DELIMITERS {
        let counts: Vec<usize> = lines.iter().map(|l| count(l, d)).collect();
        let on = counts.iter().filter(|&&c| c > 0).count();
        if on == 0 {
            continue;
        }
        let consistent = counts.iter().all(|&c| c == counts[0]);
        let key = (consistent, on, counts[0], d);
        if best.is_none_or(|b| (key.0, key.1, key.2) > (b.0, b.1, b.2)) {
            best = Some(key);
        }
    }
    best.map_or(fallback, |b| b.3)
}

/// `opts` with `FIELDS TERMINATED BY 'auto'` resolved for this file, from its first 64 KiB of text.
fn resolve_auto(file: &FileEntry, bytes: &Bytes, format: &FileFormat) -> Result<Option<u8>> {
    if !format.field_delimiter_auto {
        return Ok(None);
    }
    let mut head = Vec::new();
    decompressed(file, bytes.clone(), format.compression, None)?
        .take(64 << 10)
        .read_to_end(&mut head)
        .map_err(|e| ConnectorError::data(&file.uri, e))?;
    Ok(Some(sniff_delimiter(
        &head,
        format.enclosed_by,
        format.field_delimiter,
    )))
}

pub(super) fn read(file: &FileEntry, bytes: Bytes, opts: &ReadOptions) -> Result<FileBatches> {
    let resolved;
    let opts = match resolve_auto(file, &bytes, &opts.format)? {
        Some(d) => {
            let mut o = opts.clone();
            o.format.field_delimiter = d;
            o.format.field_delimiter_auto = false;
            resolved = o;
            &resolved
        }
        None => opts,
    };
    let skip = opts.format.skip_lines + u64::from(opts.format.header);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let plain = opts.format.compression.for_file(&file.key) == Compression::None;
    if !plain || bytes.len() < PARALLEL_MIN_BYTES || threads < 2 {
        let input = decompressed(
            file,
            bytes,
            opts.format.compression,
            Some(opts.progress.clone()),
        )?;
        if plain {
            return read_records(file, input, opts, skip, 0, None);
        }
        // Decompressed text is taken from the memory account as it comes, and given back once
        // each batch is built: a file that expands past the limit (or one endless line) stops.
        let (input, releaser) = opts.charged(input);
        return read_records(file, input, opts, skip, 0, releaser.as_ref());
    }
    let ranges = chunk_ranges(&bytes, &opts.format, threads);
    let term = opts.format.line_terminator.unwrap_or(b'\n');
    // The line each chunk starts on, so messages name lines of the whole file.
    let mut first_lines = Vec::with_capacity(ranges.len());
    let mut lines_before = 0u64;
    for r in &ranges {
        first_lines.push(lines_before);
        lines_before += memchr::memchr_iter(term, &bytes[r.clone()]).count() as u64;
    }
    let parts: Vec<Result<FileBatches>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .zip(&first_lines)
            .enumerate()
            .map(|(i, (r, first_line))| {
                let input = counting(bytes.slice(r.clone()), opts.progress.clone());
                let skip = if i == 0 { skip } else { 0 };
                scope.spawn(move || read_records(file, input, opts, skip, *first_line, None))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(ConnectorError::data(&file.uri, "CSV reader panicked")))
            })
            .collect()
    });
    FileBatches::concat(parts)
}

/// Splits `bytes` into about `n` ranges that end just after a line terminator lying outside any
/// quoted field, so every range holds whole records. Quote state is tracked from the start of the
/// file (quote and escape bytes found with memchr), so quoted fields holding line breaks are never
/// cut.
fn chunk_ranges(bytes: &[u8], format: &FileFormat, n: usize) -> Vec<std::ops::Range<usize>> {
    let term = format.line_terminator.unwrap_or(b'\n');
    let len = bytes.len();
    let mut events: Box<dyn Iterator<Item = usize>> = match (format.enclosed_by, format.escaped_by)
    {
        (None, _) => Box::new(std::iter::empty()),
        (Some(q), Some(e)) => Box::new(memchr::memchr2_iter(q, e, bytes)),
        (Some(q), None) => Box::new(memchr::memchr_iter(q, bytes)),
    };
    let mut next_event = events.next();
    let mut in_quote = false;
    let mut skip_next = false;
    // Advances the quote state over every event before `pos`.
    let mut state_at = |pos: usize| {
        while let Some(e) = next_event.filter(|e| *e < pos) {
            if skip_next {
                skip_next = false;
            } else if Some(bytes[e]) == format.escaped_by && format.escaped_by != format.enclosed_by
            {
                // An escape inside quotes takes the next byte literally.
                skip_next = in_quote && e + 1 < len && Some(bytes[e + 1]) == format.enclosed_by;
            } else {
                in_quote = !in_quote;
            }
            next_event = events.next();
        }
        in_quote
    };
    let mut ranges = Vec::with_capacity(n);
    let mut start = 0;
    for i in 1..n {
        let mut candidate = (len * i / n).max(start);
        let end = loop {
            match memchr::memchr(term, &bytes[candidate..]) {
                Some(off) if !state_at(candidate + off) => break Some(candidate + off + 1),
                Some(off) => candidate += off + 1,
                None => break None,
            }
        };
        match end {
            Some(end) if end < len => {
                ranges.push(start..end);
                start = end;
            }
            _ => break,
        }
    }
    ranges.push(start..len);
    ranges
}

/// Reads records from `input`: skips the first `skip` records, numbers lines from
/// `first_line + 1`; after each batch, `releaser` gives back the text read for it.
fn read_records(
    file: &FileEntry,
    input: impl Read,
    opts: &ReadOptions,
    skip: u64,
    first_line: u64,
    releaser: Option<&Releaser>,
) -> Result<FileBatches> {
    let term = opts.format.line_terminator.unwrap_or(b'\n');
    // With the default terminator (any of \r, \n, \r\n), the CSV reader takes a record's
    // position before it consumes the \n of the \r\n that ended the record before: in a CRLF
    // file every record after the first would be numbered a line short. Its first line ending
    // says which the file uses.
    let mut input = BufReader::with_capacity(64 << 10, input);
    let crlf = opts.format.line_terminator.is_none() && {
        let head = input
            .fill_buf()
            .map_err(|e| ConnectorError::data(&file.uri, e))?;
        head.iter()
            .position(|&b| b == b'\n')
            .is_some_and(|i| i > 0 && head[i - 1] == b'\r')
    };
    let mut rdr = reader_builder(&opts.format).from_reader(LineGuard::new(input, term));
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
    let fmt = &opts.format;
    let null_value = fmt.null_value.as_deref().map(str::as_bytes);
    let empty_value = fmt.empty_value.as_deref().map(str::as_bytes);
    let mut out = FileBatches::default();
    let mut rec = csv::ByteRecord::new();
    let mut batch = Batch::new(ncols);
    let mut skipped = 0u64;
    let mut seen_one = false;
    loop {
        let more = rdr
            .read_byte_record(&mut rec)
            .map_err(|e| csv_error(file, e, first_line))?;
        if !more {
            break;
        }
        let after_first = std::mem::replace(&mut seen_one, true);
        if skipped < skip {
            skipped += 1;
            continue;
        }
        let line = first_line
            + rec.position().map(|p| p.line()).unwrap_or(0)
            + u64::from(crlf && after_first);
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
                let field = match fmt.trim_spaces {
                    true => field.trim_ascii(),
                    false => field,
                };
                if field == b"\\N"
                    || null_value == Some(field)
                    || (field.is_empty() && !string_col[i])
                {
                    b.append_null();
                } else if empty_value == Some(field) {
                    b.append_value("");
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
            releaser.inspect(|r| r.release());
        }
    }
    flush(file, &mut batch, opts, &mut out)?;
    releaser.inspect(|r| r.release());
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

/// Applies `DATE FORMAT` / `DATETIME FORMAT` / `TIME FORMAT` (the column's own, else the
/// table's) where they are set; other columns are left for arrow's cast (ISO 8601).
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
    let own = format.column_formats.get(column);
    let date = own
        .and_then(|c| c.date_format.as_ref())
        .or(format.date_format.as_ref());
    let datetime = own
        .and_then(|c| c.timestamp_format.as_ref())
        .or(format.datetime_format.as_ref());
    let time = own
        .and_then(|c| c.time_format.as_ref())
        .or(format.time_format.as_ref());
    if let (DataType::Time64(TimeUnit::Microsecond), Some(f)) = (target, time) {
        let a: Time64MicrosecondArray = (0..strings.len())
            .map(|r| {
                let v = strings.is_valid(r).then(|| strings.value(r))?;
                match NaiveTime::parse_from_str(v, f) {
                    Ok(t) => Some(
                        i64::from(t.num_seconds_from_midnight()) * 1_000_000
                            + i64::from(t.nanosecond() / 1000),
                    ),
                    Err(_) => {
                        fail(r, v, f);
                        None
                    }
                }
            })
            .collect();
        return Arc::new(a);
    }
    match (target, date, datetime) {
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

fn csv_error(file: &FileEntry, e: csv::Error, first_line: u64) -> ConnectorError {
    let line = e.position().map(|p| first_line + p.line());
    let message = match e.into_kind() {
        csv::ErrorKind::Io(io) => {
            if let Some(e) = super::memory::from_io(&io) {
                return e;
            }
            if let Some(long) = LineTooLong::within(&io) {
                return ConnectorError::Data {
                    file: file.uri.clone(),
                    line: Some(first_line + long.line),
                    column: None,
                    message: long.to_string(),
                };
            }
            format!("cannot read: {io}")
        }
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
    let resolved;
    let format = match resolve_auto(file, &bytes, format)? {
        Some(d) => {
            resolved = FileFormat {
                field_delimiter: d,
                field_delimiter_auto: false,
                ..format.clone()
            };
            &resolved
        }
        None => format,
    };
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
        // The same lines in a CRLF file (Windows, Python's csv module), with a quoted line break
        // in the first record: the same numbers.
        let crlf = "1,\"a\r\nz\",2024-01-01\r\nx,b,2024-01-02\r\n3,c\r\n4,d,2024-02-30\r\n";
        let out = read(&entry("bad.csv"), Bytes::from(crlf), &opts(f_crlf(), false)).unwrap();
        let got: Vec<u64> = out.rejected.iter().map(|r| r.line).collect();
        assert_eq!(got, vec![3, 4, 5]);
    }

    #[test]
    fn auto_finds_the_delimiter_the_first_lines_share() {
        for (text, want) in [
            ("a,b,c\n1,2,3\n", b','),
            ("a|b|c\n1|2,5|3\n", b'|'),
            ("a\tb\n1\t2\n3\t4", b'\t'),
            ("a;b\n\"x;y\";2\n", b';'),
            ("\"a,b\"|c\n\"d,e\"|f\n", b'|'),
            ("no delimiter here\n", b'#'),
        ] {
            assert_eq!(
                sniff_delimiter(text.as_bytes(), Some(b'"'), b'#') as char,
                want as char,
                "{text:?}"
            );
        }
        // Read with 'auto': the file's own delimiter.
        let mut f = f_crlf();
        f.field_delimiter_auto = true;
        f.field_delimiter = b'|';
        let text = "1;a;2024-01-01\n2;b;2024-01-02\n";
        let out = read(&entry("auto.csv"), Bytes::from(text), &opts(f, true)).unwrap();
        assert_eq!(out.batches[0].num_rows(), 2);
        assert_eq!(
            out.batches[0]
                .column(0)
                .as_primitive::<Int32Type>()
                .values(),
            &[1, 2]
        );
    }

    fn f_crlf() -> FileFormat {
        let mut f = FileFormat::heatwave(FormatKind::Csv);
        f.field_delimiter = b',';
        f
    }

    #[test]
    fn chunks_end_between_records_even_with_line_breaks_in_quotes() {
        let mut f = FileFormat::heatwave(FormatKind::Csv);
        f.field_delimiter = b',';
        let mut text = String::new();
        for i in 0..500 {
            match i % 4 {
                0 => text.push_str(&format!("{i},\"multi\nline\n{i}\",2024-01-01\n")),
                1 => text.push_str(&format!(
                    "{i},\"escaped \\\" quote, and\ncomma\",2024-01-02\n"
                )),
                2 => text.push_str(&format!("{i},\"doubled \"\" quote\",\n")),
                _ => text.push_str(&format!("{i},plain,2024-01-03\n")),
            }
        }
        let whole = read_records(
            &entry("a.csv"),
            text.as_bytes(),
            &opts(f.clone(), true),
            0,
            0,
            None,
        )
        .unwrap();
        let want =
            &arrow::compute::concat_batches(&whole.batches[0].schema(), &whole.batches).unwrap();
        assert_eq!(want.num_rows(), 500);
        for n in [2, 3, 7, 16] {
            let ranges = chunk_ranges(text.as_bytes(), &f, n);
            assert_eq!(ranges.first().unwrap().start, 0);
            assert_eq!(ranges.last().unwrap().end, text.len());
            assert!(ranges.len() > 1, "{n} chunks asked, one made");
            let mut batches = Vec::new();
            for r in ranges {
                let part = read_records(
                    &entry("a.csv"),
                    &text.as_bytes()[r],
                    &opts(f.clone(), true),
                    0,
                    0,
                    None,
                )
                .unwrap();
                batches.extend(part.batches);
            }
            let got = arrow::compute::concat_batches(&want.schema(), &batches).unwrap();
            assert_eq!(&got, want, "{n} chunks");
        }
    }

    #[test]
    fn large_files_parse_in_parallel_with_whole_file_line_numbers() {
        let mut f = FileFormat::heatwave(FormatKind::Csv);
        f.field_delimiter = b',';
        let rows = PARALLEL_MIN_BYTES / 19 + 1000;
        let mut text = "7,plain,2024-01-03\n".repeat(rows);
        text.push_str("8,bad,2024-99-99\n");
        let o = opts(f.clone(), true);
        let e = read(&entry("big.csv"), Bytes::from(text.clone()), &o)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "file:///t/big.csv, line {}, column day: value '2024-99-99' is not a valid DATE",
                rows + 1
            )
        );
        let o = opts(f, false);
        let out = read(&entry("big.csv"), Bytes::from(text.clone()), &o).unwrap();
        assert_eq!(
            out.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            rows
        );
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(
            o.progress.load(std::sync::atomic::Ordering::Relaxed),
            text.len() as u64
        );
    }
}
