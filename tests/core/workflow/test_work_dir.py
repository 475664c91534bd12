"""The work dir: writable before anything is written, one run at a time (``.lock``), a stale lock
taken over, the lock released (and the folders it made removed) on any exit."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rdoq_plugins.workflow.work_dir import LOCK_NAME, WorkDirError, WorkDirLock, check_writable, hold_work_dir

HOLD = (
    "import sys, time; from pathlib import Path;"
    "from rdoq_plugins.workflow.work_dir import WorkDirLock;"
    "lock = WorkDirLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(120)"
)


def dead_pid() -> int:
    """The id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def holder(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Another process that holds the lock of ``tmp_path / 'held'``."""
    work = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(work)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[3])
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield work, proc.pid
    proc.kill()
    proc.wait()


def test_writable_checks_write_nothing(tmp_path: Path) -> None:
    check_writable(tmp_path / "a" / "b" / "c")  # created later, under a writable folder
    check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(WorkDirError, match=r"^work dir .*file/w cannot be created: .*file is not a folder$"):
        check_writable(tmp_path / "file" / "w")
    with pytest.raises(WorkDirError, match=r"^work dir .*file is not a folder$"):
        check_writable(tmp_path / "file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        with pytest.raises(WorkDirError, match=r"ro/w cannot be created: .*ro is not writable"):
            check_writable(tmp_path / "ro" / "w")
        with pytest.raises(WorkDirError, match=r"ro is not writable"):
            WorkDirLock(tmp_path / "ro").acquire()
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_the_lock_holds_the_pid_and_goes_with_the_folders_it_made(tmp_path: Path) -> None:
    work = tmp_path / "a" / "b"
    with WorkDirLock(work) as lock:
        assert lock.held and (work / LOCK_NAME).read_text().split() == [str(os.getpid()), socket.gethostname()]
    assert not (tmp_path / "a").exists()  # made for the lock, empty again: removed
    with WorkDirLock(work):
        (work / "report.json").write_text("{}")
    assert [p.name for p in work.iterdir()] == ["report.json"]  # the run's files stay, the lock goes
    with pytest.raises(RuntimeError, match="boom"), WorkDirLock(tmp_path / "c"):
        raise RuntimeError("boom")
    assert not (tmp_path / "c").exists()  # released on an exception too


def test_a_held_work_dir_is_refused_naming_the_holder(tmp_path: Path, holder: tuple[Path, int]) -> None:
    work, pid = holder
    with pytest.raises(WorkDirError, match=rf"^work dir {work} is in use by process {pid} \(lock file "):
        WorkDirLock(work).acquire()
    assert (work / LOCK_NAME).read_text().split()[0] == str(pid)  # untouched
    with pytest.raises(WorkDirError, match=f"process {pid}"), hold_work_dir(work):
        pytest.fail("ran with the work dir held by another process")


def test_a_lock_in_this_process_is_exclusive_too(tmp_path: Path) -> None:
    with WorkDirLock(tmp_path), pytest.raises(WorkDirError, match=f"in use by process {os.getpid()}"):
        WorkDirLock(tmp_path).acquire()


def test_a_stale_lock_is_taken_over_with_a_log_message(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pid = dead_pid()
    (tmp_path / LOCK_NAME).write_text(f"{pid}\n{socket.gethostname()}\n")
    with caplog.at_level(logging.WARNING, logger="rdoq_plugins"), WorkDirLock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    assert f"taking over the stale lock of process {pid}" in caplog.text
    assert list(tmp_path.iterdir()) == []  # the work dir existed: kept, without the lock


def test_without_flock_the_pid_decides(tmp_path: Path, holder: tuple[Path, int],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(WorkDirLock, "_flock", staticmethod(lambda fd: None))
    work, pid = holder
    with pytest.raises(WorkDirError, match=f"in use by process {pid}"):
        WorkDirLock(work).acquire()
    assert (work / LOCK_NAME).read_text().split()[0] == str(pid)
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / LOCK_NAME).write_text(f"{dead_pid()}\n")
    with WorkDirLock(tmp_path / "stale"):
        assert (tmp_path / "stale" / LOCK_NAME).read_text().split()[0] == str(os.getpid())


def test_hold_work_dir_in_one_process(tmp_path: Path) -> None:
    with hold_work_dir(tmp_path / "w") as lock:
        assert lock is not None and lock.held and (tmp_path / "w" / LOCK_NAME).is_file()
    assert not (tmp_path / "w").exists()


def _two_ranks(rank: int, work: str, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        with hold_work_dir(Path(work)):
            message = "held"
    except WorkDirError as err:
        message = str(err)
    Path(out, f"rank{rank}").write_text(message)
    dist.destroy_process_group()


def test_every_rank_stops_when_rank_0_cannot_take_the_lock(tmp_path: Path, holder: tuple[Path, int]) -> None:
    import torch.multiprocessing as mp

    work, pid = holder
    port = 29600 + os.getpid() % 300
    mp.spawn(_two_ranks, args=(str(work), port, str(tmp_path)), nprocs=2)
    assert (tmp_path / "rank0").read_text().startswith(f"work dir {work} is in use by process {pid}")
    assert (tmp_path / "rank1").read_text().endswith("(rank 0)")
    mp.spawn(_two_ranks, args=(str(tmp_path / "free"), port + 1, str(tmp_path)), nprocs=2)
    assert (tmp_path / "rank0").read_text() == (tmp_path / "rank1").read_text() == "held"
    assert not (tmp_path / "free").exists()
