//! Nested data as JSON documents: Parquet lists, structs and maps (pyarrow), Avro records, arrays
//! and maps (fastavro) and JSON lines with objects load as JSON columns that `JSON_EXTRACT`, `->`
//! and `->>` read as MySQL does; the answers are compared with DuckDB reading the same Parquet
//! file and with the values the writers were given.

use serde_json::{Value, json};

use crate::support::*;

/// Writes `nested.parquet`, `nested.avro` and `nested.json` (the same four rows) under `dir`,
/// and answers, per id, what DuckDB reads from the Parquet file: `info.a`, `tags[1]`,
/// `tags[2]`, `info.b`.
fn write_nested(dir: &std::path::Path) -> Value {
    python_json(
        r#"import json, os, sys
import pyarrow as pa, pyarrow.parquet as pq, fastavro, duckdb
d = os.environ["DIR"]
rows = [
    {"id": 1, "tags": ["red", "green"], "info": {"a": 10, "b": "x y"}, "attrs": {"k": 1, "kk": 2}},
    {"id": 2, "tags": ["blue"], "info": {"a": None, "b": "q\"uote"}, "attrs": {}},
    {"id": 3, "tags": [], "info": None, "attrs": None},
    {"id": 4, "tags": None, "info": {"a": -3, "b": None}, "attrs": {"k": 7}},
]
schema = pa.schema([
    ("id", pa.int64()),
    ("tags", pa.list_(pa.string())),
    ("info", pa.struct([("a", pa.int64()), ("b", pa.string())])),
    ("attrs", pa.map_(pa.string(), pa.int64())),
])
t = pa.Table.from_pylist(
    [dict(r, attrs=None if r["attrs"] is None else list(r["attrs"].items())) for r in rows],
    schema=schema)
pq.write_table(t, f"{d}/p/nested.parquet")
avro = {"type": "record", "name": "row", "fields": [
    {"name": "id", "type": "long"},
    {"name": "tags", "type": ["null", {"type": "array", "items": "string"}]},
    {"name": "info", "type": ["null", {"type": "record", "name": "info", "fields": [
        {"name": "a", "type": ["null", "long"]}, {"name": "b", "type": ["null", "string"]}]}]},
    {"name": "attrs", "type": ["null", {"type": "map", "values": "long"}]},
]}
with open(f"{d}/a/nested.avro", "wb") as f:
    fastavro.writer(f, avro, rows)
with open(f"{d}/j/nested.json", "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
con = duckdb.connect()
got = con.execute(f"SELECT id, info.a, tags[1], tags[2], info.b FROM '{d}/p/nested.parquet' ORDER BY id").fetchall()
print(json.dumps([[r[0], r[1], r[2], r[3], r[4]] for r in got]))
"#,
        &[("DIR", dir.to_str().unwrap())],
    )
}

#[tokio::test]
async fn nested_parquet_avro_and_json_load_as_json_that_mysql_operators_read() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for sub in ["p", "a", "j"] {
        std::fs::create_dir_all(data.join(sub)).unwrap();
    }
    let duck = write_nested(&data);
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE n").await;
    for (table, format, sub) in [
        ("p", "parquet", "p"),
        ("a", "avro", "a"),
        ("j", "json", "j"),
    ] {
        server
            .create_and_load(
                &format!("n.{table}"),
                &format!(
                    "FILE_FORMAT = (FORMAT {format}) FILES = (URI 'file://{}/{sub}/')",
                    data.display()
                ),
            )
            .await;
        // The nested columns are JSON columns.
        let described: Vec<(String, String)> = server
            .rows(&format!("DESCRIBE n.{table}"))
            .await
            .into_iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap().to_string(),
                    r[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for column in ["tags", "info", "attrs"] {
            assert!(
                described.contains(&(column.to_string(), "JSON".to_string())),
                "{table}: {described:?}"
            );
        }
        // `->>` answers text, `->` JSON; a path that reaches nothing is NULL. Every format
        // answers what DuckDB reads from the Parquet file.
        let got = server
            .rows(&format!(
                "SELECT id, info->>'$.a', tags->>'$[0]', tags->>'$[1]', info->>'$.b' \
                 FROM n.{table} ORDER BY id"
            ))
            .await;
        let want: Vec<Vec<Value>> = duck
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut r = r.as_array().unwrap().clone();
                // `->>` answers text: DuckDB's number as its text.
                if let Some(n) = r[1].as_i64() {
                    r[1] = json!(n.to_string());
                }
                r
            })
            .collect();
        // A JSON null reached by a path reads as the text 'null' through ->>, as in MySQL.
        let got: Vec<Vec<Value>> = got
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| if v == json!("null") { Value::Null } else { v })
                    .collect()
            })
            .collect();
        assert_same_rows(&format!("{format} ->>"), &got, &want);
        let docs = server
            .rows(&format!(
                "SELECT tags->'$[0]', JSON_EXTRACT(attrs, '$.k', '$.kk'), info, \
                 JSON_TYPE(tags), JSON_VALID(info) FROM n.{table} WHERE id = 1"
            ))
            .await;
        assert_eq!(
            docs,
            vec![vec![
                json!("\"red\""),
                json!("[1, 2]"),
                json!("{\"a\": 10, \"b\": \"x y\"}"),
                json!("ARRAY"),
                json!(true),
            ]],
            "{format}"
        );
        // A whole column reads as MySQL writes JSON; the empty map and list stay themselves.
        let empty = server
            .rows(&format!(
                "SELECT id, tags, attrs FROM n.{table} WHERE id IN (2, 3) ORDER BY id"
            ))
            .await;
        assert_eq!(
            empty,
            vec![
                vec![json!(2), json!("[\"blue\"]"), json!("{}")],
                vec![json!(3), json!("[]"), Value::Null],
            ],
            "{format}"
        );
        // Filters and grouping by a path work as on any expression.
        let counted = server
            .rows(&format!(
                "SELECT COUNT(*) FROM n.{table} WHERE attrs->>'$.k' IS NOT NULL"
            ))
            .await;
        assert_eq!(counted, vec![vec![json!(2)]], "{format}");
    }
    // A bad path is an error that names it; the connection's next query works.
    let e = server.err("SELECT info->'$.a[' FROM n.p").await;
    assert!(e.message.contains("invalid JSON path '$.a['"), "{e:?}");
    assert_eq!(
        server.rows("SELECT COUNT(*) FROM n.p").await,
        vec![vec![json!(4)]]
    );
    // Over the MySQL protocol a JSON column is MySQL's JSON type (245), its values the text.
    let mysql = server
        .pymysql_json(
            r#"cur = connect().cursor()
cur.execute("SELECT id, info, info->>'$.b', info->'$.b' FROM n.p WHERE id = 1")
print(json.dumps({"types": [d[1] for d in cur.description], "row": list(cur.fetchone())}))
"#,
            &[],
        )
        .await;
    // `->` answers JSON (245), `->>` text (253, VAR_STRING).
    assert_eq!(mysql["types"], json!([8, 245, 253, 245]), "{mysql}");
    assert_eq!(
        mysql["row"],
        json!([1, "{\"a\": 10, \"b\": \"x y\"}", "x y", "\"x y\""]),
        "{mysql}"
    );
    // Exported as NDJSON and Parquet, the JSON columns stay documents: tables defined over the
    // written files (columns inferred) have JSON columns with the same values.
    let want = server
        .rows("SELECT id, tags, info, attrs FROM n.p ORDER BY id")
        .await;
    for format in ["json", "parquet"] {
        let answer = server
            .rows(&format!(
                "SELECT * FROM n.p INTO OUTFILE URI 'file://{}/out/{format}/' FORMAT {format}",
                data.display()
            ))
            .await;
        let folder = answer[0][3].as_str().unwrap().to_string();
        server
            .create_and_load(
                &format!("n.back_{format}"),
                &format!("FILE_FORMAT = (FORMAT {format}) FILES = (URI '{folder}')"),
            )
            .await;
        assert_eq!(
            server
                .rows(&format!(
                    "SELECT id, tags, info, attrs FROM n.back_{format} ORDER BY id"
                ))
                .await,
            want,
            "{format}"
        );
        let described = server.rows(&format!("DESCRIBE n.back_{format}")).await;
        assert_eq!(described[2][1], json!("JSON"), "{format}: {described:?}");
    }
    // Recovered from its snapshot, a table keeps its JSON columns.
    let server = server.kill_and_restart().await;
    server.wait_ready().await;
    let described = server.rows("DESCRIBE n.p").await;
    assert!(
        described.contains(&vec![
            json!("info"),
            json!("JSON"),
            json!("YES"),
            json!(""),
            Value::Null,
            json!("")
        ]),
        "{described:?}"
    );
    assert_eq!(
        server
            .rows("SELECT info->>'$.b' FROM n.p WHERE id = 2")
            .await,
        vec![vec![json!("q\"uote")]]
    );
}

