#!/usr/bin/env python3
"""Counts the tests of one `meson test` run from BUILD/meson-logs/testlog.json.

    tools/test-counts.py BUILD          one line: "T tests: P passed, F failed, S skipped
                                        (C doctest cases)", then one line per test that did not
                                        pass
    tools/test-counts.py --plain BUILD  "P F S" for a script to add up
    tools/test-counts.py --failures BUILD
                                        for each test that failed, the doctest reports of its
                                        failed checks (or, when there are none, as after a crash
                                        or a timeout, the last lines it printed): a short digest
                                        for the end of a long log, where CI keeps only the tail

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


# One failed check in doctest's report starts with a line of '=' and names its file and line.
DOCTEST_SEPARATOR = "=" * 79
MAX_BLOCK_LINES = 20
MAX_DIGEST_LINES = 60


def cut(lines, most):
    return lines if len(lines) <= most else lines[:most] + [f"... ({len(lines) - most} more lines)"]


def failure_digest(test):
    """The doctest blocks of a failed test that report an error, each cut to MAX_BLOCK_LINES
    (a block's logged context can be a whole process's stderr), at most MAX_DIGEST_LINES."""
    output = (test.get("stdout") or "") + (test.get("stderr") or "")
    blocks = [b.strip("\n") for b in output.split(DOCTEST_SEPARATOR)]
    failing = [b for b in blocks if "ERROR:" in b or "FATAL ERROR" in b or "TIMEOUT" in b]
    if not failing:
        return output.splitlines()[-15:]
    lines = []
    for block in failing:
        lines += cut(block.splitlines(), MAX_BLOCK_LINES) + [""]
    return cut(lines, MAX_DIGEST_LINES)


def main(argv):
    plain = len(argv) == 2 and argv[0] == "--plain"
    failures = len(argv) == 2 and argv[0] == "--failures"
    if not plain and not failures and len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    tests = read_log(argv[-1])
    passed = [t for t in tests if t.get("result") in PASSED]
    skipped = [t for t in tests if t.get("result") in SKIPPED]
    failed = [t for t in tests if t not in passed and t not in skipped]
    cases = sum(int(m.group(1)) for t in tests
                for m in DOCTEST_CASES.finditer(t.get("stdout") or ""))
    if failures:
        for t in failed:
            print(f"-- {t.get('result')}: {t.get('name')}")
            print("\n".join("   " + line for line in failure_digest(t)))
    elif plain:
        print(len(passed), len(failed), len(skipped))
    else:
        print(f"{len(tests)} tests: {len(passed)} passed, {len(failed)} failed, "
              f"{len(skipped)} skipped ({cases} doctest cases)")
        for t in failed + skipped:
            print(f"  {t.get('result')}: {t.get('name')} ({t.get('duration', 0):.1f} s)")
    return 0 if tests and not failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
