"""The fwpuclnt.dll test double (tests/windows/fwpuclnt_double.c) scripted from Python through ctypes.

Only where tools/windows_python.py installed the double beside secsock's module (SECSOCK_DOUBLE=1, Wine):
there the module's fwpuclnt.dll is the double, so loading that file gives its control API. The structures
mirror tests/windows/fwpuclnt_double.h.
"""

from __future__ import annotations

import ctypes
from ctypes import wintypes
from pathlib import Path

import secsock

# dbl_step.kind / .when
ANSWER, MSGSIZE, ERROR = 0, 1, 2
NOW, PEND, PEND_AUTO, BLOCK = 0, 1, 2, 3
# dbl_variants flags (fwpuclnt_double.h)
VAR_UNCANCELLABLE, VAR_INTERNAL_UNTOUCHED = 0x10, 0x40
MAX_CALLS = 64


class Step(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("when", ctypes.c_int),
        ("delay_ms", ctypes.c_int),
        ("error", ctypes.c_int),
        ("needed", wintypes.ULONG),
        ("ipsec2", ctypes.c_int),
        ("short_len", wintypes.ULONG),
        ("protocol", wintypes.ULONG),
        ("flags", wintypes.ULONG),
        ("mm_sa_id", ctypes.c_uint64),
        ("qm_sa_id", ctypes.c_uint64),
        ("negotiation_winerr", ctypes.c_uint32),
        ("sa_lookup_context", ctypes.c_byte * 16),
        # Zeros the double reads as its defaults if the C structure grows fields at its end.
        ("_reserved", ctypes.c_byte * 256),
    ]


class Call(ctypes.Structure):
    _fields_ = [
        ("function", ctypes.c_int),
        ("sock", ctypes.c_size_t),
        ("template_null", ctypes.c_int),
        ("template_len", wintypes.ULONG),
        ("protocol", wintypes.ULONG),
        ("token_mask", wintypes.ULONG),
        ("ipsec2_flags", wintypes.ULONG),
        ("field_mask", wintypes.ULONG),
        ("peer_family", ctypes.c_int),
        ("peer_port", wintypes.USHORT),
        ("peer_addr", ctypes.c_ubyte * 16),
        ("peer_flowinfo", wintypes.ULONG),
        ("peer_scope_id", wintypes.ULONG),
        ("info_null", ctypes.c_int),
        ("len_null", ctypes.c_int),
        ("len_in", wintypes.ULONG),
        ("overlapped_null", ctypes.c_int),
        ("event_low_bit", ctypes.c_int),
        ("routine_null", ctypes.c_int),
        ("input_null", ctypes.c_int),
        ("input_len", wintypes.ULONG),
        ("security_flags", wintypes.ULONG),
        ("ipsec_flags", wintypes.ULONG),
        ("string_lens", wintypes.ULONG * 3),
        ("strings", wintypes.WCHAR * 96),
        ("result", ctypes.c_int),
        ("scripted", ctypes.c_int),
    ]


class Double:
    """The double's control API (cdecl exports of the module's fwpuclnt.dll)."""

    def __init__(self) -> None:
        path = Path(secsock.__file__).resolve().parent / "fwpuclnt.dll"
        if not path.is_file():
            raise AssertionError(f"no fwpuclnt double beside secsock's module: {path}")
        self.path = path
        self.dll = ctypes.CDLL(str(path))
        self.dll.dbl_script.argtypes = [ctypes.POINTER(Step)]
        self.dll.dbl_calls.argtypes = [ctypes.POINTER(Call), ctypes.c_int]
        self.dll.dbl_tokens.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_int]
        self.dll.dbl_set_port.argtypes = [wintypes.HANDLE, ctypes.c_size_t]
        self.dll.dbl_set_loopback_clear.argtypes = [ctypes.c_int]

    def reset(self) -> None:
        self.dll.dbl_reset()

    def script(self, kind: int = ANSWER, when: int = NOW, **fields: int) -> None:
        self.dll.dbl_script(ctypes.byref(Step(kind=kind, when=when, **fields)))

    def calls(self) -> list[Call]:
        out = (Call * MAX_CALLS)()
        count = self.dll.dbl_calls(out, MAX_CALLS)
        return list(out[:count])

    def release(self) -> int:
        """Complete the pending steps (DBL_PEND) now; how many."""
        return int(self.dll.dbl_release())

    def blocked(self) -> int:
        """How many calls are blocked inside the double now (BLOCK steps); release() lets them go."""
        return int(self.dll.dbl_blocked())

    def variants(self, flags: int, value: int = 0) -> None:
        self.dll.dbl_variants(ctypes.c_uint(flags), ctypes.c_uint64(value))

    def in_flight(self) -> int:
        return int(self.dll.dbl_in_flight())

    def tokens(self) -> list[int]:
        out = (ctypes.c_uint64 * 256)()
        return list(out[: self.dll.dbl_tokens(out, 256)])

    def loopback_clear(self, on: bool) -> None:
        """The assumed variant: a loopback peer is answered in the clear, with no tokens (see the double)."""
        self.dll.dbl_set_loopback_clear(int(on))
