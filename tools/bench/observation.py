"""The benchmark suite's "observation" section (issue 12): what watching a job costs.

The same producer runs, over the same warm pool, in turns with observation off and on: on is
`--stats FILE` (each job's statistics recorded and written), `--metrics` on a loopback port that
nobody scrapes, and the progress line forced on (`--progress`). Each turn's ratio is taken
between the two runs just made, and the row shows the median of those ratios next to the two
medians, against the target of 1.02 (2%).

run.py calls section(suite) for `--only observation` and in the full suite.
"""

import os
import statistics
import tempfile


def _median(values):
    return statistics.median(values) if values else float("nan")


def _paired(suite, pool_port, env, on_args, off_args, turns):
    """map_ms of every job, off and on, and the ratio of each turn's medians (on / off)."""
    off, on, ratios = [], [], []
    for turn in range(turns):
        # Alternate which goes first, so that a drift in the host's speed touches both alike.
        order = [("off", off_args), ("on", on_args)]
        if turn % 2:
            order.reverse()
        this_turn = {}
        for name, extra in order:
            values, _ = suite.produce(pool_port, env, extra)
            this_turn[name] = values["map_ms"]
        off += this_turn["off"]
        on += this_turn["on"]
        ratios.append(_median(this_turn["on"]) / _median(this_turn["off"]))
    return off, on, ratios


def section(suite, pool_class, free_port, log):
    log("observation: the same jobs with observation off and on (--stats, --metrics, progress)")
    turns = suite.reps(12, 3)
    port = free_port()
    stats = tempfile.NamedTemporaryFile(prefix="pymar-bench-stats-", suffix=".json",
                                        delete=False).name
    on_args = ["--stats", stats, "--metrics", f"127.0.0.1:{free_port()}", "--progress"]
    off_args = ["--no-progress"]
    jobs = [
        ("integration, warm pool of 2, time inside `map`",
         {"BENCH_JOB": "integration", "BENCH_REPS": str(suite.reps(10, 3))}),
        ("10^4 trivial slices, warm pool of 2, time inside `map`",
         {"BENCH_JOB": "trivial", "BENCH_SLICES": "10000", "BENCH_REPS": str(suite.reps(10, 3))}),
    ]
    raw = {}
    try:
        with pool_class(suite.task, port, 2):
            suite.produce(port, {"BENCH_JOB": "integration", "BENCH_REPS": "1"})  # joins the pool
            for label, env in jobs:
                off, on, ratios = _paired(suite, port, env, on_args, off_args, turns)
                ratio = _median(ratios)
                suite.row("obs", f"{label}, observation on", "the same, observation off",
                          _median(off), _median(on), "ms", "≤ 1.02x", ratio <= 1.02, ratio=ratio)
                raw[env["BENCH_JOB"]] = {"off_ms": off, "on_ms": on, "turn_ratios": ratios}
    finally:
        if os.path.exists(stats):
            os.unlink(stats)
    suite.raw["observation"] = raw
    suite.notes.append("observation: ratio = median over turns of (median `map` time with "
                       "--stats, --metrics and --progress) / (median without), each turn "
                       "running both, in alternating order.")
