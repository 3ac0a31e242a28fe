"""Windows account names to SIDs, for Requirement(member_of=...): looked up once, when the requirement is
built, rather than by CheckTokenMembership's caller on every connection (LookupAccountNameW can ask a domain
controller). Through ctypes: it runs once per Requirement, never on a query's path."""

from __future__ import annotations

import ctypes
from typing import Any

__all__ = ["sid_of"]

_ERROR_INSUFFICIENT_BUFFER = 122
_ERROR_NONE_MAPPED = 1332
_ERROR_INVALID_SID = 1337
_api: Any = None


def _load() -> Any:
    global _api
    if _api is None:
        from ctypes import wintypes

        advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined]
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        dword_p = ctypes.POINTER(wintypes.DWORD)
        advapi32.LookupAccountNameW.argtypes = [
            wintypes.LPCWSTR, wintypes.LPCWSTR, ctypes.c_void_p, dword_p, wintypes.LPWSTR, dword_p, dword_p,
        ]  # fmt: skip
        advapi32.LookupAccountNameW.restype = wintypes.BOOL
        advapi32.ConvertSidToStringSidW.argtypes = [ctypes.c_void_p, ctypes.POINTER(wintypes.LPWSTR)]
        advapi32.ConvertSidToStringSidW.restype = wintypes.BOOL
        advapi32.ConvertStringSidToSidW.argtypes = [wintypes.LPCWSTR, ctypes.POINTER(ctypes.c_void_p)]
        advapi32.ConvertStringSidToSidW.restype = wintypes.BOOL
        kernel32.LocalFree.argtypes = [ctypes.c_void_p]
        kernel32.LocalFree.restype = ctypes.c_void_p
        _api = (advapi32, kernel32, wintypes)
    return _api


def _os_error(call: str, what: str) -> OSError:
    code = ctypes.get_last_error()  # type: ignore[attr-defined]
    return OSError(None, f"{call} failed ({what}): {ctypes.FormatError(code)}", None, code)  # type: ignore[attr-defined]


def sid_of(argument: str, sid_or_account: str) -> str:
    """The SID string ("S-1-...") of sid_or_account: a SID string checked and returned in canonical form, an
    account name ("Everyone", "DOMAIN\\group") looked up. ValueError naming argument for an unknown name or
    a malformed SID; OSError (winerror) if the lookup itself failed. Windows only."""
    advapi32, kernel32, wintypes = _load()
    if sid_or_account[:2].upper() == "S-":
        sid = ctypes.c_void_p()
        if not advapi32.ConvertStringSidToSidW(sid_or_account, ctypes.byref(sid)):
            if ctypes.get_last_error() == _ERROR_INVALID_SID:  # type: ignore[attr-defined]
                raise ValueError(f"{argument}: {sid_or_account!r} is not a valid SID")
            raise _os_error("ConvertStringSidToSid", sid_or_account)
        try:
            return _sid_text(advapi32, kernel32, wintypes, sid)
        finally:
            kernel32.LocalFree(sid)
    sid_size, domain_size, use = wintypes.DWORD(0), wintypes.DWORD(0), wintypes.DWORD(0)
    for _ in range(2):  # the size query, then the lookup
        buffer = ctypes.create_string_buffer(max(sid_size.value, 1))
        domain = ctypes.create_unicode_buffer(max(domain_size.value, 1))
        if advapi32.LookupAccountNameW(
            None, sid_or_account, buffer if sid_size.value else None, ctypes.byref(sid_size),
            domain if domain_size.value else None, ctypes.byref(domain_size), ctypes.byref(use),
        ):  # fmt: skip
            if sid_size.value:
                return _sid_text(advapi32, kernel32, wintypes, ctypes.cast(buffer, ctypes.c_void_p))
            continue
        code = ctypes.get_last_error()  # type: ignore[attr-defined]
        if code == _ERROR_NONE_MAPPED:
            raise ValueError(f"{argument}: no account or group named {sid_or_account!r}")
        if code != _ERROR_INSUFFICIENT_BUFFER:
            raise _os_error("LookupAccountName", sid_or_account)
    raise _os_error("LookupAccountName", f"{sid_or_account}: the size needed changed")


def _sid_text(advapi32: Any, kernel32: Any, wintypes: Any, sid: Any) -> str:
    text = wintypes.LPWSTR()
    if not advapi32.ConvertSidToStringSidW(sid, ctypes.byref(text)):
        raise _os_error("ConvertSidToStringSid", "the SID found")
    try:
        return str(text.value)
    finally:
        kernel32.LocalFree(text)
