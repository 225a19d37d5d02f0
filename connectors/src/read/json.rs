//! Newline-delimited JSON: arrow-json decodes straight into the table's types, a batch of lines at
//! a time; a batch that fails is decoded again line by line to single out the bad lines.
//! Keys match the table's column names case-insensitively; keys the table lacks are ignored.

use std::io::{BufRead, BufReader};
use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::json::ReaderBuilder;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use tarn_catalog::FileFormat;
use tarn_catalog::types::is_json;

use super::RowOrigin;
use super::{BATCH_ROWS, FileBatches, LineGuard, LineTooLong, ReadOptions, decompressed};
use crate::error::{ConnectorError, Result};
use crate::listing::FileEntry;

pub(super) fn infer(file: &FileEntry, bytes: Bytes, format: &FileFormat) -> Result<SchemaRef> {
    let input = BufReader::new(decompressed(file, bytes, format.compression, None)?);
    let (schema, _) = arrow::json::reader::infer_json_schema(input, Some(1000))
        .map_err(|e| ConnectorError::data(&file.uri, format!("cannot infer a schema: {e}")))?;
    Ok(Arc::new(schema))
}

pub(super) fn read(file: &FileEntry, bytes: Bytes, opts: &ReadOptions) -> Result<FileBatches> {
    // Lines are read a batch at a time; their text is taken from the memory account as it is
    // decompressed and given back once the batch is built, so a file that expands past the limit
    // (or one endless line) stops.
    let (input, releaser) = opts.charged(decompressed(file, bytes, opts.format.compression, None)?);
    let mut input = BufReader::new(LineGuard::new(input, b'\n'));
    let mut out = FileBatches::default();
    let mut schema = None;
    // The batch's lines back to back, and where each is (with its line number).
    let mut text: Vec<u8> = Vec::new();
    let mut lines: Vec<(u64, std::ops::Range<usize>)> = Vec::with_capacity(BATCH_ROWS);
    let mut line = 0u64;
    loop {
        let start = text.len();
        let n = input
            .read_until(b'\n', &mut text)
            .map_err(|e| read_error(file, &e, line + 1))?;
        if n == 0 {
            break;
        }
        line += 1;
        let end = text.len() - usize::from(text.ends_with(b"\n"));
        if text[start..end].iter().all(u8::is_ascii_whitespace) {
            text.truncate(start);
            continue;
        }
        lines.push((line, start..end));
        if lines.len() == BATCH_ROWS {
            decode_lines(file, &text, &lines, &mut schema, opts, &mut out)?;
            text.clear();
            lines.clear();
            if let Some(r) = &releaser {
                r.release();
            }
        }
    }
    decode_lines(file, &text, &lines, &mut schema, opts, &mut out)?;
    if let Some(r) = &releaser {
        r.release();
    }
    Ok(out)
}

fn read_error(file: &FileEntry, e: &std::io::Error, line: u64) -> ConnectorError {
    if let Some(e) = super::memory::from_io(e) {
        return e;
    }
    if let Some(long) = LineTooLong::within(e) {
        return ConnectorError::Data {
            file: file.uri.clone(),
            line: Some(line),
            column: None,
            message: long.to_string(),
        };
    }
    ConnectorError::data(&file.uri, format!("cannot read: {e}"))
}

/// Decodes one batch of lines; the first batch also settles the schema to decode with: the
/// table's columns under the file's own spelling of each key.
fn decode_lines(
    file: &FileEntry,
    text: &[u8],
    lines: &[(u64, std::ops::Range<usize>)],
    schema: &mut Option<SchemaRef>,
    opts: &ReadOptions,
    out: &mut FileBatches,
) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let decode_schema = schema
        .get_or_insert_with(|| {
            let sample_end = lines
                .iter()
                .map(|(_, r)| r.end)
                .take_while(|&e| e <= 1 << 20)
                .last()
                .unwrap_or(lines[0].1.end);
            let file_keys = arrow::json::reader::infer_json_schema(&text[..sample_end], Some(100))
                .map(|(s, _)| s)
                .ok();
            Arc::new(Schema::new(
                opts.schema
                    .fields()
                    .iter()
                    // JSON columns are taken from each line as they are written (see
                    // `json_column`), not decoded.
                    .filter(|f| !is_json(f))
                    .map(|f| {
                        let key = file_keys.as_ref().and_then(|s| {
                            s.fields()
                                .iter()
                                .find(|k| k.name().eq_ignore_ascii_case(f.name()))
                        });
                        let name = key.map_or_else(|| f.name().clone(), |k| k.name().clone());
                        Field::new(name, f.data_type().clone(), true)
                    })
                    .collect::<Vec<_>>(),
            ))
        })
        .clone();
    let chunk: Vec<(u64, &[u8])> = lines.iter().map(|(n, r)| (*n, &text[r.clone()])).collect();
    decode_chunk(file, &chunk, &decode_schema, opts, out)
}

