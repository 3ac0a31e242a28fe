#!/usr/bin/env bash
# The sdist as a user without a wheel meets it: built from the checkout, installed from the tarball alone into
# a fresh venv (pip builds it in an isolated environment with the [build-system] requirements from the index,
# as it does for any user), then the test suite run from the unpacked tarball against that install, never the
# checkout's src/. Arguments go to pytest (tools/test.sh adds its JUnit report). Needs the dev venv (build,
# pip >= 25.1 for --group).
#
# --unprivileged (first argument): the tests run as an unprivileged user (uid 65534, no capabilities), as in
# the workflow's sdist job (GitHub's runner user): installed as root as above, then the unpacked tree and the
# venv handed to that user in a world-readable temporary directory, with a venv of the system's Python
# (/usr/bin/python3; the dev venv's Python may live under /root, which is mode 700), and the JUnit report
# (--junitxml=PATH) written there and copied back.
set -euo pipefail
cd "$(dirname "$0")/.."
user=
if [[ ${1:-} == --unprivileged ]]; then
    user=65534
    shift
fi
if [[ $user ]]; then
    out=$(mktemp -d "${TMPDIR:-/tmp}/secsock-sdist-XXXXXX")
    trap 'rm -rf "$out"' EXIT
    base_python=/usr/bin/python3
else
    out=$PWD/build/sdist-check
    rm -rf "$out"
    base_python=python
fi
mkdir -p "$out"
python -m build --sdist --outdir "$out/dist" . >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
sdists=("$out"/dist/*.tar.gz)
sdist=${sdists[0]}
echo "sdist: $(basename "$sdist")"

"$base_python" -m venv --without-pip "$out/venv"
tar -xzf "$sdist" -C "$out"
unpacked=$out/$(basename "$sdist" .tar.gz)
# The test requirements come from the sdist's own pyproject.toml (its test group), the package from the tarball.
python -m pip --python "$out/venv/bin/python" install -q --group "$unpacked/pyproject.toml:test"
python -m pip --python "$out/venv/bin/python" install -q --no-cache-dir "$sdist"

run=()
pytest_args=("$@")
report=
if [[ $user ]]; then
    chmod 755 "$out"
    chown -R "$user:$user" "$out"
    # The user's own capabilities, checked in the process that then runs the tests: none at all.
    run=(setpriv --reuid "$user" --regid "$user" --clear-groups --inh-caps -all -- env HOME="$out"
        bash -c 'capeff=$(awk "/^CapEff:/ {print \$2}" /proc/self/status)
            (( 16#$capeff == 0 )) || { echo "sdist_check: capabilities still effective: $capeff" >&2; exit 1; }
            exec "$@"' unprivileged)
    for i in "${!pytest_args[@]}"; do
        if [[ ${pytest_args[i]} == --junitxml=* ]]; then
            report=${pytest_args[i]#--junitxml=}
            pytest_args[i]=--junitxml=$out/report.xml
        fi
    done
fi

cd "$unpacked"
# Both the facade and the extension must come from the venv's site-packages.
"${run[@]}" "$out/venv/bin/python" - <<'PY'
import os
import sysconfig
import secsock
import secsock._secsock as ext
site = sysconfig.get_paths()["platlib"]
for module in (secsock, ext):
    assert module.__file__.startswith(site), f"{module.__name__} imported from {module.__file__}, not {site}"
print(f"secsock {secsock.__version__} ({secsock.BACKEND}) from {site}, as uid {os.getuid()}")
PY
status=0
"${run[@]}" "$out/venv/bin/python" -m pytest tests -p no:cacheprovider "${pytest_args[@]}" || status=$?
if [[ $report && -f $out/report.xml ]]; then
    cp "$out/report.xml" "$report"
fi
exit "$status"