#[tokio::test]
async fn a_declared_json_column_takes_json_text_and_rejects_what_is_not_json() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("docs.csv"),
        "1|{\"a\": [1, 2]}\n2|not json\n3|[true, null]\n",
    )
    .unwrap();
    let server = TestServer::spawn(&tmp.path().join("tarn"), &data, &[]).await;
    server.ok("CREATE DATABASE n").await;
    let ddl = format!(
        "(id INT, doc JSON) FILE_FORMAT = (FORMAT csv FIELDS TERMINATED BY '|') FILES = (URI 'file://{}/docs.csv')",
        data.display()
    );
    // Strict (the default): the load fails naming the file, line and column.
    server
        .ok(&format!("CREATE EXTERNAL TABLE n.strict {ddl}"))
        .await;
    let e = server.err("ALTER TABLE n.strict SECONDARY_LOAD").await;
    assert!(
        e.message.contains("docs.csv")
            && e.message.contains("line 2")
            && e.message.contains("doc")
            && e.message.contains("not a valid JSON document"),
        "{e:?}"
    );
    // Not strict: the bad row is left out and the others answer.
    server
        .create_and_load("n.loose", &format!("{ddl} STRICT_LOAD = 0"))
        .await;
    assert_eq!(
        server
            .rows("SELECT id, doc->>'$.a[1]', doc->>'$' FROM n.loose ORDER BY id")
            .await,
        vec![
            vec![json!(1), json!("2"), json!("{\"a\": [1, 2]}")],
            vec![json!(3), Value::Null, json!("[true, null]")],
        ]
    );
}
