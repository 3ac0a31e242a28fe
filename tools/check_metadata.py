"""Check what a package index shows of secsock: the built wheel's and sdist's metadata and licence file.

Usage: check_metadata.py WHEEL SDIST. Prints the wheel's file list and the metadata it checked; exits non-zero
naming each problem: the PEP 639 licence (License-Expression MIT, LICENSE inside both), every C source and
header of csrc/, every test file outside the Wine and VM suites and every file of examples/ in the sdist, the
one version (src/secsock/_version.py), the project URLs, the classifiers, and no dependency published (the
PEP 735 groups stay out of the metadata), and no link in the README (the long description) that the index
cannot resolve: only http(s):// and #fragment targets.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
URLS = {"Homepage", "Source", "Issues", "Changelog"}
# Markdown link targets: inline links and images `[text](target)`, reference definitions `[label]: target`.
LINK = re.compile(r"\]\(\s*<?([^)\s>]*)|^ {0,3}\[[^\]]+\]:\s*<?(\S*?)>?(?:\s|$)", re.MULTILINE)
CODE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1|`[^`\n]*`", re.MULTILINE | re.DOTALL)


def relative_links(markdown: str) -> list[str]:
    """Link targets the index cannot resolve: anything but http(s):// and #fragments (code left out)."""
    text = CODE.sub("", markdown)
    targets = [inline or reference for inline, reference in LINK.findall(text)]
    return [t for t in targets if not t.startswith(("https://", "http://", "#"))]


def source_version() -> str:
    tree = ast.parse((ROOT / "src" / "secsock" / "_version.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == [
            "__version__"
        ]:
            return str(ast.literal_eval(node.value))
    raise SystemExit("src/secsock/_version.py sets no __version__")


def problems(meta: Message, version: str, where: str) -> list[str]:
    found = []
    expect = {
        "Name": "secsock",
        "Version": version,
        "License-Expression": "MIT",
        "License-File": "LICENSE",
        "Description-Content-Type": "text/markdown",
        "Author": "the secsock authors",
    }
    for key, value in expect.items():
        if meta.get(key) != value:
            found.append(f"{where}: {key} is {meta.get(key)!r}, expected {value!r}")
    urls = {entry.split(",")[0].strip() for entry in meta.get_all("Project-URL") or []}
    if urls != URLS:
        found.append(f"{where}: Project-URL names {sorted(urls)}, expected {sorted(URLS)}")
    classifiers = meta.get_all("Classifier") or []
    if not any(c.startswith("Development Status :: ") for c in classifiers):
        found.append(f"{where}: no Development Status classifier")
    if any(c.startswith("License :: ") for c in classifiers):
        found.append(f"{where}: a License classifier next to License-Expression (PEP 639 forbids both)")
    for key in ("Requires-Dist", "Provides-Extra"):
        if meta.get_all(key):
            found.append(f"{where}: {key} {meta.get_all(key)} published (development tools are groups)")
    description = meta.get_payload()
    if not isinstance(description, str) or not description.strip():
        found.append(f"{where}: no long description (the README)")
    else:
        for target in relative_links(description):
            found.append(
                f"{where}: README links to {target!r}, which the index cannot resolve (make it absolute)"
            )
    return found


def main(wheel_path: str, sdist_path: str) -> int:
    version = source_version()
    found: list[str] = []
    with zipfile.ZipFile(wheel_path) as wheel:
        names = wheel.namelist()
        print("\n".join(names))
        info = f"secsock-{version}.dist-info"
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
        for required in (f"{info}/licenses/LICENSE", "secsock/py.typed", "secsock/_secsock.pyi"):
            if required not in names:
                found.append(f"wheel: {required} missing")
    shown = ("Version", "License-Expression", "License-File", "Project-URL")
    print({key: metadata.get_all(key) for key in shown})
    found += problems(metadata, version, "wheel METADATA")
    with tarfile.open(sdist_path) as sdist:
        top = f"secsock-{version}"
        members = set(sdist.getnames())
        pkg_info = sdist.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        found += problems(Parser().parsestr(pkg_info.read().decode()), version, "sdist PKG-INFO")
        # Every platform's C sources and headers, wherever in csrc/ they are, every test file but the Wine
        # and VM suites' (MANIFEST.in names the test directories one by one), and the examples the tests run.
        sources = [str(path.relative_to(ROOT)) for path in (ROOT / "csrc").rglob("*.[ch]")]
        tracked = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "tests", "examples"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        tracked = [name for name in tracked if not name.startswith(("tests/windows/", "tests/vm/"))]
        tracked = [name for name in tracked if not name.endswith(".gitignore")]
        if not any(name.startswith("examples/") for name in tracked):
            found.append("git ls-files examples lists nothing: run from a checkout")
        for required in ("LICENSE", "CHANGELOG.md", "README.md", *sorted(sources), *tracked):
            if f"{top}/{required}" not in members:
                found.append(f"sdist: {required} missing")
    for problem in found:
        print(f"check_metadata: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
