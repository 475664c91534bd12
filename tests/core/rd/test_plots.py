"""The run's figures: PNG files with the curves of a few layers and a labelled bits heatmap."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rdoq_plugins.rd import TensorKind, curve_table
from rdoq_plugins.rd.plots import plot_bit_heatmap, plot_curves
from tests.core.rd.conftest import synthetic_curve  # type: ignore[import-not-found]

Figure = pytest.importorskip("matplotlib.figure").Figure
imread = pytest.importorskip("matplotlib.image").imread

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every figure saved while the test runs."""
    saved: list[Any] = []
    original = Figure.savefig

    def savefig(self: Any, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        saved.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def _curves() -> list:  # type: ignore[type-arg]
    return [synthetic_curve("backbone.conv1", TensorKind.WEIGHT, (0, 2, 4, 8), groups=6),
            synthetic_curve("backbone.conv2", TensorKind.WEIGHT, (0, 2, 4, 8), groups=3, seed=1),
            synthetic_curve("head.cls", TensorKind.ACT, (2, 4, 6), groups=5, seed=2)]


def test_curves_png_shows_a_few_layers_and_groups(tmp_path: Path, figures: list[Any]) -> None:
    curves = _curves()
    path = plot_curves(curves, tmp_path / "sub" / "rd_curves.png", max_layers=2, max_groups=4)
    assert path == tmp_path / "sub" / "rd_curves.png" and path.read_bytes()[:8] == PNG
    assert imread(path).shape[0] > 100
    [fig] = figures
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["backbone.conv1 (weight)", "head.cls (act)"]  # first and last
    assert [len(ax.get_lines()) for ax in axes] == [4, 4]
    line = axes[0].get_lines()[1]
    assert list(line.get_xdata()) == [0, 2, 4, 8]
    assert np.allclose(line.get_ydata(), curves[0].best()[1][1].numpy())
    assert axes[0].get_yscale() == "log" and axes[0].get_xlabel() == "bits"


def test_heatmap_has_a_labelled_row_per_curve_and_a_panel_per_rate(tmp_path: Path, figures: list[Any]) -> None:
    curves = _curves()
    table = curve_table(curves)
    low = np.zeros(len(table.rate), dtype=int)
    high = np.concatenate([np.full(c.num_groups, len(c.grid.bits) - 1) for c in curves])
    path = plot_bit_heatmap(table, {5.0: high, 2.5: low}, tmp_path / "bits_heatmap.png")
    assert path.read_bytes()[:8] == PNG
    [fig] = figures
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["target 2.5 bits", "target 5 bits"]
    labels = [t.get_text() for t in panels[0].get_yticklabels()]
    assert labels == ["backbone.conv1:weight", "backbone.conv2:weight", "head.cls:act"]
    grid = np.ma.filled(panels[1].images[0].get_array(), np.nan)
    assert grid.shape == (3, 6)
    assert grid[0].tolist() == [8] * 6 and grid[1, :3].tolist() == [8] * 3 and grid[2, :5].tolist() == [6] * 5
    assert np.isnan(grid[1, 3:]).all() and np.isnan(grid[2, 5])  # groups a layer does not have
    assert np.ma.filled(panels[0].images[0].get_array(), np.nan)[2, :5].tolist() == [2] * 5
    assert any(ax.get_ylabel() == "bits" for ax in fig.axes)  # the colour bar
