#!/usr/bin/env bash
# Offline checks of terraform/ (no provider is downloaded): formatting, the structure of the
# deployment (python-hcl2), checkov's security checks, and every *.tftpl rendered with its
# example values; the rendered tarn.toml is accepted by `tarn config check` and a broken copy is
# refused. Run by scripts/test.sh; `terraform validate` needs the providers, so it is a step for a
# networked machine (terraform/README.md).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
export TF_CLI_CONFIG_FILE=/dev/null   # no ~/.terraformrc, no warning
command -v terraform >/dev/null || { echo "terraform is needed for the terraform checks (it is not installed)" >&2; exit 1; }
venv="$("$root/scripts/venv.sh")"
# checkov pins its own HCL parser, which clashes with python-hcl2: it gets a venv of its own.
tfvenv="${TARN_TF_VENV:-$HOME/.cache/tarn-venv-tf}"
if [ ! -x "$tfvenv/bin/checkov" ]; then
  python3 -m venv "$tfvenv" >&2
  "$tfvenv/bin/pip" install --quiet --disable-pip-version-check checkov==3.3.30 >&2
fi

echo "terraform fmt -check -recursive terraform" >&2
terraform fmt -check -recursive terraform

"$venv/bin/python" tests/terraform/structure.py terraform
"$venv/bin/python" tests/terraform/structure.py --self-test terraform

echo "checkov over terraform/" >&2
"$tfvenv/bin/checkov" -d terraform --framework terraform --quiet --compact --skip-download

cargo build --quiet -p tarn-service
tarn="$CARGO_TARGET_DIR/debug/tarn"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
render() { # template example out
  cp "$1" "$work/t.tftpl"
  cp "$2" "$work/t.json"
  (cd "$work" && echo 'templatefile("t.tftpl", jsondecode(file("t.json")))' | terraform console) > "$work/raw"
  # The console prints a string as a heredoc: <<EOT ... EOT.
  [ "$(head -1 "$work/raw")" = "<<EOT" ] || { echo "$1 did not render:" >&2; cat "$work/raw" >&2; exit 1; }
  sed '1d;$d' "$work/raw" > "$3"
}
for tpl in $(find terraform -name '*.tftpl' | sort); do
  example="${tpl%.tftpl}.example.json"
  out="$work/$(basename "${tpl%.tftpl}")"
  render "$tpl" "$example" "$out"
  case "$tpl" in
    *tarn.toml.tftpl)
      "$tarn" config check --config "$out"
      # A broken copy is refused, naming what is wrong.
      sed 's/^home_region = /home_regio = /' "$out" > "$work/broken.toml"
      if "$tarn" config check --config "$work/broken.toml" 2>"$work/err"; then
        echo "tarn config check accepted a broken $tpl" >&2; exit 1
      fi
      grep -q "home_regio" "$work/err" || { echo "the refusal does not name the key:" >&2; cat "$work/err" >&2; exit 1; }
      ;;
    *.yaml.tftpl)
      "$tfvenv/bin/python" -c 'import sys, yaml
text = open(sys.argv[1]).read()
assert text.startswith("#cloud-config"), "not cloud-config"
doc = yaml.safe_load(text)
assert doc["write_files"] and doc["runcmd"], "no files or commands"
print(sys.argv[2], "renders to valid cloud-config")' "$out" "$tpl"
      ;;
  esac
done
echo "terraform checks: ok" >&2
