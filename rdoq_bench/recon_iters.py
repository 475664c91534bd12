"""Reconstruction speed: box AP of whole-network QDrop W4A4 on the bundled Faster R-CNN against the
iterations per unit, beside one run with ``recon.early_stop`` (issue 13, item 7).

The rows go into ``bench/results.json`` with ``sweep: "recon_iters"``; :func:`plot` draws
``bench/recon_iters.png`` from them (AP against iterations, log scale, the early-stop run as one
marked point at its mean iterations per unit).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

ITERS = (100, 250, 500, 1000, 2000)
# The early-stop run: up to the longest sweep length, a unit stops when its loss averaged over 100
# steps improved by less than 1 % on the previous 100.
EARLY_STOP = {"window": 100, "min_rel_improvement": 0.01}
MODEL, METHOD, W_BITS, A_BITS = "faster_rcnn", "qdrop", 4, 4

RunRow = Callable[[int, "dict[str, Any] | None", str], "dict[str, Any] | None"]


def sweep(run_row: RunRow, iters: tuple[int, ...] = ITERS, early_stop_max: int = max(ITERS)) -> list[dict[str, Any]]:
    """The sweep rows: one per iteration count, then the early-stop row (up to ``early_stop_max``
    iterations per unit; 0: none).

    ``run_row(iters, recon_keys, work_dir_suffix)`` returns a bench row (None: not run).
    """
    rows = []
    for n in iters:
        out = run_row(n, None, "")
        if out is not None:
            rows.append({**out, "sweep": "recon_iters", "early_stop": None})
    out = run_row(early_stop_max, {"early_stop": EARLY_STOP}, "_es") if early_stop_max else None
    if out is not None:
        rows.append({**out, "sweep": "recon_iters", "early_stop": EARLY_STOP})
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """AP against iterations per unit (the early-stop run at its mean iterations)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fixed = sorted((r for r in rows if r.get("sweep") == "recon_iters" and not r["early_stop"]),
                   key=lambda r: r["iters"])
    stopped = [r for r in rows if r.get("sweep") == "recon_iters" and r["early_stop"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot([r["iters"] for r in fixed], [r["bbox_mAP"] for r in fixed], "o-", label="fixed iterations")
    for r in stopped:
        ax.plot([r["mean_unit_iters"]], [r["bbox_mAP"]], "s", color="C3",
                label=f"early stop (window {r['early_stop']['window']}, max {r['iters']})")
    ax.set_xscale("log")
    ax.set_xlabel("reconstruction iterations per unit")
    ax.set_ylabel("box mAP")
    ax.set_title("Faster R-CNN (bundled), QDrop W4A4, whole network")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
