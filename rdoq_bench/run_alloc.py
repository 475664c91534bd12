"""Times the bit allocators (exact DP, Lagrangian, greedy) on seeded random rate-distortion curves.

Every group's rate is ``bits x elements`` for ``bits = 0 .. choices - 1`` (``elements`` is the group
size, or varies by ``--size-jitter`` around it, as group sizes differ between layers); its distortion
is a smooth, convex-ish ``var * 2^(-2 bits)`` curve with per-group jitter, and a fraction of the
groups get non-convex bumps. Prints a table and writes JSON (``bench/alloc.json`` by default).

    python -m rdoq_bench.run_alloc --groups 100000 --choices 11 --group-size 128 --rate 4
    python -m rdoq_bench.run_alloc --size-jitter 0.25 --out bench/alloc_jitter.json  # a duality gap to close
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from rdoq_plugins.alloc import RDTable, allocate

REPO = Path(__file__).resolve().parents[1]


def make_table(groups: int, choices: int, group_size: int, seed: int, nonconvex: float,
               size_jitter: float = 0.0) -> tuple[RDTable, float]:
    """Seeded random curves (smooth convex-ish ones, ``nonconvex`` of them with random bumps) and the
    total number of elements."""
    rng = np.random.default_rng(seed)
    bits = np.arange(choices, dtype=np.float64)
    jitter = rng.uniform(1 - size_jitter, 1 + size_jitter, size=(groups, 1))
    elements = np.maximum(1.0, np.round(group_size * jitter))
    var = rng.lognormal(0.0, 1.0, size=(groups, 1))
    decay = rng.uniform(1.6, 2.2, size=(groups, 1))  # ~2 per bit (6 dB/bit) with spread
    dist = var * elements * np.exp2(-decay * bits) * rng.uniform(0.9, 1.1, size=(groups, choices))
    bumpy = rng.random(groups) < nonconvex
    dist[bumpy] *= rng.uniform(0.3, 1.7, size=(int(bumpy.sum()), choices))
    return RDTable(bits * elements, dist), float(elements.sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", type=int, default=100_000)
    ap.add_argument("--choices", type=int, default=11, help="bit-widths 0 .. choices-1")
    ap.add_argument("--group-size", type=int, default=128, help="elements per group")
    ap.add_argument("--rate", type=float, default=4.0, help="budget in bits per element")
    ap.add_argument("--nonconvex", type=float, default=0.1, help="fraction of groups with non-convex curves")
    ap.add_argument("--size-jitter", type=float, default=0.0,
                    help="elements per group vary uniformly by this fraction around --group-size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--solvers", nargs="+", default=["dp", "lagrangian", "greedy"])
    ap.add_argument("--memory-mb", type=float, default=2048)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "alloc.json")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    table, elements = make_table(args.groups, args.choices, args.group_size, args.seed, args.nonconvex,
                                 args.size_jitter)
    budget = args.rate * elements
    print(f"{args.groups} groups x {args.choices} choices, group size {args.group_size} "
          f"(jitter {args.size_jitter}), budget {args.rate} bits/element = {budget:g} "
          f"(curves in {time.perf_counter() - t0:.2f} s)")
    rows: list[dict[str, Any]] = []
    for name in args.solvers:
        kw: dict[str, Any] = {"memory_mb": args.memory_mb} if name == "dp" else {}
        a = allocate(table, budget, name, **kw)
        rows.append({"solver": name, "time_s": a.time_s, "distortion": a.distortion, "rate": a.rate,
                     "bits_per_element": a.rate / elements, "lam": a.lam,
                     "lower_bound": a.lower_bound, "stats": a.stats})
    best = min(r["distortion"] for r in rows)
    print(f"{'solver':<11} {'time_s':>8} {'distortion':>16} {'vs best':>10} {'bits/elem':>10}")
    for r in rows:
        r["excess_vs_best"] = r["distortion"] / best - 1.0 if best > 0 else 0.0
        print(f"{r['solver']:<11} {r['time_s']:>8.3f} {r['distortion']:>16.6f} {r['excess_vs_best']:>10.2e} "
              f"{r['bits_per_element']:>10.6f}")
    bounds = [r["lower_bound"] for r in rows if r["lower_bound"] is not None]
    if bounds:
        print(f"best lower bound (Lagrangian dual): {max(bounds):.6f}")
    for r in rows:
        if r["stats"]:
            print(f"{r['solver']} stats: " + ", ".join(f"{k}={v:g}" for k, v in r["stats"].items()))
    result = {"groups": args.groups, "choices": args.choices, "group_size": args.group_size,
              "size_jitter": args.size_jitter, "rate": args.rate, "nonconvex": args.nonconvex,
              "seed": args.seed, "budget": budget, "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
