#!/usr/bin/env python3
"""A task's start-up cost, two builds side by side in one run: what `ldd` lists, `integration
--help`, `integration --produce -w 2` (a producer that starts its own pool of 2 workers), and an
idle worker's memory. Runs alternate between the builds (A B A B ...), and each figure is a
median, with the CPU time (user + system, the process and what it waited for) beside the wall
time: CPU time moves less than wall time when other work shares the machine.

    tools/bench/startup.py --build build-bench --before OLD-BUILD [--runs 20]

OLD-BUILD is the build folder of another commit (e.g. `git worktree add` of it, configured and
built like this one). Either build may also be a folder holding examples/integration and the
libpymar it was linked with (its RUNPATH finds it).
"""
import argparse
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path


def median(values):
    return statistics.median(values) if values else float("nan")


def timed(argv, env=None):
    """Wall time and CPU time (ms) of one process, its children included."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = (time.perf_counter() - start) * 1000
    process.stderr.read()
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{argv} exited with status {process.returncode}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def idle_worker_memory(example):
    """VmRSS and VmHWM (KiB) of one idle worker of a pool of 1, and the pool's VmRSS."""
    pool = subprocess.Popen([example, "--worker", "-q", f"127.0.0.1:{free_port()}", "-w", "1",
                             "-v"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        for line in pool.stderr:
            m = re.search(r"worker\[(\d+)\] .*waiting for a producer", line)
            if m:
                worker = int(m.group(1))
                break
            if time.monotonic() > deadline:
                raise RuntimeError("no worker started")
        else:
            raise RuntimeError("the pool exited")
        return (status_kib(worker, "VmRSS"), status_kib(worker, "VmHWM"),
                status_kib(pool.pid, "VmRSS"))
    finally:
        os.killpg(pool.pid, signal.SIGTERM)
        pool.wait()


def libraries(example):
    out = subprocess.run(["ldd", example], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", required=True, help="this build's folder")
    parser.add_argument("--before", required=True, help="the other build's folder")
    parser.add_argument("--runs", type=int, default=20, help="runs of each command per build")
    parser.add_argument("--omp", help="bench_baseline of a -Dbench=true build: adds the OpenMP "
                        "program (integration omp) in turns, as the baseline of --produce -w 2")
    args = parser.parse_args()
    builds = {"before": Path(args.before) / "examples" / "integration",
              "after": Path(args.build) / "examples" / "integration"}
    for name, example in builds.items():
        if not example.exists():
            sys.exit(f"{name}: no {example}")

    load = os.getloadavg()
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    figures = {name: {"help": [], "help_cpu": [], "spawn": [], "spawn_cpu": [], "rss": [],
                      "hwm": [], "pool_rss": []} for name in builds}
    omp, omp_cpu = [], []
    for round_ in range(args.runs):
        for name, example in builds.items():
            f = figures[name]
            wall, cpu = timed([example, "--help"])
            f["help"].append(wall)
            f["help_cpu"].append(cpu)
            wall, cpu = timed([example, "--produce", "-w", "2", "-q", "127.0.0.1:0", "--quiet"])
            f["spawn"].append(wall)
            f["spawn_cpu"].append(cpu)
            if args.omp:
                wall, cpu = timed([args.omp, "integration", "omp"])
                omp.append(wall)
                omp_cpu.append(cpu)
            if round_ < 5:
                rss, hwm, pool_rss = idle_worker_memory(example)
                f["rss"].append(rss / 1024)
                f["hwm"].append(hwm / 1024)
                f["pool_rss"].append(pool_rss / 1024)
    load = os.getloadavg()
    print(f"load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    print(f"\nMedians of {args.runs} runs per build, in turns (memory: 5 pools per build).\n")
    print("| figure | before | after | after / before |")
    print("|---|---|---|---|")
    lib = {name: libraries(example) for name, example in builds.items()}
    print(f"| libraries `ldd` lists | {len(lib['before'])} | {len(lib['after'])} | "
          f"{len(lib['after']) / len(lib['before']):.2f}x |")
    rows = [("`integration --help`, wall", "help", "ms"),
            ("`integration --help`, CPU", "help_cpu", "ms"),
            ("`integration --produce -w 2`, wall", "spawn", "ms"),
            ("`integration --produce -w 2`, CPU (all 4 processes)", "spawn_cpu", "ms"),
            ("idle worker VmRSS", "rss", "MiB"),
            ("idle worker VmHWM", "hwm", "MiB"),
            ("idle pool process VmRSS", "pool_rss", "MiB")]
    for label, key, unit in rows:
        b, a = median(figures["before"][key]), median(figures["after"][key])
        print(f"| {label} | {b:.2f} {unit} | {a:.2f} {unit} | {a / b:.2f}x |")
    if omp:
        o, oc = median(omp), median(omp_cpu)
        print(f"| OpenMP program (`bench_baseline integration omp`), wall | {o:.2f} ms | | |")
        for name in builds:
            print(f"| `--produce -w 2` / OpenMP, wall, {name} | | "
                  f"{median(figures[name]['spawn']) / o:.2f}x | |")
        print(f"| OpenMP program, CPU | {oc:.2f} ms | | |")
    gone = sorted(set(lib["before"]) - set(lib["after"]))
    print(f"\nNo longer loaded at start: {', '.join(gone) if gone else 'none'}")


if __name__ == "__main__":
    main()
