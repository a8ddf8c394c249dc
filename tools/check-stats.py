#!/usr/bin/env python3
"""Checks a `--stats FILE` document against doc/stats.schema.json (or any JSON document
against the schema given, e.g. `--status --pool --json` against doc/pool-status.schema.json).

    tools/check-stats.py STATS.json [SCHEMA.json]

Exit status 0 when it validates, 1 with one line per error when it does not, 2 when the
document is no JSON or the validator is missing (Debian: python3-jsonschema). A stats document
must also hold what the schema cannot say: each job's slice runs cover its slices and elements
in order, each once, and name only workers the job lists.
"""
import json
import pathlib
import sys


def run_errors(document) -> list:
    """What a `pymar-stats` document's slice runs break, one line each."""
    errors = []
    for j, job in enumerate(document.get("jobs", [])):
        where = f"jobs/{j}/slice_runs"
        next_slice = next_element = counted = 0
        for r, run in enumerate(job["slice_runs"]):
            if run["index"] != next_slice:
                errors.append(f"{where}/{r}: begins at slice {run['index']}, not {next_slice}")
            if run["offset"] != next_element:
                errors.append(f"{where}/{r}: begins at element {run['offset']}, "
                              f"not {next_element}")
            worker = run["worker"]
            if isinstance(worker, int) and worker >= len(job["workers"]):
                errors.append(f"{where}/{r}: worker {worker} is not in workers")
            if worker is not None:
                counted += run["count"]
            next_slice = run["index"] + run["count"]
            next_element = run["offset"] + run["count"] * run["length"]
        if next_slice != job["slices_total"]:
            errors.append(f"{where}: cover {next_slice} slices of {job['slices_total']}")
        if next_element != job["elements"]:
            errors.append(f"{where}: cover {next_element} elements of {job['elements']}")
        if counted > job["slices_done"]:
            errors.append(f"{where}: {counted} slices have a worker, "
                          f"but slices_done is {job['slices_done']}")
    return errors


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
    if not errors and isinstance(document, dict) and document.get("format") == "pymar-stats":
        errors = run_errors(document)
        for error in errors[:20]:
            print(f"check-stats: {error}", file=sys.stderr)
    if errors:
        print(f"check-stats: {len(errors)} error(s) against {schema_path}", file=sys.stderr)
        return 1
    jobs = document.get("jobs") if isinstance(document, dict) else None
    counted = f" ({len(jobs)} job(s))" if isinstance(jobs, list) else ""
    print(f"check-stats: {sys.argv[1]} is valid{counted}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
