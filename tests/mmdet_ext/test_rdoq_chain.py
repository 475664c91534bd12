"""The RDOQ tools chain on one work dir: ``gen_rd_curves.py`` -> ``dp_alloc.py`` -> ``test.py``
share one curve set whatever flags the curve tool was given; a killed curve run resumes with the
layers it had not finished; NaN weights stop the curves naming the layer; target rates outside the
curves' bits stop before the FP evaluation."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rdoq_plugins.config import ConfigError
from rdoq_plugins.errors import InputError
from rdoq_plugins.rd.finite import NonFiniteError
from tests.mmdet_ext.conftest import tool_fails
from tests.mmdet_ext.test_rdoq import _quant
from tools.dp_alloc import main as dp_alloc
from tools.gen_rd_curves import main as gen_rd_curves
from tools.test import main as run_test_tool

BASE = "faster_rcnn_r50_narrow_digits.py"


def _curve_files(work: Path) -> list[Path]:
    return sorted((work / "rd_curves").glob("*/*.pth"))


def test_test_tool_reuses_the_curves_of_the_curve_tools_flags(
        make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    ckpt, work = str(random_checkpoint(BASE)), tmp_path / "w"
    quant = _quant(3).replace("min_bits=1)", "min_bits=1, calib_images=4)")  # the config says 4 images
    config = str(make_config(quant=quant, name="rdoq_chain"))
    info = gen_rd_curves([config, ckpt, "--work-dir", str(work), "--testsize", "2"])
    assert info["images"] == 2 and info["computed"] == info["layers"] > 0
    # dp_alloc.py and test.py without --testsize: the 2-image curves, not the config's 4.
    with caplog.at_level(logging.WARNING, "rdoq_plugins"):
        summary = dp_alloc([config, ckpt, "--work-dir", str(work), "--target_rates", "2", "3", "--no-measure"])
        report = run_test_tool([config, ckpt, "--work-dir", str(work), "--skip-fp"])
    assert summary["curves"] == {} and [r["target_rate"] for r in summary["rates"]] == [2.0, 3.0]
    curves = report["rdoq"]["curves"]
    assert curves["computed"] == 0 and curves["reused"] == info["layers"] and curves["dir"] == info["dir"]
    assert [p.name for p in (work / "rd_curves").iterdir() if p.is_dir()] == [Path(info["dir"]).name]
    assert [r["target_rate"] for r in report["rdoq"]["rates"]] == [2.0, 3.0]  # dp_alloc.py's rates
    assert report["rdoq"]["applied"]["rate"] == 3.0  # the config's apply_rate, one of them
    lines = [m for m in caplog.messages if m.startswith("rdoq.calib_images: 2 from gen_rd_curves.py's --testsize")]
    assert len(lines) == 2 and all(m.endswith("not the config's 4") for m in lines), caplog.messages
    assert not any("computing a new curve set" in m for m in caplog.messages)
    stored = json.loads((work / "rd_curves" / "settings.json").read_text())
    assert stored["flags"] == {"calib_images": 2} and stored["folder"] == Path(info["dir"]).name
    assert json.loads((work / "rd_alloc" / "settings.json").read_text())["flags"] == {"target_rates": [2.0, 3.0]}


def test_a_killed_curve_run_resumes_with_the_missing_layers(
        make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import rdoq_plugins.rd.layers as rd_layers

    ckpt, work = str(random_checkpoint(BASE)), tmp_path / "w"
    config = str(make_config(quant=_quant(3), name="rdoq_kill"))
    original = rd_layers.second_order_curves
    done: list[str] = []

    def killed_at_half(model: Any, todo: Any, *args: Any, **kw: Any) -> Any:
        if len(done) + len(todo) > 35:  # of 67 layers: the run dies half-way
            raise KeyboardInterrupt("killed")
        done.extend(todo)
        return original(model, todo, *args, **kw)

    monkeypatch.setattr(rd_layers, "second_order_curves", killed_at_half)
    with pytest.raises(KeyboardInterrupt):
        gen_rd_curves([config, ckpt, "--work-dir", str(work), "--testsize", "2"])
    kept = len(_curve_files(work))
    assert kept == len(done) > 0
    monkeypatch.setattr(rd_layers, "second_order_curves", original)
    info = gen_rd_curves([config, ckpt, "--work-dir", str(work), "--testsize", "2"])
    assert info["reused"] == kept and info["computed"] == info["layers"] - kept
    assert len(_curve_files(work)) == info["layers"]


def test_nan_weights_stop_the_curves_naming_the_layer(
        make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import mmdet_ext.quantize
    from rdoq_plugins import QuantLayer

    original = mmdet_ext.quantize.quantize_detector
    poisoned: list[str] = []

    def quantize_then_poison(model: Any, *args: Any, **kw: Any) -> Any:
        out = original(model, *args, **kw)
        name, layer = [(n, m) for n, m in model.named_modules() if isinstance(m, QuantLayer)][10]
        layer.weight.data.view(-1)[0] = float("nan")  # after the checkpoint's own check
        poisoned.append(name)
        return out

    monkeypatch.setattr(mmdet_ext.quantize, "quantize_detector", quantize_then_poison)
    work = tmp_path / "w"
    config = str(make_config(quant=_quant(3), name="rdoq_nan"))
    with pytest.raises(NonFiniteError) as err:
        gen_rd_curves([config, str(random_checkpoint(BASE)), "--work-dir", str(work), "--testsize", "2"])
    assert f"{poisoned[0]}.weight holds 1 non-finite" in str(err.value)
    assert _curve_files(work) == []


def test_rates_outside_the_curves_bits_stop_before_the_fp_evaluation(
        make_config: Callable[..., Path], random_checkpoint: Callable[[str], Path], tmp_path: Path) -> None:
    ckpt, config = str(random_checkpoint(BASE)), str(make_config(quant=_quant(3), name="rdoq_rates"))
    fresh = tmp_path / "fresh"
    tool_fails(run_test_tool, [config, ckpt, "--work-dir", str(fresh), "--target_rates", "9"], ConfigError,
               r"^quant config: rdoq\.target_rates: 9\.0 is outside the curves' bits.*rates in \[1, 8\]$", fresh)
    # The curve tool's --maxrates 3 (bits 0..2) stored in the work dir: the config's rates 3 and 4 do not fit.
    work = tmp_path / "w"
    settings = work / "rd_curves" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"tool": "gen_rd_curves.py", "flags": {"weight_bits": [0, 1, 2]}}))
    message = tool_fails(run_test_tool, [config, ckpt, "--work-dir", str(work)], InputError,
                         r"rdoq\.target_rates: 3\.0 is outside the curves' bits.*rates in \[1, 2\].*"
                         r"weight_bits from gen_rd_curves\.py's --maxrates")
    assert "[3.0, 4.0]" in message
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*")) == ["rd_curves", "rd_curves/settings.json"]
