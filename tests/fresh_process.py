"""Scenarios that run in a fresh Python process: a use of missing or freed module state would crash it, and
the exit code shows that instead of taking the test run down.

MODULE_DEF is source text for such a script: secsock._secsock's PyModuleDef (CPython's layout in its default
builds) read through ctypes, so a script can call its m_clear the way the collector does and list its slots.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

# Wine's CreateProcess now and then fails before the child runs a line (ERROR_INTERNAL_ERROR, seen once in
# CI under load); a real Windows does not. Only that failure, only under Wine, is tried once more: the
# child's own behaviour is never retried.
WINE_PROCESS_START_FAILED = 1359


def under_wine() -> bool:
    if sys.platform != "win32":
        return False
    import ctypes

    return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")


def run_child(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """subprocess.run(argv, **kwargs) with text output, run once more if Wine failed to start the process."""
    kwargs.setdefault("text", True)
    try:
        return subprocess.run(argv, **kwargs)
    except OSError as exc:
        if getattr(exc, "winerror", None) != WINE_PROCESS_START_FAILED or not under_wine():
            raise
    return subprocess.run(argv, **kwargs)


MODULE_DEF = textwrap.dedent(
    """
    import ctypes

    class ModuleDefSlot(ctypes.Structure):
        _fields_ = [("slot", ctypes.c_int), ("value", ctypes.c_void_p)]

    class ModuleDef(ctypes.Structure):
        _fields_ = [
            ("ob_refcnt", ctypes.c_ssize_t), ("ob_type", ctypes.c_void_p),  # PyModuleDef_Base
            ("m_init", ctypes.c_void_p), ("m_index", ctypes.c_ssize_t), ("m_copy", ctypes.c_void_p),
            ("m_name", ctypes.c_char_p), ("m_doc", ctypes.c_char_p), ("m_size", ctypes.c_ssize_t),
            ("m_methods", ctypes.c_void_p), ("m_slots", ctypes.POINTER(ModuleDefSlot)),
            ("m_traverse", ctypes.c_void_p), ("m_clear", ctypes.c_void_p), ("m_free", ctypes.c_void_p),
        ]

    def module_def(module):
        get_def = ctypes.pythonapi.PyModule_GetDef
        get_def.argtypes, get_def.restype = [ctypes.py_object], ctypes.POINTER(ModuleDef)
        found = get_def(module).contents
        assert found.m_name == module.__name__.encode(), found.m_name
        return found

    def clear(module):
        m_clear = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object)(module_def(module).m_clear)
        assert m_clear(module) == 0

    def slot_ids(module):
        slots, ids = module_def(module).m_slots, []
        while slots[len(ids)].slot != 0:
            ids.append(slots[len(ids)].slot)
        return ids
    """
)


def run_scenario(script: str, scenario: str) -> list[str]:
    """The lines script printed when run with scenario as its argument; it must end by printing "alive"."""
    done = run_child(
        [sys.executable, "-c", script, scenario], stdin=subprocess.DEVNULL, capture_output=True, timeout=120
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines[-1:] == ["alive"], (done.returncode, done.stdout, done.stderr)
    return lines[:-1]
