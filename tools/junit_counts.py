"""Print "PASSED FAILED" from a pytest JUnit report, counting errors and skips as failures.

No suite passes by skipping, and a report that is missing, unreadable or holds no test counts as a failure.
Used by tools/test.sh and hardening/sanitize.sh.
"""

import sys
import xml.etree.ElementTree as ET


def counts(path: str) -> tuple[int, int]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return 0, 1
    suites = [root] if root.tag == "testsuite" else list(root)
    tests = sum(int(suite.get("tests", 0)) for suite in suites)
    bad = sum(int(suite.get(key, 0)) for suite in suites for key in ("failures", "errors", "skipped"))
    return tests - bad, bad if tests else max(bad, 1)


if __name__ == "__main__":
    print(*counts(sys.argv[1]))
