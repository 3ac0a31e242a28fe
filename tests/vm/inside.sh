#!/bin/bash
# Runs inside the VM (started by run.sh): load the IPsec modules, run pytest on tests/vm, and write
# "N passed, M failed" to OUT/summary.txt (skips count as failures; no test at all is a failure).
# Usage: inside.sh PYTHON OUT [PYTHONPATH]
set -u
PY=$1
OUT=$2
HERE=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$HERE/..${3:+:$3}"
export PYTHONDONTWRITEBYTECODE=1
export SECSOCK_VM_DRIVER="$OUT/driver" # built by run.sh
# Under emulation every file read over the shared file system is slow: load no plugin the suite does not use.
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
summary() { echo "$1" >"$OUT/summary.txt"; }

if ! modprobe -a xfrm_user esp4 esp6 ah4 ah6 veth xfrm_interface vrf sctp >"$OUT/modprobe.log" 2>&1; then
    cat "$OUT/modprobe.log" >"$OUT/pytest.log"
    summary "0 passed, 1 failed"
    exit 1
fi
cd /tmp || exit 1
# Extra pytest arguments from run.sh, with shell quoting (e.g. -k "deleted or expired").
extra=()
eval "extra=($(cat "$OUT/pytest-args"))"
"$PY" -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" -p no:cacheprovider --junitxml=/tmp/vm-junit.xml \
    -v --durations=5 "${extra[@]}" "$HERE" >"$OUT/pytest.log" 2>&1
status=$?
"$PY" - /tmp/vm-junit.xml >"$OUT/summary.txt" <<'PY'
import sys
import xml.etree.ElementTree as ET

try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print("0 passed, 1 failed")
    raise SystemExit
suites = [root] if root.tag == "testsuite" else list(root)
tests = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get(k, 0)) for s in suites for k in ("failures", "errors", "skipped"))
print(f"{tests - bad} passed, {bad if tests else max(bad, 1)} failed")
PY
echo "pytest exit $status" >>"$OUT/pytest.log"
