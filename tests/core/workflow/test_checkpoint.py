"""Quantized checkpoints: safe reading with the path named, formats, strict loading, stable hashes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from rdoq_plugins.config import RDOQConfig
from rdoq_plugins.hashing import run_hash
from rdoq_plugins.workflow.checkpoint import (
    FORMAT,
    SPARSE_FORMAT,
    CheckpointError,
    check_finite,
    is_quantized,
    load_quantized,
    quantized_format,
    read_checkpoint,
    save_quantized,
    state_dict_of,
)
from rdoq_plugins.workflow.curves import curve_folder

LEGACY = Path(__file__).resolve().parents[2] / "data" / "legacy"


class NotAllowed:
    """An object ``torch.load(weights_only=True)`` refuses."""


def test_reading_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "nope.pth")
    torch.save({"state_dict": {}, "extra": NotAllowed()}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="pickled.pth.*--trust") as err:
        read_checkpoint(tmp_path / "pickled.pth", trust_hint="pass --trust to load it")
    assert "weights_only=False" not in str(err.value)
    assert "extra" in read_checkpoint(tmp_path / "pickled.pth", trust=True)
    good = tmp_path / "good.pth"
    torch.save({"state_dict": nn.Linear(2, 2).state_dict()}, good)
    (tmp_path / "truncated.pth").write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        read_checkpoint(tmp_path / "truncated.pth")
    (tmp_path / "random.pth").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match="random.pth"):
        read_checkpoint(tmp_path / "random.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint dict"):
        read_checkpoint(tmp_path / "list.pth")


def test_corrupt_files_are_named_without_torchs_advice_to_unpickle_fully(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save({"state_dict": nn.Linear(64, 64).state_dict()}, good)
    data = good.read_bytes()
    cases = {"random.pth": bytes(range(256)) * 64, "pickle_like.pth": b"\x80\x02" + bytes(range(255, 0, -1)) * 8,
             "half.pth": data[: len(data) // 2], "almost.pth": data[:-20], "empty.pth": b""}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(tmp_path / name, trust_hint="pass --trust to load it")
        message = str(err.value)
        assert message.startswith(f"{tmp_path / name}: cannot be read as a torch checkpoint: "), message
        assert "weights_only" not in message and "--trust" not in message and "\n" not in message, message


def test_non_finite_weights_are_named(tmp_path: Path) -> None:
    state = {"a.weight": torch.ones(3), "b.weight": torch.tensor([1.0, float("nan"), float("inf")]),
             "b.num_batches_tracked": torch.tensor(3), "c.bias": torch.full((2,), float("-inf")),
             "d.bias": torch.tensor([float("nan")]), "e.bias": torch.tensor([float("nan")])}
    check_finite({k: v for k, v in state.items() if k.startswith(("a.", "b.num"))}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=r"^\S*x\.pth: 4 tensors hold non-finite values: b\.weight \(1 NaN, 1 "
                                              r"inf of 3\), c\.bias \(0 NaN, 2 inf of 2\), d\.bias \(1 NaN, 0 inf "
                                              r"of 1\) and 1 more$"):
        check_finite(state, tmp_path / "x.pth")


def test_weights_are_found_where_frameworks_keep_them(tmp_path: Path) -> None:
    state = nn.Linear(2, 2).state_dict()
    for ckpt in ({"state_dict": state}, {"model_state": state, "epoch": 3}, dict(state)):
        assert state_dict_of(ckpt, tmp_path).keys() == state.keys()
    with pytest.raises(CheckpointError, match="no model weights"):
        state_dict_of({"epoch": 3, "optimizer_state": None}, tmp_path)


def test_save_and_strict_load(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    path = tmp_path / "q.pth"
    save_quantized(model, path, {"w_qconfig": {"bit": 4}}, {"CLASSES": ["a"]}, SPARSE_FORMAT)
    ckpt = read_checkpoint(path)
    assert quantized_format(ckpt) == SPARSE_FORMAT and is_quantized(ckpt) and ckpt["meta"]["CLASSES"] == ["a"]
    built: list[dict[str, object]] = []
    loaded = load_quantized(ckpt, path, lambda quant: built.append(dict(quant)) or nn.Linear(3, 2), SPARSE_FORMAT)
    assert built == [{"w_qconfig": {"bit": 4}}] and torch.equal(loaded.weight, model.weight)
    with pytest.raises(CheckpointError, match="not a quantized checkpoint"):
        load_quantized(ckpt, path, lambda quant: nn.Linear(3, 2), FORMAT)
    with pytest.raises(KeyError, match="does not match"):
        load_quantized(ckpt, path, lambda quant: nn.Linear(3, 3, bias=False), SPARSE_FORMAT)
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        save_quantized(model, path, {}, {}, "v0")
    assert not is_quantized({"state_dict": {}, "meta": {"format": "other"}})


def test_hashes_match_the_files_earlier_code_wrote() -> None:
    legacy = json.loads((LEGACY / "hashes.json").read_text())
    assert run_hash(*legacy["parts"]) == legacy["run_hash"]
    cfg = RDOQConfig()
    assert curve_folder(Path("w"), cfg, "d", "scores").dir.name == legacy["curve_dir_scores"]
    assert curve_folder(Path("w"), cfg, "d", "").dir.name == legacy["curve_dir_logits"]
    assert curve_folder(Path("w"), cfg, "d").dir.name == legacy["curve_dir_sparse"]
    assert run_hash(*legacy["parts"][:-1], 2) != legacy["run_hash"]


def test_earlier_checkpoints_keep_their_formats() -> None:
    assert quantized_format(read_checkpoint(LEGACY / "mmdet_quantized.pth")) == FORMAT
    assert quantized_format(read_checkpoint(LEGACY / "sparse_quantized.pth")) == SPARSE_FORMAT
