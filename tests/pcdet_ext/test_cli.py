"""The tools' flags (``pcdet_ext.cli``): OpenPCDet's test.py flags, ours, and the shared RDOQ flags."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

from pcdet_ext.cli import parse_pcdet_args, tool_parser
from pcdet_ext.config import EXTRA_KEYS
from rdoq_plugins import ConfigError, load_quant_config
from rdoq_plugins.cli_flags import rdoq_from_flags
from tests.pcdet_ext.conftest import PCDET_CONFIGS
from tools.pcdet import dp_alloc as dp_alloc_tool
from tools.pcdet import gen_rd_curves as curves_tool
from tools.pcdet import recon as recon_tool
from tools.pcdet import test as test_tool


def test_test_tool_takes_openpcdets_flags_and_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    args = test_tool.parse_args(["--cfg_file", "cfgs/nuscenes_models/v.yaml", "--ckpt", "m.pth", "--batch_size", "8",
                                 "--workers", "2", "--extra_tag", "q", "--launcher", "pytorch", "--local-rank", "3",
                                 "--quant_cfg", "q.yaml", "--work_dir", "out", "--skip_fp",
                                 "--set", "DATA_CONFIG.DATA_PATH", "../data/x", "QUANT.calibrate", "8"])
    assert args.cfg_file == "cfgs/nuscenes_models/v.yaml" and args.ckpt == Path("m.pth")
    assert (args.batch_size, args.workers, args.extra_tag, args.launcher) == (8, 2, "q", "pytorch")
    assert args.local_rank == 3 and args.quant_cfg == Path("q.yaml") and args.work_dir == Path("out")
    assert args.skip_fp and args.set_cfgs == ["DATA_CONFIG.DATA_PATH", "../data/x", "QUANT.calibrate", "8"]
    base = ["--cfg_file", "c.yaml", "--ckpt", "m.pth"]
    assert test_tool.parse_args([*base, "--local_rank", "2"]).local_rank == 2
    defaults = test_tool.parse_args(base)
    assert (defaults.batch_size, defaults.workers, defaults.extra_tag, defaults.launcher) == (None, 4, "default", "none")
    assert defaults.local_rank is None and defaults.work_dir is None and defaults.set_cfgs is None
    monkeypatch.setenv("LOCAL_RANK", "5")  # torchrun
    assert test_tool.parse_args(base).local_rank == 5
    args = test_tool.parse_args([*base, "--quant-config", "a.yaml", "--work-dir", "w", "--skip-fp"])
    assert args.quant_cfg == Path("a.yaml") and args.work_dir == Path("w") and args.skip_fp
    with pytest.raises(SystemExit):
        test_tool.parse_args([*base, "--set", "ONLY_A_KEY"])
    with pytest.raises(SystemExit):
        test_tool.parse_args([*base, "--launcher", "slurm"])


def test_rdoq_tools_share_the_rdoq_flags() -> None:
    base = ["--cfg_file", "c.yaml", "--ckpt", "m.pth", "--work_dir", "w"]
    args = curves_tool.parse_args([*base, "--estimator", "measured", "--nchannelbatch", "16", "--testsize", "4",
                                   "--maxrates", "9"])
    cfg = rdoq_from_flags(None, args)
    assert cfg.estimator.value == "measured" and cfg.weight_group == cfg.act_group == 16
    assert cfg.calib_images == 4 and cfg.weight_bits == tuple(range(9))
    args = dp_alloc_tool.parse_args([*base, "--solver", "lagrangian", "--target_rates", "2", "4", "--min_bits", "1",
                                     "--no-measure"])
    cfg = rdoq_from_flags(load_quant_config(PCDET_CONFIGS[-1], extra_keys=EXTRA_KEYS).rdoq, args)
    assert args.no_measure and cfg.solver == "lagrangian" and cfg.target_rates == (2.0, 4.0) and cfg.apply_rate == 2.0
    assert cfg.min_bits == 1 and cfg.weight_group == 8  # the rest from the config
    with pytest.raises(ConfigError, match="rdoq.min_bits"):
        rdoq_from_flags(None, dp_alloc_tool.parse_args([*base, "--min_bits", "99"]))
    for tool in (recon_tool, curves_tool, dp_alloc_tool):  # the single-step tools need a work dir, as on mmdet's side
        with pytest.raises(SystemExit):
            tool.parse_args(["--cfg_file", "c.yaml", "--ckpt", "m.pth"])


def test_argparse_namespace_is_what_prepare_reads() -> None:
    parser = tool_parser(None, work_dir_required=False)
    args = parse_pcdet_args(parser, ["--cfg_file", "c.yaml", "--ckpt", "m.pth"])
    for name in ("cfg_file", "ckpt", "set_cfgs", "quant_cfg", "work_dir", "batch_size", "workers", "extra_tag",
                 "launcher", "local_rank", "trust_ckpt", "save_to_file"):
        assert hasattr(args, name), name
    assert isinstance(args, argparse.Namespace)
