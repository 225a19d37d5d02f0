"""The eight TPC-H tables as Tarn DDL over tpchgen-cli's CSV (comma-separated, header, quoted
comments) or Parquet files."""

COLUMNS = {
    "region": "r_regionkey INT, r_name CHAR(25), r_comment VARCHAR(152)",
    "nation": "n_nationkey INT, n_name CHAR(25), n_regionkey INT, n_comment VARCHAR(152)",
    "supplier": "s_suppkey BIGINT, s_name CHAR(25), s_address VARCHAR(40), s_nationkey INT, "
                "s_phone CHAR(15), s_acctbal DECIMAL(15,2), s_comment VARCHAR(101)",
    "customer": "c_custkey BIGINT, c_name VARCHAR(25), c_address VARCHAR(40), c_nationkey INT, "
                "c_phone CHAR(15), c_acctbal DECIMAL(15,2), c_mktsegment CHAR(10), c_comment VARCHAR(117)",
    "part": "p_partkey BIGINT, p_name VARCHAR(55), p_mfgr CHAR(25), p_brand CHAR(10), p_type VARCHAR(25), "
            "p_size INT, p_container CHAR(10), p_retailprice DECIMAL(15,2), p_comment VARCHAR(23)",
    "partsupp": "ps_partkey BIGINT, ps_suppkey BIGINT, ps_availqty INT, ps_supplycost DECIMAL(15,2), "
                "ps_comment VARCHAR(199)",
    "orders": "o_orderkey BIGINT, o_custkey BIGINT, o_orderstatus CHAR(1), o_totalprice DECIMAL(15,2), "
              "o_orderdate DATE, o_orderpriority CHAR(15), o_clerk CHAR(15), o_shippriority INT, "
              "o_comment VARCHAR(79)",
    "lineitem": "l_orderkey BIGINT, l_partkey BIGINT, l_suppkey BIGINT, l_linenumber INT, "
                "l_quantity DECIMAL(15,2), l_extendedprice DECIMAL(15,2), l_discount DECIMAL(15,2), "
                "l_tax DECIMAL(15,2), l_returnflag CHAR(1), l_linestatus CHAR(1), l_shipdate DATE, "
                "l_commitdate DATE, l_receiptdate DATE, l_shipinstruct CHAR(25), l_shipmode CHAR(10), "
                "l_comment VARCHAR(44)",
}


def ddl(db, table, data_dir, fmt):
    if fmt == "csv":
        return (f"CREATE EXTERNAL TABLE {db}.{table} ({COLUMNS[table]}) FILE_FORMAT = (FORMAT csv HEADER ON "
                f"FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"') FILES = (URI 'file://{data_dir}/{table}.csv')")
    return (f"CREATE EXTERNAL TABLE {db}.{table} FILE_FORMAT = (FORMAT parquet) "
            f"FILES = (URI 'file://{data_dir}/{table}.parquet')")
