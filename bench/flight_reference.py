"""Arrow's own Flight server (C++, through pyarrow.flight) serving one table: the reference the
doors benchmark sets Tarn's Flight SQL door beside, with the same client and the same batches.

    python flight_reference.py TABLE.arrows PORT

Reads TABLE.arrows (an Arrow IPC stream: Tarn's answer, as HTTP sent it) into memory and answers
every DoGet with all of it, batch by batch as read. Any Flight SQL statement (what ADBC's
`execute` sends) is answered with one endpoint whose ticket streams the table, so that ADBC can
read it too; every other command (ADBC asks for SqlInfo on connecting) is unimplemented, which
ADBC accepts. Prints "ready" once it listens.
"""
import sys

import pyarrow as pa
import pyarrow.flight as flight


def main():
    path, port = sys.argv[1:3]
    with pa.OSFile(path) as f:
        table = pa.ipc.open_stream(f).read_all()

    class Reference(flight.FlightServerBase):
        def get_flight_info(self, context, descriptor):
            if b"CommandStatementQuery" not in (descriptor.command or b""):
                raise flight.FlightUnimplementedError("the reference answers statements only")
            return flight.FlightInfo(table.schema, descriptor, [flight.FlightEndpoint(b"table", [])],
                                     table.num_rows, -1)

        def do_get(self, context, ticket):
            return flight.RecordBatchStream(table)

    server = Reference(f"grpc://127.0.0.1:{port}")
    print("ready", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
