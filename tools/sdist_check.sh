#!/usr/bin/env bash
# The sdist as a user without a wheel meets it: built from the checkout, installed from the tarball alone into
# a fresh venv (pip builds it in an isolated environment with the [build-system] requirements from the index,
# as it does for any user), then the test suite run from the unpacked tarball against that install, never the
# checkout's src/. Arguments go to pytest (tools/test.sh adds its JUnit report). Needs the dev venv (build,
# pip >= 25.1 for --group).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$PWD/build/sdist-check
rm -rf "$out"
mkdir -p "$out"
python -m build --sdist --outdir "$out/dist" . >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
sdists=("$out"/dist/*.tar.gz)
sdist=${sdists[0]}
echo "sdist: $(basename "$sdist")"

python -m venv --without-pip "$out/venv"
tar -xzf "$sdist" -C "$out"
unpacked=$out/$(basename "$sdist" .tar.gz)
# The test requirements come from the sdist's own pyproject.toml (its test group), the package from the tarball.
python -m pip --python "$out/venv/bin/python" install -q --group "$unpacked/pyproject.toml:test"
python -m pip --python "$out/venv/bin/python" install -q --no-cache-dir "$sdist"

cd "$unpacked"
# Both the facade and the extension must come from the venv's site-packages.
"$out/venv/bin/python" - <<'PY'
import sysconfig
import secsock
import secsock._secsock as ext
site = sysconfig.get_paths()["platlib"]
for module in (secsock, ext):
    assert module.__file__.startswith(site), f"{module.__name__} imported from {module.__file__}, not {site}"
print(f"secsock {secsock.__version__} ({secsock.BACKEND}) from {site}")
PY
exec "$out/venv/bin/python" -m pytest tests -p no:cacheprovider "$@"
