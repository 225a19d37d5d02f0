#!/usr/bin/env bash
# Starts SeaweedFS (from the venv) on 127.0.0.1 as Tarn's test S3 server, with signed access and
# the buckets the tests use, and prints the variables the tests read:
#   eval "$(scripts/seaweed.sh start DIR)"   ...   scripts/seaweed.sh stop DIR
# Every port is picked free, so several servers (regions) run side by side. `kill DIR` stops one
# at once (SIGKILL, like a lost region) and `restart DIR` brings it back on the same ports and data.
set -euo pipefail
cmd="$1"; dir="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "$cmd" in
start)
  venv="$("$here/venv.sh")"
  mkdir -p "$dir/data"
  access="TARNTESTACCESSKEY"
  secret="${TARN_TEST_S3_SECRET_KEY:-tarn-test-secret-$(od -An -N8 -tx8 /dev/urandom | tr -d " ")}"
  # Signed access for the tarn identity; anonymous reads of the `public` bucket (plain https:// objects).
  cat > "$dir/identities.json" <<JSON
{"identities": [{"name": "tarn", "credentials": [{"accessKey": "$access", "secretKey": "$secret"}],
                 "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
                {"name": "anonymous", "actions": ["Read:public"]}]}
JSON
  # A throwaway CA and a certificate for 127.0.0.1 signed by it; the tests hand the CA to Tarn.
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Tarn test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$dir/key.pem" -out "$dir/leaf.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$dir/leaf.ext"
  openssl x509 -req -in "$dir/leaf.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
    -extfile "$dir/leaf.ext" -out "$dir/cert.pem" 2>/dev/null
  # Another server starting at the same moment may take a port between picking and binding:
  # then pick again.
  for attempt in 1 2 3; do
    # Eleven distinct free ports, picked at once (sockets held together, none handed out twice).
    read -r -a free <<<"$("$venv/bin/python" -c 'import socket
socks = [socket.socket() for _ in range(11)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')"
    port="${free[0]}"; https_port="${free[1]}"
    ports=""; i=2
    for p in admin.port admin.port.grpc filer.port filer.port.grpc master.port master.port.grpc \
             s3.port.grpc volume.port volume.port.grpc; do
      ports="$ports -$p=${free[$i]}"; i=$((i + 1))
    done
    cat > "$dir/run.sh" <<RUN
#!/usr/bin/env bash
exec "$venv/bin/weed" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$port" \\
  -s3.port.https="$https_port" -s3.cert.file="$dir/cert.pem" -s3.key.file="$dir/key.pem" \\
  -s3.config="$dir/identities.json" -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \\
  $ports -bucket=lake,public
RUN
    chmod +x "$dir/run.sh"
    echo "$port" > "$dir/s3.port"
    echo "${free[*]}" > "$dir/ports"
    "$here/seaweed.sh" run "$dir" && break
    [ "$attempt" = 3 ] && exit 1
  done
  echo "export TARN_TEST_S3_ENDPOINT=http://127.0.0.1:$port TARN_TEST_S3_BUCKET=lake"
  echo "export TARN_TEST_S3_HTTPS_ENDPOINT=https://127.0.0.1:$https_port TARN_TEST_S3_CA_FILE=$dir/ca.pem"
  echo "export TARN_TEST_S3_ACCESS_KEY=$access TARN_TEST_S3_SECRET_KEY=$secret"
  ;;
run|restart)
  port="$(cat "$dir/s3.port")"
  setsid "$dir/run.sh" >>"$dir/weed.log" 2>&1 < /dev/null &
  echo $! > "$dir/weed.pid"
  # Ready when the S3 port answers and the bucket exists (an anonymous request is refused with 403).
  for _ in $(seq 240); do
    code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/lake/" || true)"
    [ "$code" = "403" ] && break
    kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null || { cat "$dir/weed.log" >&2; exit 1; }
    sleep 0.25
  done
  [ "$code" = "403" ] || { echo "SeaweedFS did not become ready (last answer $code)" >&2; tail -20 "$dir/weed.log" >&2; exit 1; }
  ;;
kill)
  [ -f "$dir/weed.pid" ] && kill -9 "$(cat "$dir/weed.pid")" 2>/dev/null || true
  # Gone once the S3 port refuses connections (the process may linger unreaped, without sockets).
  port="$(cat "$dir/s3.port")"
  for _ in $(seq 100); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" || break
    sleep 0.02
  done
  ;;
stop)
  if [ -f "$dir/weed.pid" ]; then
    pid="$(cat "$dir/weed.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  ;;
esac
