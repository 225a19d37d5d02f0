//! The Arrow Flight SQL door, driven by a real client (ADBC's Flight SQL driver from Python):
//! values compared with pyarrow reading the same files, prepared statements with parameters,
//! metadata as a reader and as the admin, tokens (Bearer and basic), roles and database scopes,
//! errors as gRPC statuses on a connection that stays usable, and connections side by side.

use serde_json::json;

use crate::mysql::sample_loaded;
use crate::support::*;

const SESSION: &str = r#"
import datetime, decimal, json, os, threading
import adbc_driver_flightsql.dbapi as flight
import adbc_driver_manager as adbc
import pyarrow.parquet as pq

uri = os.environ["URI"]

def connect(user=None, token=None, header=None):
    opts = {}
    if header is not None:
        opts["adbc.flight.sql.authorization_header"] = header
    elif user is not None:
        opts.update(username=user, password=token)
    return flight.connect(uri, db_kwargs=opts, autocommit=True)

def failure(f):
    try:
        f()
        return "no error"
    except adbc.Error as e:
        return [type(e).__name__, int(e.status_code), str(e)]

def objects(conn):
    got = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    return {c["catalog_name"]: {s["db_schema_name"]: sorted(t["table_name"] for t in s["db_schema_tables"] or [])
                                for s in c["catalog_db_schemas"]} for c in got}

out = {}
ref = pq.read_table(os.environ["DATA"]).sort_by("order_id")
rows = ref.to_pylist()
a = connect("admin", os.environ["ADMIN"])
cur = a.cursor()
cur.execute("SELECT * FROM s.p ORDER BY order_id")
t = cur.fetch_arrow_table()
out["types"] = [str(f.type) for f in t.schema]
out["same_rows"] = t.to_pylist() == ref.select(t.column_names).to_pylist()
out["rows"] = t.num_rows

q = "SELECT order_id, customer FROM s.p WHERE order_id > ? AND customer <> ? ORDER BY order_id"
cur.execute(q, parameters=(190, "acme"))
out["prepared"] = [list(r) for r in cur.fetchall()]
out["prepared_want"] = [[r["order_id"], r["customer"]] for r in rows if r["order_id"] > 190 and r["customer"] != "acme"]
cur.execute(q, parameters=(197, "it's"))
out["prepared_again"] = [r[0] for r in cur.fetchall()]
day, amount = datetime.date(2024, 3, 1), decimal.Decimal("100.25")
cur.execute("SELECT count(*) FROM s.p WHERE order_date >= ? AND amount > ?", parameters=(day, amount))
out["typed_parameters"] = [cur.fetchone()[0], sum(1 for r in rows if r["order_date"] >= day and r["amount"] > amount)]

out["info"] = {k: v for k, v in a.adbc_get_info().items() if k.startswith("vendor")}
out["table_types"] = a.adbc_get_table_types()
out["table_schema"] = [str(f.type) for f in a.adbc_get_table_schema("p", db_schema_filter="s")]
out["admin_objects"] = objects(a)

out["no_table"] = failure(lambda: cur.execute("SELECT * FROM s.nowhere"))
out["syntax"] = failure(lambda: cur.execute("SELEC 1"))
out["writes_files"] = failure(lambda: cur.execute("COPY (SELECT 1) TO '/tmp/tarn-flight.csv'"))
cur.execute("SELECT 40 + 2")
out["after_errors"] = cur.fetchone()[0]

# DDL: as a query (what cursor.execute sends) and as an update.
cur.execute("CREATE DATABASE by_query")
stmt = adbc.AdbcStatement(a.adbc_connection)
stmt.set_sql_query("CREATE DATABASE by_update")
stmt.execute_update()
stmt.close()
cur.execute("SHOW DATABASES")
out["databases"] = sorted(r[0] for r in cur.fetchall())

r = connect(header="Bearer " + os.environ["READER"])
rc = r.cursor()
out["reader_ddl"] = failure(lambda: rc.execute("DROP TABLE s.p"))
out["reader_hidden"] = failure(lambda: rc.execute("SELECT * FROM hidden.h"))
rc.execute("SELECT count(*) FROM s.p")
out["reader_count"] = rc.fetchone()[0]
out["reader_objects"] = objects(r)

out["wrong_token"] = failure(lambda: connect("admin", "not-a-token").cursor().execute("SELECT 1"))
out["other_name"] = failure(lambda: connect("reader", os.environ["ADMIN"]).cursor().execute("SELECT 1"))
out["no_token"] = failure(lambda: connect().cursor().execute("SELECT 1"))

