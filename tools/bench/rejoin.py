#!/usr/bin/env python3
"""How soon a warm pool joins a new producer, and what an idle pool costs: with doorbells, and
without them (PYMAR_NO_DOORBELL=1: workers retry every 10 to 100 ms, as libzmq's backoff has it),
side by side in one run.

Two pools of the same binary idle on two ports, one of each kind. After each idle period (0.5 s,
5 s, 60 s; 600 s with --long) a producer starts on each, a moment apart, and its -v log tells
when it bound its port and when each worker of the pool registered ("joined"). The figure is
bound -> last worker registered, median over the runs. The pools' CPU while idle (no producer at
all) is read from /proc/PID/stat (utime + stime of the pool process and its workers, every thread)
at the start and end of each idle period of 5 s or more.

  tools/bench/rejoin.py --build build-bench [--workers 2] [--runs 5] [--long] [--quick]

The producer is bench_task (build with -Dbench=true), which waits BENCH_SETTLE_MS after binding
before its one trivial job: long enough for the slowest retry to land, so every join is seen.
"""

import argparse
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

from run import busy_fraction, priority, run_in_own_session  # the suite's driver, beside us

TICKS = os.sysconf("SC_CLK_TCK")
STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{6}|\d{3}) ")


def log(message):
    print(message, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def at_us(line):
    m = STAMP.match(line)
    if not m:
        return None
    h, mi, s, frac = m.groups()
    us = int(frac) * (1000 if len(frac) == 3 else 1)  # builds before doorbells log milliseconds
    return ((int(h) * 60 + int(mi)) * 60 + int(s)) * 1_000_000 + us


def median(values):
    return statistics.median(values) if values else float("nan")


class Pool:
    """A worker pool in a process group of its own, logging to a file."""

    def __init__(self, binary, port, workers, env):
        self.port = port
        self.workers = workers
        self.env = env
        self.log = tempfile.NamedTemporaryFile("w+", prefix="pymar-rejoin-pool-", suffix=".log")
        self.process = subprocess.Popen(
            [str(binary), "--worker", "-q", f"127.0.0.1:{port}", "-w", str(workers), "-v"],
            stdout=subprocess.DEVNULL, stderr=self.log, env=env, process_group=0)

    def pids(self):
        """The pool process and its workers."""
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            return [self.process.pid] + [int(p) for p in children.read_text().split()]
        except OSError:
            return [self.process.pid]

    def cpu_ticks(self):
        """utime + stime of the pool and its workers, all threads, in clock ticks."""
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        return total

    def wait_until_waiting(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.log.flush()
            if Path(self.log.name).read_text(errors="replace").count("waiting for a producer") \
                    >= self.workers:
                return
            time.sleep(0.05)
        raise RuntimeError("the pool's workers did not start")

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


class Mode:
    """One kind of pool (doorbell or baseline) and what was measured of it."""

    def __init__(self, name, env, args, binary):
        self.name = name
        self.env = env
        self.args = args
        self.binary = binary
        self.pool = Pool(binary, free_port(), args.workers, env)
        self.joins = {}      # idle seconds -> [ms from bind to last worker registered]
        self.first = {}      # idle seconds -> [ms from bind to first worker registered]
        self.missing = {}    # idle seconds -> runs in which a worker never registered
        self.idle_ticks = 0
        self.idle_seconds = 0.0
        self.producer = None
        self.idle_since = None
        self.idle_cpu_at = None

    def start_producer(self):
        env = dict(self.env, BENCH_JOB="trivial", BENCH_WARMUP="0", BENCH_REPS="1",
                   BENCH_SETTLE_MS=str(self.args.settle_ms))
        if self.idle_since is not None and self.idle_cpu_at is not None:
            idle = time.monotonic() - self.idle_since
            if idle >= 5:
                self.idle_ticks += self.pool.cpu_ticks() - self.idle_cpu_at
                self.idle_seconds += idle
        self.producer = subprocess.Popen(
            [str(self.binary), "--produce", "-q", f"127.0.0.1:{self.pool.port}", "-v",
             "--grace", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def finish_producer(self, idle):
        out, err = self.producer.communicate(timeout=120)
        self.idle_since = time.monotonic()
        self.idle_cpu_at = self.pool.cpu_ticks()
        if self.producer.returncode != 0 or "BENCH answer_ok 1" not in out:
            raise RuntimeError(f"{self.name}: the producer failed:\n{err}")
        self.producer = None
        lines = err.splitlines()
        bound = next((at_us(l) for l in lines if " debug: bound tcp://" in l), None)
        if bound is None and self.name == "before":  # it logs no "bound": its first line after
            bound = next((at_us(l) for l in lines if "listening on" in l), None)
        joined = [at_us(l) for l in lines if re.search(r" debug: worker .* joined", l)]
        if bound is None:
            raise RuntimeError(f"{self.name}: no 'bound' line in the producer's log:\n{err}")
        if idle is None:
            return
        if len(joined) < self.args.workers:
            self.missing[idle] = self.missing.get(idle, 0) + 1
            return
        joined.sort()
        self.joins.setdefault(idle, []).append((joined[self.args.workers - 1] - bound) / 1000)
        self.first.setdefault(idle, []).append((joined[0] - bound) / 1000)

    def idle_cpu_percent(self):
        if self.idle_seconds <= 0:
            return float("nan")
        return 100 * self.idle_ticks / TICKS / self.idle_seconds


def run(args):
    binary = Path(args.build) / "tools/bench/bench_task"
    if not binary.exists():
        sys.exit(f"{binary} not found: build with -Dbench=true (tools/bench/run.sh does)")
    base_env = {k: v for k, v in os.environ.items() if k != "PYMAR_NO_DOORBELL"}
    modes = [Mode("doorbell", base_env, args, binary),
             Mode("baseline", dict(base_env, PYMAR_NO_DOORBELL="1"), args, binary)]
    if args.before:
        # The same bench_task built from the commit before doorbells (and before the worker
        # stopped queueing heartbeats while disconnected): the behaviour this change replaced.
        modes.append(Mode("before", base_env, args, Path(args.before) / "tools/bench/bench_task"))
    try:
        for m in modes:
            m.pool.wait_until_waiting()
        # A first producer each, so that every worker has served one and lost it.
        for m in modes:
            m.start_producer()
            m.finish_producer(None)
        idles = [0.5, 5.0, 60.0] + ([600.0] if args.long else [])
        for idle in idles:
            runs = args.runs if idle < 60 else max(1, min(args.runs, 3 if idle < 600 else 1))
            if args.quick:
                runs = 1
            log(f"idle {idle:g} s: {runs} run(s) of each kind")
            for _ in range(runs):
                # Both pools idle at once. Each producer starts when its own pool has idled
                # `idle`, and no sooner than `gap` after the other, so that one producer's start
                # never meets the other's (their ends, and so their idle periods, stay `gap` apart).
                gap = 0.3
                last_start = 0.0
                for m in modes:
                    delay = max(m.idle_since + idle, last_start + gap) - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    m.start_producer()
                    last_start = time.monotonic()
                running = list(modes)
                while running:
                    for m in list(running):
                        if m.producer.poll() is not None:
                            m.finish_producer(idle)
                            running.remove(m)
                    time.sleep(0.002)
        return modes
    finally:
        for m in modes:
            if m.producer is not None:
                m.producer.kill()
            m.pool.stop()


def report(modes, args):
    door, base = modes[:2]
    lines = [f"Warm pool of {args.workers} worker processes, producer bind -> all workers "
             f"registered (median; first worker in brackets), doorbells against "
             f"PYMAR_NO_DOORBELL=1, same run:", "",
             "| idle before the producer | doorbell | baseline (no doorbell) | ratio | runs |",
             "|---|---|---|---|---|"]
    for idle in sorted(set(door.joins) | set(base.joins) | set(door.missing) | set(base.missing)):
        d, b = median(door.joins.get(idle, [])), median(base.joins.get(idle, []))
        df, bf = median(door.first.get(idle, [])), median(base.first.get(idle, []))
        n = f"{len(door.joins.get(idle, []))} / {len(base.joins.get(idle, []))}"
        miss = door.missing.get(idle, 0) + base.missing.get(idle, 0)
        if miss:
            n += f" ({door.missing.get(idle, 0)} / {base.missing.get(idle, 0)} incomplete)"
        lines.append(f"| {idle:g} s | {d:.2f} ms ({df:.2f}) | {b:.2f} ms ({bf:.2f}) | "
                     f"{d / b:.2f}x | {n} |")
    dc, bc = door.idle_cpu_percent(), base.idle_cpu_percent()
    lines.append(f"| idle pool CPU, % of one core (pool + workers, over "
                 f"{door.idle_seconds:.0f} / {base.idle_seconds:.0f} s) | {dc:.3f}% | "
                 f"{bc:.3f}% | {dc / bc if bc else float('nan'):.2f}x | |")
    if len(modes) > 2:
        before = modes[2]
        lines += ["", "Against the build before this change (`--before`; it logs in milliseconds and "
                  "no \"bound\" line, so its figure starts at \"listening on\", just after "
                  "bind), same run:", "",
                  "| idle before the producer | doorbell | before | ratio | runs |",
                  "|---|---|---|---|---|"]
        for idle in sorted(before.joins):
            d, b = median(door.joins.get(idle, [])), median(before.joins[idle])
            lines.append(f"| {idle:g} s | {d:.2f} ms | {b:.2f} ms | {d / b:.2f}x | "
                         f"{len(before.joins[idle])} |")
        bc = before.idle_cpu_percent()
        lines.append(f"| idle pool CPU, % of one core | {dc:.3f}% | {bc:.3f}% | "
                     f"{dc / bc if bc else float('nan'):.2f}x | |")
    lines.append("")
    for m in modes:
        for idle, values in sorted(m.joins.items()):
            lines.append(f"- {m.name}, idle {idle:g} s: " +
                         ", ".join(f"{v:.2f}" for v in values) + " ms")
    try:
        lines.append(f"- load average at the end: {open('/proc/loadavg').read().split()[:3]}")
    except OSError:
        pass
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build-bench", help="build directory (-Dbench=true)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per pool")
    parser.add_argument("--runs", type=int, default=5, help="producer runs per idle period")
    parser.add_argument("--settle-ms", type=int, default=2500,
                        help="how long each producer waits for workers before its job")
    parser.add_argument("--long", action="store_true", help="also idle 600 s")
    parser.add_argument("--before", metavar="BUILD",
                        help="also a pool of bench_task from this build (-Dbench=true) of the "
                             "code before doorbells, side by side")
    parser.add_argument("--quick", action="store_true", help="one run per idle period")
    parser.add_argument("--nice", type=int, default=-10,
                        help="priority change for this script and all it starts (-10; 0 to keep)")
    args = parser.parse_args()
    if args.nice and os.environ.get("PYMAR_BENCH_SESSION") is None:
        sys.exit(run_in_own_session(args.nice))
    busy = busy_fraction()
    modes = run(args)
    report(modes, args)
    print(f"- other work on the machine before the run: {busy:.0%} of the CPUs; this run's "
          f"priority: {priority()}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted: the pools have been stopped")
        sys.exit(130)
