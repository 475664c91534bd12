"""The RDOQ flags of the tools over the config's ``rdoq`` section (``--target both --act_rate``), and
the tools' one-line input errors (:func:`run_tool`)."""
from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from rdoq_plugins.cli_flags import add_debug_arg, add_rdoq_args, rdoq_from_flags, run_tool
from rdoq_plugins.config import ConfigError, RDOQConfig
from rdoq_plugins.config.rdoq import Target
from rdoq_plugins.errors import InputError
from rdoq_plugins.files import StateDictMismatch
from rdoq_plugins.recon.cost import DiskSpaceError
from rdoq_plugins.workflow.checkpoint import CheckpointError
from rdoq_plugins.workflow.work_dir import WorkDirError


def _flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_rdoq_args(parser)
    return parser.parse_args(list(argv))


def test_target_both_takes_an_act_rate() -> None:
    cfg = rdoq_from_flags(None, _flags("--target", "both", "--act_rate", "5", "--target_rates", "3"))
    assert cfg.target is Target.BOTH and cfg.act_rate == 5.0 and cfg.target_rates == (3.0,)


def test_another_target_drops_the_configs_act_rate() -> None:
    base = RDOQConfig.from_dict({"target": "both", "act_rate": 4})
    assert rdoq_from_flags(base, _flags("--target", "weight")).act_rate is None
    assert rdoq_from_flags(base, _flags("--target_rates", "3")).act_rate == 4.0


def test_both_without_act_rate_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="rdoq.act_rate: is required with target 'both'"):
        rdoq_from_flags(None, _flags("--target", "both"))


Body = Callable[[argparse.Namespace], str]


def _tool(error: BaseException | None, *argv: str) -> tuple[argparse.Namespace, Body]:
    parser = argparse.ArgumentParser()
    add_debug_arg(parser)

    def body(args: argparse.Namespace) -> str:
        if error is not None:
            raise error
        return "done"

    return parser.parse_args(list(argv)), body


@pytest.mark.parametrize("error", [
    ConfigError("recon.iters", "expected an integer", "x"),
    CheckpointError("/x/ckpt.pth: cannot be read as a torch checkpoint: truncated or corrupt (EOFError)"),
    FileNotFoundError("checkpoint not found: /x/ckpt.pth"),
    StateDictMismatch("checkpoint /x/ckpt.pth does not match the model: 1 missing keys (e.g. ['a'])"),
    WorkDirError("work dir /x is in use by process 12 (lock file /x/.lock)"),
    DiskSpaceError("reconstruction would spill 3.0 GB"),
    InputError("annotation file of the test split is empty (0 bytes): /x/a.json"),
])
def test_an_input_error_is_one_line_and_status_2(error: BaseException, capsys: pytest.CaptureFixture[str]) -> None:
    args, body = _tool(error)
    with pytest.raises(SystemExit) as stop:
        run_tool(body, args)
    assert stop.value.code == 2 and stop.value.__context__ is error
    err = capsys.readouterr().err
    assert err == f"error: {error.args[0]}\n"  # KeyError's message without its quotes
    args, body = _tool(error, "--debug")
    with pytest.raises(type(error)) as raised:
        run_tool(body, args)
    assert raised.value is error and capsys.readouterr().err == ""


def test_other_errors_keep_their_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    for error in (RuntimeError("a bug"), KeyError("a bug"), ValueError("a bug"), KeyboardInterrupt()):
        args, body = _tool(error)
        with pytest.raises(type(error)):
            run_tool(body, args)
    args, body = _tool(RuntimeError("missing framework\ninstall it so"))
    with pytest.raises(SystemExit):
        run_tool(body, args, (RuntimeError,))
    assert capsys.readouterr().err == "error: missing framework\ninstall it so\n"
    args, body = _tool(None)
    assert run_tool(body, args) == "done"
