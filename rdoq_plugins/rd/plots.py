"""PNG figures of an RDOQ run (Wang et al., "RDO-Q", ECCV 2022): RD curves of a few layers, and the
bits of every group of every layer at each target rate. matplotlib with the Agg backend."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rdoq_plugins.rd.apply import CurveTable
from rdoq_plugins.rd.curve import LayerCurve


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(curves: Sequence[LayerCurve], path: Path, max_layers: int = 4, max_groups: int = 4) -> Path:
    """Distortion vs bits (best clipping ratio per bit) for up to ``max_layers`` layers spread over
    the network, ``max_groups`` groups each, on a log scale."""
    plt = _pyplot()
    picks = [curves[i] for i in np.linspace(0, len(curves) - 1, min(max_layers, len(curves))).round().astype(int)]
    fig, axes = plt.subplots(1, len(picks), figsize=(4 * len(picks), 3.2), squeeze=False)
    for ax, c in zip(axes[0], picks):
        _, dist, _ = c.best()
        for g in range(min(max_groups, c.num_groups)):
            ax.semilogy(c.grid.bits, dist[g].clamp(min=1e-12).numpy(), marker="o", ms=3, label=f"group {g}")
        ax.set_title(f"{c.layer} ({c.kind.value})", fontsize=8)
        ax.set_xlabel("bits")
        ax.set_ylabel("output distortion")
        ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bit_heatmap(table: CurveTable, choices: dict[float, np.ndarray], path: Path) -> Path:
    """One panel per target rate: a row per (layer, kind), a column per group, coloured by bits."""
    plt = _pyplot()
    rows = len(table.curves)
    width = max(c.num_groups for c in table.curves)
    fig, axes = plt.subplots(1, len(choices), figsize=(4 + 2.5 * len(choices), 2 + 0.12 * rows), squeeze=False,
                             sharey=True)
    image = None
    for ax, (rate, choice) in zip(axes[0], sorted(choices.items())):
        grid = np.full((rows, width), np.nan)
        for r, (c, start, end) in enumerate(zip(table.curves, table.offsets[:-1], table.offsets[1:])):
            grid[r, : c.num_groups] = np.asarray(c.grid.bits)[choice[start:end]]
        image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis",
                          vmin=0, vmax=max(max(c.grid.bits) for c in table.curves))
        ax.set_title(f"target {rate:g} bits", fontsize=9)
        ax.set_xlabel("group")
    # The panels share their y axis (and its tick labels); only the first one shows them.
    axes[0, 0].set_yticks(range(rows))
    axes[0, 0].set_yticklabels([f"{c.layer}:{c.kind.value}" for c in table.curves], fontsize=4)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), label="bits")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
