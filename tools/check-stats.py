#!/usr/bin/env python3
"""Checks a `--stats FILE` document against doc/stats.schema.json (or any JSON document
against the schema given, e.g. `--status --pool --json` against doc/pool-status.schema.json).

    tools/check-stats.py STATS.json [SCHEMA.json]

Exit status 0 when it validates, 1 with one line per error when it does not, 2 when the
document is no JSON or the validator is missing (Debian: python3-jsonschema).
"""
import json
import pathlib
import sys


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    schema_path = (pathlib.Path(sys.argv[2]) if len(sys.argv) == 3 else
                   pathlib.Path(__file__).resolve().parent.parent / "doc" / "stats.schema.json")
    try:
        import jsonschema
    except ImportError:
        print("check-stats: python3-jsonschema is missing (tools/setup-debian.sh test)",
              file=sys.stderr)
        return 2
    try:
        document = json.loads(pathlib.Path(sys.argv[1]).read_text())
    except (OSError, ValueError) as e:
        print(f"check-stats: {sys.argv[1]}: {e}", file=sys.stderr)
        return 2
    schema = json.loads(schema_path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    for error in errors[:20]:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        print(f"check-stats: {where}: {error.message}", file=sys.stderr)
    if errors:
        print(f"check-stats: {len(errors)} error(s) against {schema_path}", file=sys.stderr)
        return 1
    jobs = document.get("jobs") if isinstance(document, dict) else None
    counted = f" ({len(jobs)} job(s))" if isinstance(jobs, list) else ""
    print(f"check-stats: {sys.argv[1]} is valid{counted}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
