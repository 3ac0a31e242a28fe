"""Build the secsock._secsock extension: the module's files plus the backend for the platform being built.

The extension uses the stable ABI (Py_LIMITED_API, CPython 3.9 and newer), so one wheel serves every later
CPython. A free-threaded CPython (3.14t) has no limited API: there it is built for that version alone.
Platforms without a backend get a pure-Python install whose query raises UnsupportedPlatformError.
"""

import sys
import sysconfig

from setuptools import Extension, setup

LIMITED_API = "0x03090000"
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

backends = {
    "win32": (
        [
            "csrc/windows/query.c",
            "csrc/windows/overlapped.c",
            "csrc/windows/family.c",
            "csrc/windows/tokens.c",
            "csrc/windows/secsock_decode.c",
            "csrc/windows/stats.c",
            "csrc/windows/sys_calls.c",
        ],
        ["ws2_32", "fwpuclnt", "advapi32"],
    ),
    "linux": (
        [
            "csrc/linux/parse.c",
            "csrc/linux/netlink.c",
            "csrc/linux/snapshot_index.c",
            "csrc/linux/snapshot.c",
            "csrc/linux/flow.c",
            "csrc/linux/match.c",
            "csrc/linux/seam.c",
            "csrc/linux/stats.c",
            "csrc/family_posix.c",
        ],
        [],
    ),
}
platform = "linux" if sys.platform.startswith("linux") else sys.platform

ext_modules = []
if platform in backends:
    backend_sources, libraries = backends[platform]
    # An undeclared function is an error on every compiler: MSVC would assume cdecl (C4013), and on x86 the
    # stdcall import of fwpuclnt.lib would then not link.
    if platform == "win32":
        warnings = ["/W4", "/we4013"]
    else:
        warnings = ["-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
    ext_modules.append(
        Extension(
            "secsock._secsock",
            sources=[
                "csrc/_secsock.c",
                "csrc/module/errors_args.c",
                "csrc/module/results.c",
                "csrc/module/query_entry.c",
                "csrc/module/pending.c",
                "csrc/module/family.c",
                "csrc/secsock_common.c",
                *backend_sources,
            ],
            include_dirs=["csrc"],
            define_macros=[] if FREE_THREADED else [("Py_LIMITED_API", LIMITED_API)],
            libraries=libraries,
            extra_compile_args=warnings,
            py_limited_api=not FREE_THREADED,
        )
    )

setup(
    ext_modules=ext_modules,
    options={"bdist_wheel": {"py_limited_api": "cp39"}} if ext_modules and not FREE_THREADED else {},
)
