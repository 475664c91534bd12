"""The launch scripts (``tools/dist_test.sh``, ``tools/pcdet/dist_test.sh``, ``tools/slurm_test.sh``)
find the project's venv without an activated one: ``$PYTHON``, else ``<repo>/.venv/bin/python``,
else ``python3``; a python that cannot import torch stops them with one line and exit status 2.

The scripts run on a copy of ``tools/`` with stand-in pythons (shell scripts that log their
arguments, or fail as a python without torch) and ``PATH`` stripped of every venv."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.mmdet_ext.conftest import REPO

SCRIPTS = ["tools/dist_test.sh", "tools/pcdet/dist_test.sh", "tools/slurm_test.sh"]
ARGS = {"tools/dist_test.sh": ["CFG", "CKPT", "2"], "tools/pcdet/dist_test.sh": ["2", "--cfg_file", "CFG"],
        "tools/slurm_test.sh": ["PART", "JOB", "CFG", "CKPT"]}
LOGS = "#!/bin/sh\necho \"$0 $*\" >> \"$LOG\"\n"  # a stand-in python (or srun) that logs its arguments
NO_TORCH = "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n"
SYSTEM_PATH = "/usr/bin:/bin"


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the launch scripts in a folder laid out as the repository, with no venv."""
    root = tmp_path / "repo"
    for rel in [*SCRIPTS, "tools/python_env.sh"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    _executable(tmp_path / "bin" / "srun", LOGS)
    return root


def _run(repo: Path, script: str, path: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``script`` with ``PATH=path``, no ``PYTHON`` and no venv unless ``env`` sets one."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV", "PATH", "PYTHONPATH")}
    return subprocess.run(["bash", str(repo / script), *ARGS[script]], env={**clean, "PATH": path, **env},
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_scripts_take_the_projects_venv_when_python_is_unset(repo: Path, tmp_path: Path, script: str) -> None:
    venv_python = _executable(repo / ".venv" / "bin" / "python", LOGS)
    log = tmp_path / "calls.log"
    out = _run(repo, script, f"{tmp_path / 'bin'}:{SYSTEM_PATH}", LOG=str(log))
    assert out.returncode == 0, out.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == f"{venv_python} -c import torch"  # the check, then the launch with that python
    launch = calls[-1]
    assert str(venv_python) in launch and "test.py" in launch
    if "dist_test" in script:
        assert launch.startswith(f"{venv_python} -m torch.distributed.run") and "--nproc_per_node=2" in launch


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_python_without_torch_stops_with_one_line(repo: Path, tmp_path: Path, script: str) -> None:
    no_torch = _executable(tmp_path / "no_torch" / "python", NO_TORCH)
    out = _run(repo, script, SYSTEM_PATH, PYTHON=str(no_torch))
    assert out.returncode == 2 and out.stdout == ""
    expected = (f"error: python {no_torch} cannot import torch; run 'make install' in {repo} (it creates "
                f"{repo}/.venv, used when PYTHON is unset), or set PYTHON to a python with the project installed")
    assert out.stderr.splitlines() == [expected]


def test_without_a_venv_the_scripts_take_python3_and_name_it(repo: Path, tmp_path: Path) -> None:
    _executable(tmp_path / "path" / "python3", NO_TORCH)
    out = _run(repo, "tools/dist_test.sh", f"{tmp_path / 'path'}:{SYSTEM_PATH}")
    assert out.returncode == 2 and out.stderr.startswith(f"error: python python3 cannot import torch; run 'make "
                                                         f"install' in {repo}")
    out = _run(repo, "tools/dist_test.sh", SYSTEM_PATH, PYTHON=str(tmp_path / "nope"))
    assert out.returncode == 2 and out.stderr.startswith(f"error: python {tmp_path / 'nope'} is not found;")


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").exists(), reason="the project's venv is not installed")
def test_the_repositorys_venv_imports_torch_without_activation() -> None:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV", "PYTHONPATH")}
    out = subprocess.run(["bash", "-c", 'source tools/python_env.sh && rdoq_python "$PWD" && echo "$PY"'], cwd=REPO,
                         env={**clean, "PATH": SYSTEM_PATH}, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{REPO}/.venv/bin/python"
