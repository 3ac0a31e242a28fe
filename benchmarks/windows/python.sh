#!/usr/bin/env bash
# secsock.query() against getpeername() and a ctypes WSAQuerySocketSecurity, on official Windows CPython under
# Wine with the fwpuclnt double (the wheel built from the sdist, as tools/windows_python.py installs it):
#   bash benchmarks/windows/python.sh [3.13|3.9]      (default 3.13; after tools/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
python=.venv/bin/python
"$python" tools/windows_python.py prepare
"$python" tools/windows_python.py run "${1:-3.13}" benchmarks/windows/python_bench.py
