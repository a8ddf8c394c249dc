#!/usr/bin/env python3
"""Runs Pymar's benchmark suite (issue 5) and prints a markdown table of medians and ratios.

Every figure of the framework stands next to a baseline measured in the same run, just before
it: absolute times on a shared 2-core host vary 2x from day to day, their ratios much less.

  tools/bench/run.py --build build-bench [--quick] [--only SECTION ...]

tools/bench/run.sh sets up, builds and calls this; see doc/performance.md.

For the balance section, PYMAR_BENCH_LOGS=DIR keeps the producers' and pools' -v logs in DIR
(which worker computed which slice, when), and PYMAR_BENCH_BALANCE_REVERSED=1 runs the jobs
without speculation first.
"""

import argparse
import datetime
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import observation

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ["baselines", "integration", "process", "latency", "throughput", "memory", "balance",
            "scale", "micro", "dask", "observation"]


def median(values):
    return statistics.median(values) if values else float("nan")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_bench(text):
    """The "BENCH key value" lines of a program's output, as {key: [values]}."""
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "BENCH":
            found.setdefault(parts[1], []).append(float(parts[2]))
    return found


def log(message):
    print(message, file=sys.stderr, flush=True)


def cpu_times():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields), idle


def busy_fraction(seconds=1.0):
    """How busy the machine is with other work right now: 0 idle, 1 every core busy."""
    total0, idle0 = cpu_times()
    time.sleep(seconds)
    total1, idle1 = cpu_times()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


class LoadMeter:
    """The CPU time other processes took while the suite ran, as a fraction of the machine:
    all busy time (/proc/stat) less what the suite and the processes it waited for used."""

    def __init__(self):
        self.total, self.idle = cpu_times()
        self.ours = self.own_seconds()

    @staticmethod
    def own_seconds():
        import resource
        me = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime

    def others(self):
        total, idle = cpu_times()
        ticks = os.sysconf("SC_CLK_TCK")
        busy = ((total - self.total) - (idle - self.idle)) / ticks
        ours = self.own_seconds() - self.ours
        return max(0.0, busy - ours) / max(1e-9, (total - self.total) / ticks)


def wait_for_quiet(limit_seconds, threshold=0.25):
    """Waits up to `limit_seconds` for other work to leave the CPUs mostly idle."""
    deadline = time.monotonic() + limit_seconds
    busy = busy_fraction()
    while busy > threshold and time.monotonic() < deadline:
        log(f"the machine is {busy:.0%} busy with other work: waiting for it to calm down")
        time.sleep(4)
        busy = busy_fraction()
    return busy


def priority():
    try:
        group = Path("/proc/self/autogroup").read_text().split()
        return f"nice {os.nice(0)}, its session's {group[-2]} {group[-1]}"
    except (OSError, IndexError):
        return f"nice {os.nice(0)}"


class Pool:
    """A worker pool this suite started (`BINARY --worker`), in a process group of its own."""

    def __init__(self, binary, port, workers, verbose=False, cpus=None, log_path=None, extra=()):
        self.keep_log = log_path is not None
        self.log_path = log_path or tempfile.mktemp(prefix="pymar-bench-pool-", suffix=".log")
        self.log_file = open(self.log_path, "w")
        args = [str(binary), "--worker", "-q", f"127.0.0.1:{port}", "-w", str(workers),
                "-v" if verbose else "--quiet", *extra]
        preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus is not None else None
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log_file,
                                        process_group=0, preexec_fn=preexec)
        self.workers = workers

    def worker_pids(self):
        try:
            path = f"/proc/{self.process.pid}/task/{self.process.pid}/children"
            return [int(p) for p in Path(path).read_text().split()]
        except OSError:
            return []

    def wait_for_workers(self, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.worker_pids()) < self.workers and time.monotonic() < deadline:
            time.sleep(0.05)

    def log_size(self):
        self.log_file.flush()
        return os.path.getsize(self.log_path)

    def log_since(self, offset):
        with open(self.log_path, errors="replace") as f:
            f.seek(offset)
            return f.read()

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log_file.close()
        if not self.keep_log:
            os.unlink(self.log_path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class StepProducer:
    """bench_task as a producer with BENCH_STEP=1: it makes one timed `map` call each time step()
    asks, so that the suite can run a baseline between two calls and both see the host alike
    (a shared host's speed can change by 1.6x from one second to the next)."""

    def __init__(self, binary, port, env, extra=()):
        full_env = dict(os.environ)
        full_env.update(env)
        full_env["BENCH_STEP"] = "1"
        full_env.setdefault("BENCH_REPS", "1000000")
        self.err = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [str(binary), "--produce", "-q", f"127.0.0.1:{port}", "--grace", "30", *extra],
            env=full_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
            text=True, bufsize=1)
        self.lines = []
        # Its warm-up calls run at once: nothing is timed beside them.
        self.read_until("ready")

    def read_until(self, what):
        """The words after "BENCH <what>" in the producer's next such line."""
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("the stepped producer ended early: " + self.stderr()[-2000:])
            self.lines.append(line)
            parts = line.split()
            if parts[:2] == ["BENCH", what]:
                return parts[2:]

    def step(self):
        """One timed call; its "BENCH map_ms" value."""
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return float(self.read_until("map_ms")[0])

    def stderr(self):
        self.err.seek(0)
        return self.err.read()

    def finish(self):
        """Ends the producer; its BENCH values and its stderr."""
        self.process.stdin.close()
        rest = self.process.stdout.read()
        code = self.process.wait(timeout=120)
        values = parse_bench("".join(self.lines) + rest)
        err = self.stderr()
        self.err.close()
        if code != 0 or values.get("answer_ok") != [1.0]:
            raise RuntimeError(f"stepped producer exited {code}: {rest[-2000:]}\n{err[-2000:]}")
        return values, err


