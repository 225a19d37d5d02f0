#!/usr/bin/env bash
# Creates (once) and prints the path of Tarn's cached Python venv: the independent readers and
# writers the tests compare against (pyarrow, fastavro, deltalake, duckdb) and the TPC-H generator.
# Re-running is cheap: a stamp file records the requirements it was built from.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${TARN_VENV:-$HOME/.cache/tarn-venv}"
req="$here/requirements.txt"
stamp="$venv/.tarn-requirements"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
  echo "$venv"; exit 0
fi
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
cp "$req" "$stamp"
echo "$venv"
