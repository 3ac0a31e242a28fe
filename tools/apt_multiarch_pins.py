"""Print apt version pins that let an i386 package install beside its amd64 libraries.

Multi-Arch: same libraries must have the same version on both architectures. When the mirror's i386 security
index is stale, an amd64 library installed from it has no i386 twin, and apt refuses the i386 package. For
every such library in the package's dependency closure this picks the newest version the mirror offers for
both architectures (which may be a point release above or a security revision below what is installed) and
prints `name:amd64=VERSION name:i386=VERSION` pins for apt-get install --allow-downgrades.
Used by tools/setup.sh only when the plain install failed.
"""

from __future__ import annotations

import subprocess
import sys


def apt_cache(*args: str) -> str:
    return subprocess.run(["apt-cache", *args], capture_output=True, text=True, check=False).stdout


def closure(package: str) -> list[str]:
    out = apt_cache(
        "depends",
        "--recurse",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
        package,
    )
    names = {
        line.strip() for line in out.splitlines() if line and not line.startswith(" ") and ":i386" in line
    }
    return sorted(name.split(":")[0] for name in names)


def offered(names: list[str]) -> dict[tuple[str, str], list[str]]:
    """(name, arch) -> the versions the indexes offer, newest first; one apt-cache call for all."""
    result: dict[tuple[str, str], list[str]] = {}
    query = [f"{name}:{arch}" for name in names for arch in ("amd64", "i386")]
    for line in apt_cache("madison", *query).splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) != 3:
            continue
        name, version, source = fields[0].split(":")[0], fields[1], fields[2]
        arch = "i386" if " i386 " in f" {source} " else "amd64" if " amd64 " in f" {source} " else None
        if arch is not None:
            result.setdefault((name, arch), []).append(version)
    return result


def installed_multiarch_same(names: list[str]) -> dict[str, str]:
    """name -> installed amd64 version, for the Multi-Arch: same packages among names; one dpkg-query."""
    done = subprocess.run(
        [
            "dpkg-query",
            "-W",
            "-f=${Package} ${Version} ${Multi-Arch} ${Status}\n",
            *(f"{n}:amd64" for n in names),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    found = {}
    for line in done.stdout.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[2] == "same" and parts[3].endswith("installed"):
            found[parts[0]] = parts[1]
    return found


def main(package: str) -> int:
    names = closure(package)
    installed = installed_multiarch_same(names)
    offers = offered(sorted(installed))
    pins = []
    for name, current in sorted(installed.items()):
        i386 = offers.get((name, "i386"), [])
        if current in i386:
            continue  # the twin exists: nothing to pin
        common = [version for version in offers.get((name, "amd64"), []) if version in i386]
        if not common:
            print(f"no version of {name} exists for both amd64 and i386", file=sys.stderr)
            return 1
        pins += [f"{name}:amd64={common[0]}", f"{name}:i386={common[0]}"]
    print(" ".join(pins))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