def peak_rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class Suite:
    def __init__(self, build, quick):
        self.build = Path(build).resolve()
        self.quick = quick
        self.bench = self.build / "tools" / "bench"
        self.task = self.bench / "bench_task"
        self.rows = []      # the main table
        self.notes = []     # lines printed under it
        self.details = []   # extra tables (baselines, scale, micro)
        self.raw = {}       # everything measured, for results/latest.json

    # --- running things ------------------------------------------------------------------

    def reps(self, full, quick):
        return quick if self.quick else full

    def run(self, args, env=None, timeout=600, check=True):
        full_env = dict(os.environ)
        full_env.update(env or {})
        result = subprocess.run([str(a) for a in args], env=full_env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, args))} exited {result.returncode}:\n"
                               f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        return result

    def baseline(self, job, mode, reps):
        out = parse_bench(self.run([self.bench / "bench_baseline", job, mode, reps]).stdout)
        return out["compute_ms"]

    def produce(self, port, env, extra=(), timeout=600):
        """Runs bench_task as the producer against a pool on `port`; returns its BENCH values and
        its stderr (the producer logs each job and how many workers it had)."""
        args = [self.task, "--produce", "-q", f"127.0.0.1:{port}", "--grace", "30", *extra]
        result = self.run(args, env=env, timeout=timeout)
        values = parse_bench(result.stdout)
        if values.get("answer_ok") != [1.0]:
            raise RuntimeError(f"wrong answer from {env}: {result.stdout}")
        return values, result.stderr

    def row(self, section, job, baseline_name, baseline, framework, unit, target, met,
            ratio=None):
        if ratio is None and baseline:
            ratio = framework / baseline
        self.rows.append({"section": section, "job": job, "baseline_name": baseline_name,
                          "baseline": baseline, "framework": framework, "unit": unit,
                          "ratio": ratio, "target": target, "met": met})

    # --- sections ------------------------------------------------------------------------

    def section_baselines(self):
        log("baselines: serial and OpenMP (2 threads) of each example")
        reps = self.reps(15, 5)
        lines = ["| example | serial (ms) | OpenMP 2 threads (ms) | speed-up |", "|---|---|---|---|"]
        for job in ["integration", "squaredsum", "squaredsum2"]:
            serial = median(self.baseline(job, "serial", reps))
            omp = median(self.baseline(job, "omp", reps))
            self.raw[f"baseline/{job}"] = {"serial_ms": serial, "omp_ms": omp}
            lines.append(f"| {job} | {serial:.2f} | {omp:.2f} | {serial / omp:.2f}x |")
        self.details.append(("Baselines (time of the computation alone, median)", lines))

    def section_integration(self):
        log("1. integration over a warm pool of 2 workers, time inside map")
        reps = self.reps(60, 5)
        port = free_port()
        # In steps: the OpenMP program, the serial loop over each slice (alone, then two at once)
        # and one `map`, again and again. The host's speed changes from one second to the next
        # (the same loop took 15 or 24 ms): a baseline measured before the framework compares two
        # different machines.
        omp_runs, serial_slices, busy_slices, maps = [], [], [], []
        with Pool(self.task, port, 2, verbose=True) as pool:
            self.produce(port, {"BENCH_JOB": "integration", "BENCH_REPS": "1"})  # joins the pool
            offset = pool.log_size()
            warmup = 2
            producer = StepProducer(self.task, port, {"BENCH_JOB": "integration",
                                                      "BENCH_WARMUP": str(warmup)}, ["-v"])
            try:
                for step in range(reps):
                    # The `map` goes last in even steps and first in odd ones: whatever the
                    # order favours falls on both sides alike.
                    if step % 2 == 1:
                        maps.append(producer.step())
                    omp_runs += self.baseline("integration", "omp", 1)
                    # Each of the 4 slices as a plain serial loop, timed alone, and timed on
                    # two threads at once as two workers compute them.
                    serial_slices.append(parse_bench(self.run(
                        [self.bench / "bench_baseline", "integration", "slices", 1]
                    ).stdout)["slice_ms"])
                    # A thread done first waits idle, as a worker does, not spinning.
                    busy_slices.append(parse_bench(self.run(
                        [self.bench / "bench_baseline", "integration", "slices-busy", 1],
                        env={"OMP_WAIT_POLICY": "passive"}).stdout)["slice_ms"])
                    if step % 2 == 0:
                        maps.append(producer.step())
            finally:
                values, err = producer.finish()
            slice_log = pool.log_since(offset)
            squared, _ = self.produce(port, {"BENCH_JOB": "squaredsum", "BENCH_REPS": str(reps)})
        omp, framework = median(omp_runs), median(maps)
        # The ratio of each step's pair, then their median: a pair shares the host's mood.
        in_map = median([m / o for m, o in zip(maps, omp_runs)])
        self.row("1", "integration, warm pool of 2, time inside `map`", "OpenMP 2 threads", omp,
                 framework, "ms", "≤ 1.15x", in_map <= 1.15, ratio=in_map)
        copies = len(re.findall(r"running a copy", err))
        restarts = len(re.findall(r"exited with status 75", err))
        self.notes.append(f"integration: {copies} speculative copies and {restarts} worker "
                          f"restarts in {len(maps) + warmup} jobs; time inside `map` and the "
                          f"slice times are medians of {len(maps)} steps, each beside its own "
                          f"baseline run, the ratio the median of the steps' ratios.")
        by_job = {}
        for m in re.finditer(r"slice \d+ of job (\d+) finished in ([0-9.]+) ms", slice_log):
            by_job.setdefault(int(m.group(1)), []).append(float(m.group(2)))
        # Job warmup + 1 + i is step i's `map`. Each step's worker slices against that step's
        # baseline slices: the ratio of their medians, then the median over the steps.
        def slice_row(baselines, name, target, limit):
            pairs = [(median(by_job[warmup + 1 + i]), median(base))
                     for i, base in enumerate(baselines) if warmup + 1 + i in by_job]
            ratio = median([w / b for w, b in pairs])
            self.row("1", "integration, one slice's compute time on a worker (of 4)", name,
                     median([b for _, b in pairs]), median([w for w, _ in pairs]), "ms", target,
                     None if limit is None else ratio <= limit, ratio=ratio)
        # The like-for-like baseline: the same loop while both cores compute, as the two
        # workers do (alone, one core runs faster than two at once on this kind of host).
        slice_row(busy_slices, "serial loop over the same slice, two at once (both cores busy)",
                  "≤ 1.05x", 1.05)
        slice_row(serial_slices, "serial loop over the same slice, alone", "(diagnostic)", None)
        kernel = self.raw.get("micro_kernel")
        if kernel:
            self.row("1", "integration slice kernel in one process (micro, no sockets)",
                     "plain loop, same points (micro, repetitions interleaved, medians)",
                     kernel[1], kernel[0], "ms", "≤ 1.05x", kernel[0] / kernel[1] <= 1.05)
        # A user's job starts in a new producer: its first `map` includes waiting for the pool's
        # workers to join. Fresh producers in turns with fresh OpenMP programs (their first
        # parallel loop starts OpenMP's threads).
        first_maps, first_omp = [], []
        with Pool(self.task, port, 2):
            self.produce(port, {"BENCH_JOB": "integration", "BENCH_REPS": "1"})
            for _ in range(self.reps(15, 3)):
                first_omp += self.baseline("integration", "omp", 1)
                values_first, _ = self.produce(port, {"BENCH_JOB": "integration",
                                                      "BENCH_REPS": "1"})
                first_maps += values_first["map_ms"]
        first_ratio = median([m / o for m, o in zip(first_maps, first_omp)])
        self.row("1", "integration, warm pool of 2, a new producer's first `map` (waiting for "
                 "the pool included)", "OpenMP 2 threads, a new program's first loop",
                 median(first_omp), median(first_maps), "ms", "≤ 1.15x", first_ratio <= 1.15,
                 ratio=first_ratio)
        sq_omp = median(self.baseline("squaredsum", "omp", reps))
        sq = median(squared["map_ms"])
        self.row("1", "squaredsum (made on workers), time inside `map`", "OpenMP 2 threads",
                 sq_omp, sq, "ms", "(none)", None)
        self.raw["integration"] = {"omp_ms": omp_runs, "map_ms": maps,
                                   "slice_ms": by_job, "serial_slice_ms": serial_slices,
                                   "busy_slice_ms": busy_slices,
                                   "first_map_ms": first_maps, "first_omp_ms": first_omp,
                                   "squaredsum_map_ms": squared["map_ms"],
                                   "squaredsum_omp_ms": sq_omp}

    def hyperfine(self, commands, runs, name):
        out = tempfile.mktemp(prefix="pymar-bench-hyperfine-", suffix=".json")
        args = ["hyperfine", "-N", "--style", "basic", "--warmup", "1", "--runs", str(runs),
                "--export-json", out]
        for command in commands:
            args.append(command)
        result = subprocess.run(args, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"hyperfine failed:\n{result.stdout}\n{result.stderr}")
        data = json.loads(Path(out).read_text())
        os.unlink(out)
        self.raw[name] = data["results"]
        return [r["median"] * 1000 for r in data["results"]]

    def time_interleaved(self, commands, runs, pause):
        """Wall times (ms) of each command, run in turns (A B A B ...) so that a change in the
        host's speed touches all alike, with `pause` seconds before each run (0: back to back).
        One untimed turn first. Each run's output is discarded; a failed run stops the suite."""
        times = [[] for _ in commands]
        for turn in range(runs + 1):
            for i, command in enumerate(commands):
                if pause:
                    time.sleep(pause)
                start = time.perf_counter()
                result = subprocess.run(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True, timeout=120)
                took = (time.perf_counter() - start) * 1000
                if result.returncode != 0:
                    raise RuntimeError(f"{' '.join(map(str, command))} exited "
                                       f"{result.returncode}:\n{result.stderr[-2000:]}")
                if turn > 0:
                    times[i].append(took)
        return times

    def section_process(self):
        log("2. integration --produce as a whole process, in turns with the OpenMP program")
        example = self.build / "examples" / "integration"
        omp = [self.bench / "bench_baseline", "integration", "omp"]
        runs = self.reps(15, 3)
        port = free_port()
        results = {}
        with Pool(example, port, 2):
            warm = [example, "--produce", "-q", f"127.0.0.1:{port}", "--quiet"]
            self.run(warm)  # the pool joins
            for label, pause in [("back to back", 0), ("0.5 s apart", 0.5)]:
                base, framework = self.time_interleaved([omp, warm], runs, pause)
                results[label] = {"omp_ms": base, "pymar_ms": framework}
                self.row("2", f"`integration --produce`, warm pool of 2, whole process, "
                         f"runs {label}", "OpenMP program, whole process, in turns",
                         median(base), median(framework), "ms", "≤ 1.5x",
                         median(framework) / median(base) <= 1.5)
            waits = self.join_waits(example, port)
        spawn = [example, "--produce", "-w", "2", "-q", "127.0.0.1:0", "--quiet"]
        base, spawning = self.time_interleaved([omp, spawn], runs, 0)
        results["spawn"] = {"omp_ms": base, "pymar_ms": spawning}
        self.raw["process"] = results
        baseline = median(results["back to back"]["omp_ms"])
        self.row("2", "… of which: producer start to first worker joined (`-v` log)",
                 "OpenMP program, whole process", baseline, waits["join"], "ms", "(diagnostic)",
                 None)
        self.row("2", "… of which: first worker joined to job done (`-v` log)",
                 "OpenMP program, whole process", baseline, waits["job"], "ms", "(diagnostic)",
                 None)
        self.row("2", "`integration --produce -w 2` (starts its workers), whole process",
                 "OpenMP program, whole process, in turns", median(base), median(spawning), "ms",
                 "≤ 2x", median(spawning) / median(base) <= 2)

    def join_waits(self, example, port, runs=5):
        """From the producer's -v log: how long it waited for a warm worker to join, and how
        long the job took after that (medians over `runs` producer runs)."""
        stamp = r"(\d\d):(\d\d):(\d\d)\.(\d{3})"

        def at(line):
            h, m, sec, ms = map(int, re.search(stamp, line).groups())
            return ((h * 60 + m) * 60 + sec) * 1000 + ms

        joins, jobs = [], []
        for _ in range(self.reps(runs, 2)):
            err = self.run([example, "--produce", "-q", f"127.0.0.1:{port}", "-v"]).stderr
            lines = err.splitlines()
            start = next(at(l) for l in lines if "listening on" in l)
            joined = next(at(l) for l in lines if "joined" in l)
            done = next(at(l) for l in lines if re.search(r"job \d+ done", l))
            joins.append(joined - start)
            jobs.append(done - joined)
        return {"join": median(joins), "job": median(jobs)}

    def section_latency(self):
        log("3. one map of 4 trivial slices over a warm pool: latency")
        # Round trips between two processes on 2 cores are bimodal (about 20 or 70 µs, by how
        # the threads land on the cores): the floor and the framework are measured in turns.
        rtts, maps, singles, pinned = [], [], [], {"same": [], "cross": []}
        port = free_port()
        floor = self.bench / "bench_zmq_floor"
        with Pool(self.task, port, 2):
            for _ in range(self.reps(5, 2)):
                rtts += parse_bench(self.run([floor, "rtt", 2000]).stdout)["rtt_us"]
                for placement, into in pinned.items():
                    out = self.run([floor, "rtt", 2000], env={"BENCH_PIN": placement}).stdout
                    into += parse_bench(out)["rtt_us"]
                for slices, into in [(4, maps), (1, singles)]:
                    values, _ = self.produce(port, {"BENCH_JOB": "trivial",
                                                    "BENCH_SLICES": str(slices),
                                                    "BENCH_REPS": str(self.reps(150, 50)),
                                                    "BENCH_WARMUP": "20"}, ["--quiet"])
                    into += [v * 1000 for v in values["map_ms"]]
        rtt = median(rtts)
        latency = median(maps)
        self.row("3", "`map` of 4 trivial slices, warm pool of 2: latency",
                 "ZeroMQ 64 B round trip, TCP loopback", rtt, latency, "µs", "≤ 3x",
                 latency / rtt <= 3)
        self.row("3", "`map` of 1 trivial slice, warm pool of 2: latency",
                 "ZeroMQ 64 B round trip, TCP loopback", rtt, median(singles), "µs",
                 "(diagnostic)", None)
        self.row("3", "`map` of 4 trivial slices (as above)",
                 "ZeroMQ round trip, processes pinned to one core", median(pinned["same"]),
                 latency, "µs", "(diagnostic)", None)
        self.row("3", "`map` of 4 trivial slices (as above)",
                 "ZeroMQ round trip, processes pinned to two cores", median(pinned["cross"]),
                 latency, "µs", "(diagnostic)", None)
        self.notes.append("ZeroMQ round trips, median of each run: " +
                          ", ".join(f"{r:.1f}" for r in rtts) + " µs.")
        for name, values in [("4 slices", maps), ("1 slice", singles)]:
            ordered = sorted(values)
            self.notes.append(f"`map` of {name}: p10 {ordered[len(ordered) // 10]:.0f} µs, "
                              f"median {median(ordered):.0f} µs, "
                              f"p90 {ordered[len(ordered) * 9 // 10]:.0f} µs.")
        self.raw["latency"] = {"rtt_us": rtts, "map4_us": maps, "map1_us": singles,
                               "rtt_pinned_us": pinned}

    def section_throughput(self):
        log("4. trivial slices per second with 2 workers, and the cost per slice")
        port = free_port()
        # Rounds of jobs of each size, side by side, so that each round's sizes see the same host:
        # its speed changes from one second to the next. Each size's cost in a round is the
        # median of its jobs there; each ratio to 10^6 is the median of the rounds' ratios.
        # "here_1000": jobs of 10^3 slices of TrivialHere (COMPUTE_SMALL_JOBS_HERE), which map's
        # thread computes once a first run has measured them; the others go to the workers.
        sizes = [("1000", 10**3, 30), ("here_1000", 10**3, 30), ("10000", 10**4, 10),
                 ("100000", 10**5, 3), ("1000000", 10**6, 1)]
        rounds = self.reps(5, 2)
        spec = ",".join(f"{'h' if key.startswith('here') else ''}{slices}*{jobs}"
                        for key, slices, jobs in sizes)
        with Pool(self.task, port, 2):
            values, err = self.produce(port, {"BENCH_JOB": "trivial", "BENCH_SLICES": spec,
                                              "BENCH_REPS": str(rounds), "BENCH_WARMUP": "1"})
        per_round = {}  # size -> [cost per slice in µs, a round each]
        for key, slices, jobs in sizes:
            times = values[f"map_ms_{key}"][jobs:]  # the warm-up round's left out
            per_round[key] = [median(times[r * jobs:(r + 1) * jobs]) * 1000 / slices
                              for r in range(len(times) // jobs)]
        cost = {key: median(c) for key, c in per_round.items()}
        largest = sizes[-1][0]
        cost_ratio = {key: median([c / big for c, big in zip(c_list, per_round[largest])])
                      for key, c_list in per_round.items()}
        here_jobs = len(values["map_ms_here_1000"])
        computed_here = len(re.findall(r"TrivialHere over Indices.*computed here", err))
        self.notes.append(f"TrivialHere (COMPUTE_SMALL_JOBS_HERE): {computed_here} of its "
                          f"{here_jobs} jobs of 10^3 slices computed by map's thread, the rest "
                          "on the workers (each first run, and one run in 64 to measure them "
                          "again).")
        self.raw["throughput_us_per_slice"] = cost
        self.raw["throughput_us_per_slice_rounds"] = per_round
        self.raw["throughput_jobs_here"] = [computed_here, here_jobs]
        rate = 1e6 / cost[largest]
        micro = self.raw.get("micro_scheduler_wire_per_s")
        self.row("4", "trivial slices per second, 2 workers (job of 10^6 slices)",
                 "scheduler + wire in one process (micro)" if micro else "target", micro or 200000,
                 rate, "slices/s", "≥ 200,000/s", rate >= 200000)
        messages = self.raw.get("micro_messages_per_s")
        if messages:
            self.row("4", "one-slice batches per second, 8 worker processes (micro)",
                     "target for slices", 200000, messages, "slices/s", "(diagnostic)", None)
        base = "cost per slice, job of 10^6 slices"
        self.row("4", "cost per slice, job of 10^3 slices, COMPUTE_SMALL_JOBS_HERE", base,
                 cost[largest], cost["here_1000"], "µs", "≤ 1.2x",
                 cost_ratio["here_1000"] <= 1.2, ratio=cost_ratio["here_1000"])
        self.row("4", "cost per slice, job of 10^3 slices, on the workers (the default)", base,
                 cost[largest], cost["1000"], "µs", "(diagnostic)", None,
                 ratio=cost_ratio["1000"])
        for key in ["10000", "100000"]:
            self.row("4", f"cost per slice, job of 10^{len(key) - 1} slices", base,
                     cost[largest], cost[key], "µs", "(diagnostic)", None, ratio=cost_ratio[key])

    def section_memory(self):
        log("5. squaredsum2: 80 MB shipped from the producer")
        reps = self.reps(10, 3)
        bulk = parse_bench(self.run([self.bench / "bench_zmq_floor", "bulk", reps, 80]).stdout)
        zero_copy = median(bulk["bulk_zero_copy_ms"])
        copied = median(bulk["bulk_copy_ms"])
        port = free_port()
        with Pool(self.task, port, 2) as pool:
            pool.wait_for_workers()
            values, err = self.produce(port, {"BENCH_JOB": "squaredsum2", "BENCH_REPS": str(reps)},
                                       ["-v"])
            worker_peak = max(peak_rss_kib(pid) or 0 for pid in pool.worker_pids())
            plain, _ = self.produce(port, {"BENCH_JOB": "squaredsum2", "BENCH_REPS": str(reps)},
                                    ["--no-speculation"])
        jobs = reps + 2
        copies = len(re.findall(r"running a copy", err))
        restarts = len(re.findall(r"exited with status 75", err))
        port = free_port()
        with Pool(self.task, port, 2, extra=["--credit", "1"]) as pool:
            pool.wait_for_workers()
            time.sleep(0.2)
            idle_peak = max(peak_rss_kib(pid) or 0 for pid in pool.worker_pids())
            self.produce(port, {"BENCH_JOB": "squaredsum2", "BENCH_REPS": str(reps)})
            credit1_peak = max(peak_rss_kib(pid) or 0 for pid in pool.worker_pids())
        framework = median(values["map_ms"])
        self.row("5", "squaredsum2 (80 MB shipped), time inside `map`",
                 "ZeroMQ 80 MB message, zero-copy", zero_copy, framework, "ms", "≤ 2x",
                 framework / zero_copy <= 2)
        self.row("5", "… the same with `--no-speculation`", "ZeroMQ 80 MB message, zero-copy",
                 zero_copy, median(plain["map_ms"]), "ms", "(diagnostic)", None)
        self.notes.append(f"ZeroMQ 80 MB one-message transfer: zero-copy {zero_copy:.1f} ms, "
                          f"with a copy {copied:.1f} ms (medians).")
        self.notes.append(f"squaredsum2 with speculation: {copies} speculative copies of 10 MB "
                          f"slices and {restarts} worker restarts (a worker computing a copy "
                          f"that is no longer needed exits, status 75) in {jobs} jobs.")
        mib = 1024 * 1024
        data = 80e6 / mib
        producer_peak = values["producer_hwm_kib"][0] / 1024
        self.row("5", "producer peak RSS (VmHWM)", "the data (80 MB)", data, producer_peak, "MiB",
                 "≤ data + 32 MiB", producer_peak <= data + 32)
        largest = 10_000_000 / 8 * 8 / mib
        worker = worker_peak / 1024
        self.row("5", "worker peak RSS (VmHWM, largest of 2)", "largest slice (10 MB)", largest,
                 worker, "MiB", "≤ slice + 16 MiB", worker <= largest + 16)
        self.row("5", "… worker peak RSS, pool started with `--credit 1`", "largest slice (10 MB)",
                 largest, credit1_peak / 1024, "MiB", "(diagnostic)", None)
        self.row("5", "… worker RSS before any job (VmHWM)", "largest slice (10 MB)", largest,
                 idle_peak / 1024, "MiB", "(diagnostic)", None)
        self.raw["memory"] = {"bulk": bulk, "map_ms": values["map_ms"],
                              "no_speculation_map_ms": plain["map_ms"], "copies": copies,
                              "restarts": restarts,
                              "producer_hwm_kib": values["producer_hwm_kib"][0],
                              "worker_hwm_kib": worker_peak}

    def section_balance(self):
        log("6. balance: one of two workers at half speed (sharing its core with a spinner)")
        points = str(120_000_000 if not self.quick else 40_000_000)
        serial_env = {**os.environ, "BENCH_JOB": "balance_serial", "BENCH_POINTS": points}
        pin0 = lambda: os.sched_setaffinity(0, {0})
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                   preexec_fn=lambda: os.sched_setaffinity(0, {1}),
                                   process_group=0)
        logs = os.environ.get("PYMAR_BENCH_LOGS")
        if logs:
            Path(logs).mkdir(parents=True, exist_ok=True)
        runs = [("with speculation", []), ("without speculation", ["--no-speculation"])]
        if os.environ.get("PYMAR_BENCH_BALANCE_REVERSED"):
            runs.reverse()
        steps = self.reps(7, 2)
        serial = []
        results = {label: [] for label, _ in runs}
        pools, producers = [], {}
        try:
            # A producer for each mode, each with its own two pinned workers (one per core), and
            # in steps: the kernel alone on the idle core 0 (the job's work), then one job in each
            # mode; each step's ratio is to its own work, as the host's speed changes.
            for label, extra in runs:
                port = free_port()
                name = label.replace(" ", "-")
                for core in (0, 1):
                    pools.append(Pool(self.task, port, 1, cpus={core}, verbose=bool(logs),
                                      log_path=f"{logs}/pool-{name}-core{core}.log" if logs
                                      else None))
                producers[label] = StepProducer(self.task, port, {
                    "BENCH_JOB": "balance", "BENCH_POINTS": points, "BENCH_WARMUP": "1"},
                    extra + ["-v"])
            for _ in range(steps):
                out = subprocess.run([str(self.task), "--local"], env=serial_env,
                                     capture_output=True, text=True, preexec_fn=pin0,
                                     timeout=300)
                serial += parse_bench(out.stdout)["serial_ms"]
                for label, _ in runs:
                    results[label].append(producers[label].step())
        finally:
            errs = {}
            for label, producer in producers.items():
                try:
                    errs[label] = producer.finish()[1]
                except RuntimeError as e:
                    errs[label] = str(e)
            for pool in pools:
                pool.stop()
            os.killpg(spinner.pid, signal.SIGKILL)
            spinner.wait()
        for label, err in errs.items():
            if logs:
                Path(f"{logs}/producer-{label.replace(' ', '-')}.log").write_text(err)
            copies = len(re.findall(r"running a copy", err))
            restarts = len(re.findall(r"exited with status 75", err))
            self.notes.append(f"balance {label}: {copies} speculative copies, "
                              f"{restarts} worker restarts in {steps + 1} jobs.")
        ideal_runs = [work / 1.5 for work in serial]  # one core at full speed and one at half
        ideal = median(ideal_runs)
        for label, times in results.items():
            ratio = median([t / i for t, i in zip(times, ideal_runs)])
            self.row("6", f"8 slices, 2 workers, one at half speed, {label}",
                     "ideal: work / 1.5 cores", ideal, median(times), "ms", "≤ 1.25x",
                     ratio <= 1.25, ratio=ratio)
        self.raw["balance"] = {"serial_ms": serial, "ideal_ms": ideal_runs, **results}

    def section_scale(self):
        log("7. scale: one producer, 1 to 64 worker processes, tiny slices")
        slices = 200_000 if not self.quick else 50_000
        counts = [1, 2, 4, 8, 16, 32, 64]
        lines = ["| worker processes | slices/s (median) | vs 1 worker | workers at job start | "
                 "exact answer |", "|---|---|---|---|---|"]
        rates = {}
        for n in counts:
            port = free_port()
            with Pool(self.task, port, n) as pool:
                pool.wait_for_workers()
                values, err = self.produce(port, {"BENCH_JOB": "trivial",
                                                  "BENCH_SLICES": str(slices),
                                                  "BENCH_REPS": str(self.reps(3, 1)),
                                                  "BENCH_WARMUP": "1", "BENCH_SETTLE_MS": "500"})
            connected = [int(m.group(1)) for m in
                         re.finditer(r"job \d+: .* (\d+) worker\(s\) connected", err)][1:]
            rate = slices / (median(values["map_ms"]) / 1000)
            rates[n] = rate
            lines.append(f"| {n} | {rate:,.0f} | {rate / rates[1]:.2f}x | "
                         f"{'/'.join(map(str, sorted(set(connected))))} | yes |")
        self.details.append((f"Scale: one producer, jobs of {slices:,} one-element slices "
                             "(answers checked exactly)", lines))
        self.row("7", "64 worker processes, tiny slices: slices/s", "1 worker process", rates[1],
                 rates[64], "slices/s", "no slice lost", True)
        self.raw["scale"] = rates

    def section_micro(self):
        log("micro: in-process pieces (Google Benchmark)")
        out = tempfile.mktemp(prefix="pymar-bench-micro-", suffix=".json")
        min_time = "--benchmark_min_time=" + ("0.05" if self.quick else "0.3")
        self.run([self.bench / "bench_micro", min_time, "--benchmark_filter=-^kernel/",
                  f"--benchmark_out={out}", "--benchmark_out_format=json"], timeout=600)
        data = json.loads(Path(out).read_text())
        # The kernel and its plain loop side by side: repetitions of the two in random
        # interleaved order, so that the host's speed moving between them (it does, by up to
        # 1.4x from one benchmark to the next) falls on both alike; their medians are compared.
        self.run([self.bench / "bench_micro", min_time, "--benchmark_filter=^kernel/",
                  "--benchmark_repetitions=" + ("3" if self.quick else "15"),
                  "--benchmark_enable_random_interleaving=true",
                  "--benchmark_report_aggregates_only=true",
                  f"--benchmark_out={out}", "--benchmark_out_format=json"], timeout=600)
        data["benchmarks"] += [b for b in json.loads(Path(out).read_text())["benchmarks"]
                               if b.get("aggregate_name") == "median"]
        os.unlink(out)
        lines = ["| benchmark | time per iteration | per item |", "|---|---|---|"]
        for b in data["benchmarks"]:
            unit = b.get("time_unit", "ns")
            per_item = ""
            if "items_per_second" in b:
                per_item = f"{1e9 / b['items_per_second']:.1f} ns"
                if b["name"] == "scheduler/job+wire/slices:100000/max_batch:1024":
                    self.raw["micro_scheduler_wire_per_s"] = b["items_per_second"]
                if b["name"] == "cluster/map_trivial/slices:20000/max_batch:1/workers:8/real_time":
                    self.raw["micro_messages_per_s"] = b["items_per_second"]
            lines.append(f"| {b['name']} | {b['real_time']:.3g} {unit} | {per_item} |")
        kernel = {b["name"]: b["real_time"] for b in data["benchmarks"]}
        pymar_k = kernel.get("kernel/integration_slice_pymar_median")
        loop_k = kernel.get("kernel/integration_slice_loop_median")
        if pymar_k and loop_k:
            self.raw["micro_kernel"] = (pymar_k, loop_k)
        self.details.append(("In-process pieces (Google Benchmark, bench_micro)", lines))
        self.raw["micro"] = data["benchmarks"]

    def section_observation(self):
        observation.section(self, Pool, StepProducer, free_port, log)

    def section_dask(self):
        """Dask runs the same jobs when Debian's python3-distributed is installed (the `bench`
        group of tools/setup-debian.sh installs it); Pymar's figures come from this run."""
        # Debian's python3 has Debian's Dask; the python3 running the suite may be another.
        python = next((p for p in [sys.executable, "/usr/bin/python3"]
                       if subprocess.run([p, "-c", "import dask.distributed, numpy"],
                                         capture_output=True).returncode == 0), None)
        if python is None:
            self.notes.append("Dask: not installed (python3-distributed, python3-numpy), "
                              "comparison skipped.")
            return
        log("dask: the same jobs on a local Dask cluster of 2 worker processes")
        out = parse_bench(self.run([python, ROOT / "tools" / "bench" / "compare_dask.py",
                                    "--workers", "2", "--reps", self.reps(15, 3)],
                                   timeout=900).stdout)
        self.raw["dask"] = out
        ours = self.raw.get("integration")
        if ours:
            self.row("D", "integration, 2 workers, time of one job", "Dask, 2 worker processes "
                     "(numpy slices)", median(out["integration_ms"]), median(ours["map_ms"]),
                     "ms", "(comparison)", None)
        latency = self.raw.get("latency")
        if latency:
            self.row("D", "job of 4 trivial tasks, 2 workers: latency", "Dask, same",
                     median(out["tiny_ms"]) * 1000, median(latency["map4_us"]), "µs",
                     "(comparison)", None)
        cost = self.raw.get("throughput_us_per_slice")
        if cost:
            self.row("D", "trivial tasks per second, 2 workers", "Dask, 2,000 tasks per job",
                     median(out["tasks_per_s"]), 1e6 / cost["1000000"], "slices/s",
                     "(comparison)", None)

    # --- the report ----------------------------------------------------------------------

    def report(self, busy, others, started, elapsed):
        def fmt(v, unit):
            if v is None:
                return "—"
            if unit == "slices/s":
                return f"{v:,.0f}"
            return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"

        model = "?"
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        commit = commit or os.environ.get("PYMAR_BENCH_COMMIT", "unknown (not a git checkout)")
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src", "include"],
                               capture_output=True, text=True).stdout.strip()
        self.raw["run"] = {"commit": commit, "uncommitted_changes": bool(dirty),
                           "machine": model, "cores": os.cpu_count(),
                           "started": f"{started:%Y-%m-%d %H:%M}", "seconds": elapsed,
                           "load_before": busy, "load_during": others, "rows": self.rows}
        lines = [f"# Pymar benchmark results, {started:%Y-%m-%d %H:%M}", "",
                 f"Machine: {model}, {os.cpu_count()} cores; commit {commit}"
                 f"{' (with uncommitted changes in src/ or include/)' if dirty else ''}; "
                 f"other processes' load: {busy:.0%} of the CPUs before the run, {others:.0%} "
                 f"during it (the suite's priority: {priority()}); suite took {elapsed:.0f} s.",
                 "", "| # | job | baseline | baseline value | framework | ratio | target | met |",
                 "|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            met = {True: "yes", False: "**no**", None: "—"}[r["met"]]
            ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "—"
            lines.append(f"| {r['section']} | {r['job']} | {r['baseline_name']} | "
                         f"{fmt(r['baseline'], r['unit'])} {r['unit']} | "
                         f"{fmt(r['framework'], r['unit'])} {r['unit']} | {ratio} | "
                         f"{r['target']} | {met} |")
        lines.append("")
        lines += [f"- {n}" for n in self.notes]
        for title, table in self.details:
            lines += ["", f"### {title}", ""] + table
        return "\n".join(lines) + "\n"


def run_in_own_session(nice):
    """Runs this script again in a session of its own at a higher priority, passing on SIGINT
    and SIGTERM. Linux shares the CPU between sessions (autogroups) before it looks at nice
    values, so on a host where others work too only a session's own priority helps; every
    process the suite starts stays in that session."""

    def boost():
        for path, value in [("/proc/self/autogroup", str(nice)), (None, None)]:
            try:
                if path:
                    Path(path).write_text(value)
                else:
                    os.nice(nice)
            except OSError:
                pass

    env = {**os.environ, "PYMAR_BENCH_SESSION": "1"}
    child = subprocess.Popen([sys.executable, *sys.argv], env=env, start_new_session=True,
                             preexec_fn=boost)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _: child.send_signal(number))
    while True:
        try:
            return child.wait()
        except InterruptedError:
            continue


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=str(ROOT / "build-bench"),
                        help="meson build directory configured with -Dbench=true")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke test)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--wait-quiet", type=float, default=120, metavar="SECONDS",
                        help="wait up to this long for other work to leave the CPUs (120)")
    parser.add_argument("--nice", type=int, default=-10,
                        help="priority change for the suite and all it starts (-10; 0 to keep)")
    parser.add_argument("--output", default=str(ROOT / "tools" / "bench" / "results"),
                        help="folder for latest.md and latest.json (git-ignored by default)")
    parser.add_argument("--record", action="store_true",
                        help="write them to doc/performance-results/ instead, to be committed "
                             "with the doc/performance.md and README tables they back")
    args = parser.parse_args()

    if args.nice and os.environ.get("PYMAR_BENCH_SESSION") is None:
        return run_in_own_session(args.nice)
    # Stop cleanly (pools and all) on SIGINT or SIGTERM, even when started with them ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    suite = Suite(args.build, args.quick)
    head = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                          capture_output=True, text=True).stdout.strip()
    log(f"measuring commit {head or 'unknown (not a git checkout)'}")
    busy = wait_for_quiet(args.wait_quiet)
    if busy > 0.25:
        log(f"warning: the machine is {busy:.0%} busy with other work; figures will be noisy")
    started = datetime.datetime.now()
    begin = time.monotonic()
    load = LoadMeter()
    # micro runs first: its in-process scheduler rate is the baseline of section 4.
    order = ["micro"] + [s for s in SECTIONS if s != "micro"]
    for name in order:
        if args.only and name not in args.only:
            continue
        getattr(suite, f"section_{name}")()
    others = load.others()
    if others > 0.15:
        log(f"warning: other processes took {others:.0%} of the CPUs during the run; "
            "figures are noisy")
    text = suite.report(busy, others, started, time.monotonic() - begin)
    print(text)
    out = ROOT / "doc" / "performance-results" if args.record else Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(text)
    (out / "latest.json").write_text(json.dumps(suite.raw, indent=1, default=str))
    log(f"written to {out / 'latest.md'} and {out / 'latest.json'}")
    missed = [r for r in suite.rows if r["met"] is False]
    for r in missed:
        log(f"missed target: {r['job']}: {r['ratio']:.2f}x against {r['baseline_name']} "
            f"(target {r['target']})" if r["ratio"] is not None else
            f"missed target: {r['job']} (target {r['target']})")
    if missed:
        log(f"{len(missed)} target(s) missed")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: every pool the suite started has been stopped")
        sys.exit(130)
