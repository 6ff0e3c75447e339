#!/usr/bin/env bash
# Scan the rendered migrate-job chart with checkov (kubernetes framework, offline).
#
#   scripts/helm-checkov.sh [PYTHON]
#
# PYTHON (or $HELM_PYTHON; default: python3) is an interpreter with helm-python-sdk and pyyaml,
# e.g. the project's test venv: it renders the chart, once per value set in
# helm/migrate-job/ci/, with the real Helm engine (checkov's own helm framework needs a helm
# binary and silently passes without one). Checkov lives in its own venv, $CHECKOV_VENV
# (default: .venv-checkov/ in the repository), created on first use: it pins packages that
# clash with the project's. Findings not in helm/checkov-skips.yaml fail the run, and so does a
# skip that no longer fires.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${1:-${HELM_PYTHON:-python3}}
venv=${CHECKOV_VENV:-$repo/.venv-checkov}
checkov_version=3.3.30
chart=$repo/helm/migrate-job
skips_file=$repo/helm/checkov-skips.yaml

if [[ "$("$venv/bin/checkov" --version 2>/dev/null || true)" != "$checkov_version" ]]; then
    echo "helm-checkov: installing checkov $checkov_version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$checkov_version"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/rendered"

"$python" - "$chart" "$work/rendered" <<'PY'
"""Render the chart once per value set in ci/ into OUT/<set>.yaml."""
import sys
from pathlib import Path

import helm_python
import yaml

chart_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
value_files = sorted((chart_dir / "ci").glob("*-values.yaml"))
if not value_files:
    sys.exit(f"helm-checkov: no value sets in {chart_dir / 'ci'}")
with helm_python.Chart.load(chart_dir) as chart:
    for value_file in value_files:
        manifests = chart.render(yaml.safe_load(value_file.read_text()), name="migrate", namespace="migrations")
        documents = [
            f"# Source: {path}\n{text.strip()}\n"
            for path, text in sorted(manifests.items())
            if path.endswith(".yaml") and text.strip()
        ]
        (out / f"{value_file.name.removesuffix('-values.yaml')}.yaml").write_text("---\n".join(documents))
        print(f"helm-checkov: rendered {value_file.name}: {len(documents)} manifest(s)", file=sys.stderr)
PY

skip_ids=$("$venv/bin/python" - "$skips_file" <<'PY'
"""Print the skip ids as a comma-separated list; refuse a skip without a reason."""
import sys

import yaml

skips = yaml.safe_load(open(sys.argv[1]))["skips"]
for skip in skips:
    if not str(skip.get("reason", "")).strip():
        sys.exit(f"helm-checkov: skip {skip.get('id')} in {sys.argv[1]} has no reason")
print(",".join(skip["id"] for skip in skips))
PY
)

# The gate: every check but the justified skips.
"$venv/bin/checkov" --directory "$work/rendered" --framework kubernetes --skip-download \
    --compact --quiet --skip-check "$skip_ids" \
    --output cli --output json --output-file-path "console,$work/gated.json"

# Without skips: a skip that no longer fires is stale, and an empty scan proves nothing.
"$venv/bin/checkov" --directory "$work/rendered" --framework kubernetes --skip-download \
    --quiet --output json > "$work/unskipped.json" || true
"$venv/bin/python" - "$work/gated.json" "$work/unskipped.json" "$skip_ids" <<'PY'
import json
import sys


def report(path):
    data = json.load(open(path))
    return data[0] if isinstance(data, list) else data


gated, unskipped, skip_ids = report(sys.argv[1]), report(sys.argv[2]), set(sys.argv[3].split(","))
summary = gated["summary"]
if summary["parsing_errors"] or summary["resource_count"] == 0 or summary["passed"] == 0:
    sys.exit(f"helm-checkov: nothing scanned properly: {summary}")
fired = {check["check_id"] for check in unskipped["results"]["failed_checks"]}
stale = sorted(skip_ids - fired)
if stale:
    sys.exit(f"helm-checkov: skips that no longer fire, remove them from helm/checkov-skips.yaml: {stale}")
print(f"helm-checkov: {summary['passed']} passed, 0 failed, "
      f"{len(skip_ids)} justified skip(s) in helm/checkov-skips.yaml", file=sys.stderr)
PY