fn decode(
    schema: &SchemaRef,
    lines: &[(u64, &[u8])],
) -> std::result::Result<Option<RecordBatch>, arrow::error::ArrowError> {
    let mut d = ReaderBuilder::new(schema.clone())
        .with_batch_size(lines.len().max(1))
        .with_coerce_primitive(true)
        .build_decoder()?;
    for (_, l) in lines {
        d.decode(l)?;
        d.decode(b"\n")?;
    }
    d.flush()
}

fn decode_chunk(
    file: &FileEntry,
    chunk: &[(u64, &[u8])],
    schema: &SchemaRef,
    opts: &ReadOptions,
    out: &mut FileBatches,
) -> Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    let (batch, lines): (RecordBatch, Vec<u64>) = match decode(schema, chunk) {
        // Only JSON columns: every line is taken as it is.
        _ if schema.fields().is_empty() => (
            RecordBatch::new_empty(schema.clone()),
            chunk.iter().map(|c| c.0).collect(),
        ),
        Ok(b) => (
            b.unwrap_or_else(|| RecordBatch::new_empty(schema.clone())),
            chunk.iter().map(|c| c.0).collect(),
        ),
        Err(_) => {
            // Find the bad lines one by one.
            let mut good = Vec::new();
            let mut lines = Vec::new();
            for one in chunk {
                match decode(schema, std::slice::from_ref(one)) {
                    Ok(Some(b)) => {
                        good.push(b);
                        lines.push(one.0);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let e = ConnectorError::Data {
                            file: file.uri.clone(),
                            line: Some(one.0),
                            column: None,
                            message: e.to_string(),
                        };
                        if opts.strict {
                            return Err(e);
                        }
                        let ConnectorError::Data { message, .. } = e else {
                            unreachable!()
                        };
                        out.rejected.push(super::RejectedRow {
                            file: file.uri.clone(),
                            line: one.0,
                            column: None,
                            reason: message,
                        });
                    }
                }
            }
            let b = arrow::compute::concat_batches(schema, &good)
                .map_err(|e| ConnectorError::data(&file.uri, e))?;
            (b, lines)
        }
    };
    let n = lines.len();
    let mut decoded = batch.columns().iter().cloned();
    // The text of the lines kept, for the JSON columns.
    let kept: Vec<&[u8]> = match opts.schema.fields().iter().any(|f| is_json(f)) {
        true => chunk
            .iter()
            .filter(|c| lines.binary_search(&c.0).is_ok())
            .map(|c| c.1)
            .collect(),
        false => Vec::new(),
    };
    let cols = opts
        .schema
        .fields()
        .iter()
        .map(|f| match is_json(f) {
            true => Some(json_column(f.name(), &kept)),
            false => decoded.next(),
        })
        .collect();
    let line = |r: usize| lines[r];
    let origin = RowOrigin {
        file: &file.uri,
        line: &line,
    };
    out.push(cols, n, &origin, opts, vec![])?;
    Ok(())
}

/// The value of key `name` (matched without case) on each line, as MySQL writes JSON; NULL
/// where the line lacks it or holds `null`.
fn json_column(name: &str, lines: &[&[u8]]) -> ArrayRef {
    let mut out = StringBuilder::new();
    for line in lines {
        let value = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line)
            .ok()
            .and_then(|m| {
                m.into_iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            });
        match value {
            Some(serde_json::Value::Null) | None => out.append_null(),
            Some(v) => out.append_value(tarn_catalog::json::to_text(&v)),
        }
    }
    Arc::new(out.finish())
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Int64Type};
    use tarn_catalog::FormatKind;

    use super::*;

    fn setup(strict: bool) -> (FileEntry, ReadOptions) {
        let file = FileEntry {
            uri: "file:///t/a.json".into(),
            key: "t/a.json".into(),
            size: 0,
            etag: None,
            last_modified: Default::default(),
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        (
            file,
            ReadOptions::new(FileFormat::heatwave(FormatKind::Json), schema, strict),
        )
    }

    #[test]
    fn keys_match_case_insensitively_and_extra_keys_are_ignored() {
        let (file, opts) = setup(true);
        let text = "{\"ID\": 1, \"Name\": \"a\", \"other\": true}\n\n{\"ID\": 2}\n";
        let out = read(&file, Bytes::from(text), &opts).unwrap();
        let b = &out.batches[0];
        assert_eq!(b.column(0).as_primitive::<Int64Type>().values(), &[1, 2]);
        assert_eq!(b.column(1).as_string::<i32>().value(0), "a");
        assert!(b.column(1).is_null(1));
    }

    #[test]
    fn bad_lines_fail_strict_loads_and_are_rejected_otherwise() {
        let text = "{\"id\": 1}\n{\"id\": \"x\"}\n{not json\n{\"name\": \"no id\"}\n{\"id\": 5}\n";
        let (file, opts) = setup(true);
        let e = read(&file, Bytes::from(text), &opts)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("file:///t/a.json, line 2: "), "{e}");
        let (file, opts) = setup(false);
        let out = read(&file, Bytes::from(text), &opts).unwrap();
        assert_eq!(out.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        let lines: Vec<u64> = out.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
        assert_eq!(out.rejected[2].reason, "NULL in a NOT NULL column");
    }
}
