"""What a leak check compares before and after: the open descriptors on POSIX, the number of the process's
handles on Windows (sockets, events, tokens and the rest are all handles there)."""

from __future__ import annotations

import os
import sys


def open_handles() -> object:
    """A value equal before and after anything that leaks no descriptor or handle."""
    if sys.platform == "win32":
        return handle_count()
    return frozenset(int(name) for name in os.listdir("/proc/self/fd"))


def handle_count() -> int:
    """GetProcessHandleCount; under Wine, which answers 0 there, the process's entries of the system handle
    table (NtQuerySystemInformation(SystemHandleInformation), which Wine fills from its server)."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    kernel32.GetProcessHandleCount.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD)]
    count = wintypes.DWORD()
    if not kernel32.GetProcessHandleCount(kernel32.GetCurrentProcess(), ctypes.byref(count)):
        raise ctypes.WinError(ctypes.get_last_error())
    if count.value:
        return count.value

    class Entry(ctypes.Structure):  # Wine's SYSTEM_HANDLE_ENTRY
        _fields_ = [
            ("owner_pid", wintypes.ULONG),
            ("object_type", ctypes.c_ubyte),
            ("handle_flags", ctypes.c_ubyte),
            ("handle_value", wintypes.USHORT),
            ("object", ctypes.c_void_p),
            ("access", wintypes.ULONG),
        ]

    ntdll = ctypes.WinDLL("ntdll")
    status_info_length_mismatch = 0xC0000004
    size = 1 << 16
    while True:
        buffer = ctypes.create_string_buffer(size)
        status = ntdll.NtQuerySystemInformation(16, buffer, size, None) & 0xFFFFFFFF
        if status != status_info_length_mismatch:
            break
        size *= 2
    if status != 0:
        raise OSError(f"NtQuerySystemInformation(SystemHandleInformation) failed: 0x{status:08x}")
    entries = ctypes.c_ulong.from_buffer(buffer).value
    table = (Entry * entries).from_buffer(buffer, ctypes.sizeof(ctypes.c_void_p))
    pid = os.getpid()
    return sum(1 for entry in table if entry.owner_pid == pid)