results = [None] * 8
def worker(i):
    k = connect("admin", os.environ["ADMIN"])
    kc = k.cursor()
    kc.execute("SELECT count(*) FROM s.p WHERE order_id > ?", parameters=(i * 10,))
    results[i] = kc.fetchone()[0]
    k.close()
threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
out["concurrent"] = results
out["concurrent_want"] = [sum(1 for r in rows if r["order_id"] > i * 10) for i in range(8)]
print(json.dumps(out, default=str))
"#;

#[tokio::test]
async fn flight_sql_clients_query_prepare_and_list_with_tokens_and_roles() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, data) = sample_loaded(tmp.path()).await;
    // A database the reader may not see.
    server.ok("CREATE DATABASE hidden").await;
    server
        .ok(&format!(
            "CREATE EXTERNAL TABLE hidden.h FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{}/')",
            data.display()
        ))
        .await;
    let reader = server
        .make_token(json!({"name": "reader", "role": "reader", "databases": ["s"]}))
        .await;
    let uri = format!("grpc://{}", server.flight_addr().await);
    let out = python_json(
        SESSION,
        &[
            ("URI", &uri),
            ("ADMIN", ADMIN_TOKEN),
            ("READER", &reader),
            ("DATA", data.to_str().unwrap()),
        ],
    );
    // The values pyarrow reads from the files, with their Arrow types.
    assert_eq!(out["same_rows"], true, "{out}");
    assert_eq!(out["rows"], 200);
    assert_eq!(
        out["types"],
        json!([
            "int32",
            "string",
            "string",
            "int32",
            "decimal128(10, 2)",
            "double",
            "bool",
            "date32[day]",
            "timestamp[us]"
        ])
    );
    assert!(!out["prepared_want"].as_array().unwrap().is_empty());
    assert_eq!(out["prepared"], out["prepared_want"]);
    assert_eq!(out["prepared_again"], json!([198, 199, 200]));
    let typed = &out["typed_parameters"];
    assert_eq!(typed[0], typed[1], "{out}");
    assert!(typed[0].as_u64().unwrap() > 0, "{out}");

    assert_eq!(out["info"]["vendor_name"], "Tarn");
    assert_eq!(
        out["info"]["vendor_version"],
        format!("9.4.0-tarn-{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(out["table_types"], json!(["SYSTEM TABLE", "TABLE"]));
    assert_eq!(out["table_schema"], out["types"]);
    let admin = &out["admin_objects"]["tarn"];
    assert_eq!(admin["s"], json!(["p"]), "{out}");
    assert_eq!(admin["hidden"], json!(["h"]), "{out}");
    assert!(
        admin["performance_schema"]
            .as_array()
            .unwrap()
            .contains(&json!("rpd_tables")),
        "{out}"
    );

    // Errors: the gRPC code (as ADBC's status), Tarn's message, and the connection goes on.
    let error = |name: &str, status: u64, text: &str| {
        let e = &out[name];
        assert_eq!(e[1], status, "{name}: {e}");
        assert!(e[2].as_str().unwrap().contains(text), "{name}: {e}");
    };
    // ADBC's statuses for the gRPC codes: NOT_FOUND 3, INVALID_ARGUMENT 5, UNIMPLEMENTED 2,
    // PERMISSION_DENIED 14 (unauthorized), UNAUTHENTICATED 13.
    error("no_table", 3, "nowhere");
    error("syntax", 5, "SELEC");
    error("writes_files", 2, "COPY is not supported");
    assert_eq!(out["after_errors"], 42);
    let dbs = out["databases"].as_array().unwrap();
    assert!(
        dbs.contains(&json!("by_query")) && dbs.contains(&json!("by_update")),
        "{out}"
    );
    error("reader_ddl", 14, "DROP TABLE needs the admin role");
    error("reader_hidden", 14, "hidden");
    assert_eq!(out["reader_count"], 200);
    assert_eq!(
        out["reader_objects"]["tarn"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["performance_schema", "s"],
        "the reader lists only what it may read: {out}"
    );
    error("wrong_token", 13, "the token is not known");
    error("other_name", 13, "access denied for 'reader'");
    error("no_token", 13, "a token is needed");
    assert_eq!(out["concurrent"], out["concurrent_want"]);
    // The DDL run through the door is in the audit log, as the admin's.
    let audit = std::fs::read_to_string(server.data_dir.join("audit.log")).unwrap();
    assert!(audit.contains("by_update"), "{audit}");
}

#[tokio::test]
async fn a_million_rows_stream_to_a_flight_sql_client() {
    let tmp = tempfile::tempdir().unwrap();
    let server = crate::mysql::million_rows_loaded(tmp.path()).await;
    let uri = format!("grpc://{}", server.flight_addr().await);
    let out = python_json(
        r#"
import json, os
import adbc_driver_flightsql.dbapi as flight
import pyarrow.compute as pc
c = flight.connect(os.environ["URI"], db_kwargs={"username": "admin", "password": os.environ["ADMIN"]}, autocommit=True)
cur = c.cursor()
cur.execute("SELECT id, v FROM s.big")
reader = cur.fetch_record_batch()
rows = ids = vs = batches = 0
for b in reader:
    batches += 1
    rows += b.num_rows
    ids += pc.sum(b.column(0)).as_py() or 0
    vs += pc.sum(b.column(1)).as_py() or 0
print(json.dumps({"rows": rows, "ids": ids, "vs": vs, "batches": batches}))
"#,
        &[("URI", &uri), ("ADMIN", ADMIN_TOKEN)],
    );
    let n: u64 = 1_000_000;
    let vs: u64 = (0..n).map(|i| i % 997).sum();
    assert_eq!(
        (&out["rows"], &out["ids"], &out["vs"]),
        (&json!(n), &json!(n * (n - 1) / 2), &json!(vs))
    );
    assert!(
        out["batches"].as_u64().unwrap() > 1,
        "the answer arrives in batches: {out}"
    );
}

#[tokio::test]
async fn an_unordered_answer_comes_as_one_endpoint_a_core_and_an_ordered_one_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let server = crate::mysql::million_rows_loaded(tmp.path()).await;
    let uri = format!("grpc://{}", server.flight_addr().await);
    // Arrow's C++ Flight client, with the Flight SQL command built by hand: it shows the
    // endpoints and lets the test read them at once or one after another.
    let out = python_json(
        r#"
import json, os
from concurrent.futures import ThreadPoolExecutor
import pyarrow as pa, pyarrow.compute as pc, pyarrow.flight as fl

def field(num, data):
    n, size = len(data), b""
    while True:
        b, n = n & 0x7F, n >> 7
        size += bytes([b | (0x80 if n else 0)])
        if not n:
            break
    return bytes([(num << 3) | 2]) + size + data

client = fl.FlightClient(os.environ["URI"])
options = fl.FlightCallOptions(headers=[(b"authorization", ("Bearer " + os.environ["ADMIN"]).encode())])
def info(sql):
    command = field(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + field(2, field(1, sql.encode()))
    return client.get_flight_info(fl.FlightDescriptor.for_command(command), options)
def summary(tables):
    t = pa.concat_tables(tables)
    return [t.num_rows, pc.sum(t.column("id")).as_py()]
out = {}
i = info("SELECT id, v FROM s.big")
out["endpoints"] = len(i.endpoints)
out["ordered"] = i.ordered
with ThreadPoolExecutor(len(i.endpoints)) as pool:
    parts = list(pool.map(lambda e: client.do_get(e.ticket, options).read_all(), i.endpoints))
out["at_once"] = summary(parts)
out["parts_used"] = sum(1 for p in parts if p.num_rows > 0)
i = info("SELECT id, v FROM s.big")
parts = [client.do_get(e.ticket, options).read_all() for e in i.endpoints]
out["in_turn"] = summary(parts)
out["first_part"] = parts[0].num_rows
i = info("SELECT id FROM s.big ORDER BY id DESC LIMIT 5")
out["sorted_endpoints"] = len(i.endpoints)
out["sorted_ordered"] = i.ordered
out["sorted"] = client.do_get(i.endpoints[0].ticket, options).read_all().column("id").to_pylist()
print(json.dumps(out))
"#,
        &[("URI", &uri), ("ADMIN", ADMIN_TOKEN)],
    );
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    let n: u64 = 1_000_000;
    let whole = json!([n, n * (n - 1) / 2]);
    assert_eq!(out["endpoints"], json!(cores), "{out}");
    assert_eq!(out["ordered"], json!(false), "{out}");
    assert_eq!(out["at_once"], whole, "{out}");
    if cores > 1 {
        assert!(
            out["parts_used"].as_u64().unwrap() > 1,
            "read at once, in parallel: {out}"
        );
    }
    assert_eq!(out["in_turn"], whole, "{out}");
    assert_eq!(
        out["first_part"],
        json!(n),
        "read in turn, the first has it all: {out}"
    );
    assert_eq!(
        (&out["sorted_endpoints"], &out["sorted_ordered"]),
        (&json!(1), &json!(true)),
        "{out}"
    );
    assert_eq!(
        out["sorted"],
        json!([999_999, 999_998, 999_997, 999_996, 999_995])
    );
}
