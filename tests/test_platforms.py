"""The package imports everywhere; without a backend, query raises UnsupportedPlatformError (issue 2, 7)."""

from __future__ import annotations

import asyncio
import errno
import sys
import textwrap

import pytest

import secsock
from fresh_process import run_child
from secsock import _extension


@pytest.fixture
def no_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_extension, "backend", None)


@pytest.mark.parametrize("call", ["query", "begin_query"])
def test_unsupported_platform_error_names_the_supported_platforms(no_backend: None, call: str) -> None:
    with pytest.raises(
        secsock.UnsupportedPlatformError, match="supported platforms: Windows and Linux"
    ) as caught:
        getattr(secsock, call)(3)
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSYS
    assert f"secsock.{call}" in str(caught.value)


def test_query_async_without_backend(no_backend: None) -> None:
    with pytest.raises(secsock.UnsupportedPlatformError):
        asyncio.run(secsock.query_async(3))


def test_package_imports_without_the_extension_on_an_unsupported_platform() -> None:
    # A fresh interpreter that pretends to be macOS and cannot find the extension at all.
    code = textwrap.dedent(
        """
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "secsock._secsock":
                    raise ImportError("no extension here")
        sys.meta_path.insert(0, Block())
        sys.platform = "darwin"
        import secsock
        assert secsock.BACKEND is None
        try:
            secsock.query(3)
        except secsock.UnsupportedPlatformError as exc:
            print("raised:", exc)
        # SecurityInfo keeps its fields in Python here (no SecurityInfoBase from the extension).
        info = secsock.SecurityInfo(secsock.SecurityProtocol.IPSEC, secsock.ConnectionFlags.SECURED)
        info.mm_sa_id = 7
        print("bases:", [cls.__module__ for cls in type(info).__mro__])
        print("info:", info, info.secured, info.ipsec)
        """
    )
    done = run_child([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "raised: [Errno" in done.stdout and "'darwin'" in done.stdout
    assert "bases: ['secsock._types', 'secsock._types', 'builtins']" in done.stdout
    assert "info: <secsock.SecurityInfo protocol=IPSEC flags=SECURED mm_sa_id=7> True None" in done.stdout


def test_a_missing_extension_on_a_supported_platform_is_not_hidden() -> None:
    code = textwrap.dedent(
        """
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "secsock._secsock":
                    raise ImportError("broken install")
        sys.meta_path.insert(0, Block())
        import secsock
        """
    )
    done = run_child([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0 and "broken install" in done.stderr


def test_backend_name_matches_the_platform() -> None:
    expected = {"win32": "windows", "linux": "linux"}[sys.platform]
    assert secsock.BACKEND == expected


def test_every_public_name_and_method_has_a_docstring() -> None:
    import inspect

    missing = []
    for name in secsock.__all__:
        obj = getattr(secsock, name)
        if name.startswith("__") or isinstance(obj, (str, tuple, type(None))):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj) and not issubclass(obj, (int, tuple)):
            for attribute, value in vars(obj).items():
                if not attribute.startswith("_") and (callable(value) or isinstance(value, property)):
                    if not inspect.getdoc(value):
                        missing.append(f"{name}.{attribute}")
    assert missing == []
