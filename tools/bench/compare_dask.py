#!/usr/bin/env python3
"""The suite's jobs on Dask (dask.distributed, Debian's python3-distributed), for comparison.

  tools/bench/compare_dask.py [--workers 2] [--reps 15]

A local cluster of worker processes (one thread each, as Pymar's workers), warmed up first, then:
  - integration: the example's 9 million points in 4 slices, each a numpy expression (a pure
    Python loop would measure Python, not Dask), summed on the client;
  - tiny: one job of 4 trivial tasks, latency;
  - throughput: 2,000 trivial tasks in one job, tasks per second.
Prints "BENCH key value" lines, as the suite's C++ programs do, for tools/bench/run.py.
"""

import argparse
import statistics
import time

import numpy as np
from dask.distributed import Client, LocalCluster

A, B, DX = 1.0, 10.0, 1e-6
POINTS = round((B - A) / DX)


def integrate_slice(part):
    offset, limit = part
    x = A + np.arange(offset, offset + limit, dtype=np.float64) * DX
    return float(np.sum(np.exp(x) * DX))


def identity(i):
    return i


def parts(length, count):
    base, larger = divmod(length, count)
    out, offset = [], 0
    for i in range(count):
        limit = base + (1 if i < larger else 0)
        out.append((offset, limit))
        offset += limit
    return out


def timed(client, fn, items):
    start = time.perf_counter()
    futures = client.map(fn, items, pure=False)
    total = sum(client.gather(futures))
    return (time.perf_counter() - start) * 1000, total


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(args.workers)
        slices = parts(POINTS, 4)
        for _ in range(2):  # warm-up: imports and numpy on every worker
            timed(client, integrate_slice, slices)
        integration = []
        for _ in range(args.reps):
            ms, answer = timed(client, integrate_slice, slices)
            integration.append(ms)
        print(f"Answer: {answer:.10f}")
        tiny = [timed(client, identity, range(4))[0] for _ in range(args.reps * 4)]
        throughput = []
        for _ in range(max(3, args.reps // 5)):
            ms, total = timed(client, identity, range(2_000))
            assert total == 2_000 * 1_999 // 2
            throughput.append(2_000 / (ms / 1000))
    for ms in integration:
        print(f"BENCH integration_ms {ms:.4f}")
    for ms in tiny:
        print(f"BENCH tiny_ms {ms:.4f}")
    for rate in throughput:
        print(f"BENCH tasks_per_s {rate:.1f}")
    print(f"BENCH integration_median_ms {statistics.median(integration):.4f}")


if __name__ == "__main__":
    main()
