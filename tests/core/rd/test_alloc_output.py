"""What an allocation run writes: one JSON per target rate, the figures, and the summary."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from rdoq_plugins.config.rdoq import RDOQConfig
from rdoq_plugins.rd import TensorKind, alloc_output, curve_table
from rdoq_plugins.rd.rates import RateAllocation
from tests.core.rd.conftest import synthetic_curve  # type: ignore[import-not-found]


def _table_and_allocs():  # type: ignore[no-untyped-def]
    table = curve_table([synthetic_curve("conv", TensorKind.WEIGHT, (2, 4, 8), groups=3),
                         synthetic_curve("fc", TensorKind.WEIGHT, (2, 4, 8), groups=2, seed=1)])
    allocs = [RateAllocation(target_rate=r, avg_bits=r, predicted=1.0 / r, solver="dp", time_s=0.01,
                             choice=np.array(c), measured=m)
              for r, c, m in ((2.5, [0, 1, 0, 0, 1], 0.5), (4.0, [1, 1, 2, 1, 1], 0.2))]
    return table, allocs


def test_one_json_per_rate_with_its_choices_and_both_figures(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    table, allocs = _table_and_allocs()
    alloc_output.write_allocations(tmp_path, table, allocs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bits_heatmap.png", "rate_2.5.json", "rate_4.json",
                                                          "rd_curves.png"]
    for a in allocs:
        data = json.loads((tmp_path / f"rate_{a.target_rate:g}.json").read_text())
        assert data == {**json.loads(json.dumps(a.summary())), "choice": a.choice.tolist()}


def test_missing_plotting_is_fatal_unless_plots_are_optional(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    def no_matplotlib(*_: object) -> None:
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(alloc_output, "plot_curves", no_matplotlib)
    table, allocs = _table_and_allocs()
    with pytest.raises(ImportError, match="matplotlib"):
        alloc_output.write_allocations(tmp_path / "strict", table, allocs)
    with caplog.at_level(logging.WARNING, logger=alloc_output.__name__):
        alloc_output.write_allocations(tmp_path / "optional", table, allocs, optional_plots=True)
    assert "no plots" in caplog.text and "matplotlib" in caplog.text
    assert sorted(p.name for p in (tmp_path / "optional").iterdir()) == ["rate_2.5.json", "rate_4.json"]


def test_summary_names_the_settings_and_every_rate() -> None:
    table, allocs = _table_and_allocs()
    cfg = RDOQConfig.from_dict({"target_rates": [2.5, 4], "solver": "greedy", "estimator": "measured"})
    summary = alloc_output.alloc_summary(cfg, table, allocs, {"computed": 2})
    assert (summary["target"], summary["solver"], summary["estimator"]) == ("weight", "greedy", "measured")
    assert summary["groups"] == 5 and summary["elements"] == table.elements
    assert summary["rates"] == [a.summary() for a in allocs] and summary["curves"] == {"computed": 2}
    assert summary["additivity"]["rates"] == [2.5, 4.0] and summary["additivity"]["pearson"] == pytest.approx(1.0)
    json.dumps(summary)  # JSON-ready
