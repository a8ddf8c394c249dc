#!/usr/bin/env python3
"""Counts the tests of one `meson test` run from BUILD/meson-logs/testlog.json.

    tools/test-counts.py BUILD          one line: "T tests: P passed, F failed, S skipped
                                        (C doctest cases)", then one line per test that did not
                                        pass
    tools/test-counts.py --plain BUILD  "P F S" for a script to add up

Exit status: 0 when at least one test ran and none failed, 1 otherwise (no test at all is a
failure: a step that runs nothing proves nothing), 2 when the log is missing or unreadable.
"""
import json
import re
import sys

PASSED = {"OK", "EXPECTEDFAIL"}
SKIPPED = {"SKIP"}
# Everything else (FAIL, TIMEOUT, ERROR, UNEXPECTEDPASS, ...) is a failure.

# doctest's last line: "[doctest] test cases:  25 |  25 passed | 0 failed | 0 skipped"
DOCTEST_CASES = re.compile(r"\[doctest\] test cases:\s*(\d+)")


def read_log(build):
    path = f"{build}/meson-logs/testlog.json"
    try:
        with open(path, encoding="utf-8") as log:
            return [json.loads(line) for line in log if line.strip()]
    except (OSError, ValueError) as error:
        print(f"test-counts: cannot read {path}: {error}", file=sys.stderr)
        sys.exit(2)


def main(argv):
    plain = len(argv) == 2 and argv[0] == "--plain"
    if not plain and len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    tests = read_log(argv[-1])
    passed = [t for t in tests if t.get("result") in PASSED]
    skipped = [t for t in tests if t.get("result") in SKIPPED]
    failed = [t for t in tests if t not in passed and t not in skipped]
    cases = sum(int(m.group(1)) for t in tests
                for m in DOCTEST_CASES.finditer(t.get("stdout") or ""))
    if plain:
        print(len(passed), len(failed), len(skipped))
    else:
        print(f"{len(tests)} tests: {len(passed)} passed, {len(failed)} failed, "
              f"{len(skipped)} skipped ({cases} doctest cases)")
        for t in failed + skipped:
            print(f"  {t.get('result')}: {t.get('name')} ({t.get('duration', 0):.1f} s)")
    return 0 if tests and not failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
