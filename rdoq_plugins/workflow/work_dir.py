"""The work dir of a run: writable, and held by one process at a time.

:class:`WorkDirLock` checks, before anything is written, that the work dir can be created or written
into (:func:`check_writable`), then takes ``<work dir>/.lock``: an exclusive ``flock`` on a file that
holds the holder's process id (and host). A second run on the same work dir stops at once, naming
that process; a lock file left by a process that died (its ``flock`` went with it) is taken over,
with a log message. Releasing deletes the lock file and the folders the lock created, when empty,
so a run that stops on a later check leaves the work dir as it found it.

:func:`hold_work_dir` is the tools' entry: in a multi-process run rank 0 takes the lock and every
rank learns whether it could.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import torch.distributed as dist

from rdoq_plugins.errors import InputError
from rdoq_plugins.workflow.distributed import current

try:
    import fcntl
except ImportError:  # pragma: no cover  (not POSIX: the process id alone decides)
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
logger = logging.getLogger("rdoq_plugins")


class WorkDirError(InputError):
    """A work dir that cannot be written, or that another run holds; the message names it."""


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    return probe


def check_writable(path: Path) -> None:
    """Raises :class:`WorkDirError` unless ``path`` is a folder this process may write into, or
    can be created (its nearest existing parent is such a folder). Writes nothing."""
    probe = _nearest_existing(path)
    if not probe.is_dir():
        what = "is not a folder" if probe == path else f"cannot be created: {probe} is not a folder"
        raise WorkDirError(f"work dir {path} {what}")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == path else f"cannot be created: {probe} is not writable"
        raise WorkDirError(f"work dir {path} {what}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _read_holder(path: Path) -> tuple[int | None, str]:
    """The process id and host written in a lock file (None when it holds none)."""
    try:
        lines = path.read_text().split()
    except OSError:
        return None, ""
    pid = int(lines[0]) if lines and lines[0].isdigit() else None
    return pid, lines[1] if len(lines) > 1 else ""


class WorkDirLock:
    """``<work dir>/.lock``, held while the run writes there (a context manager)."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = Path(work_dir)
        self.path = self.work_dir / LOCK_NAME
        self._fd: int | None = None
        self._created: list[Path] = []  # folders made for the lock, outermost first

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> WorkDirLock:
        """Checks the work dir and takes the lock, or raises :class:`WorkDirError`."""
        if self.held:
            return self
        check_writable(self.work_dir)
        self._make_dirs()
        try:
            self._take()
        except BaseException:
            self._remove_dirs()
            raise
        return self

    def release(self) -> None:
        """Deletes the lock file, then the folders the lock created if they are empty."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self._same_file(fd):
                self.path.unlink()
        except OSError:
            pass
        finally:
            os.close(fd)
        self._remove_dirs()

    def __enter__(self) -> WorkDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _make_dirs(self) -> None:
        missing = []
        probe = self.work_dir
        while not os.path.lexists(probe) and probe.parent != probe:
            missing.append(probe)
            probe = probe.parent
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WorkDirError(f"work dir {self.work_dir} cannot be created ({err.strerror or err})") from None
        self._created = list(reversed(missing))

    def _remove_dirs(self) -> None:
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: the run wrote there
        self._created = []

    def _same_file(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    def _take(self) -> None:
        for _ in range(10):  # the holder may delete the file between our open and our flock
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise WorkDirError(f"work dir {self.work_dir} is not writable: cannot create {self.path} "
                                   f"({err.strerror or err})") from None
            try:
                locked = self._flock(fd)
            except BaseException:
                os.close(fd)
                raise
            if locked is False:
                os.close(fd)
                self._refuse()
            if not self._same_file(fd):  # released and deleted meanwhile: try the new file
                os.close(fd)
                continue
            self._fd = fd
            self._stamp(fd, check_pid=locked is None)
            return
        raise WorkDirError(f"work dir {self.work_dir}: could not take {self.path} (other runs keep replacing it)")

    @staticmethod
    def _flock(fd: int) -> bool | None:
        """True: locked; False: another process holds the lock; None: the file system has no
        ``flock`` (the process id in the file decides)."""
        if fcntl is None:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return None
            raise
        return True

    def _refuse(self) -> None:
        pid, host = _read_holder(self.path)
        who = f"process {pid}" if pid is not None else "another process"
        if host and host != socket.gethostname():
            who += f" on {host}"
        raise WorkDirError(f"work dir {self.work_dir} is in use by {who} (lock file {self.path}); wait for it "
                           f"to end or choose another work dir")

    def _stamp(self, fd: int, check_pid: bool) -> None:
        """Writes this process's id and host, taking over a stale lock (logged)."""
        pid, host = _read_holder(self.path)
        here = socket.gethostname()
        if pid is not None and pid != os.getpid():
            if check_pid and (host in ("", here)) and _pid_alive(pid):
                self._fd = None
                os.close(fd)
                self._refuse()
            where = f" on {host}" if host and host != here else ""
            logger.warning("work dir %s: taking over the stale lock of process %d%s, which no longer holds it",
                           self.work_dir, pid, where)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{here}\n".encode(), 0)
        os.fsync(fd)


def _share(error: str | None) -> str | None:
    """Rank 0's error (or None) on every rank."""
    box = [error]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def hold_work_dir(work_dir: Path) -> Iterator[WorkDirLock | None]:
    """Holds the work dir's lock for the body of the ``with`` (released on any exit). In a
    multi-process run rank 0 takes it and the other ranks stop too when it cannot."""
    group = current()
    lock = WorkDirLock(work_dir) if group.rank == 0 else None
    error: str | None = None
    if lock is not None:
        try:
            lock.acquire()
        except WorkDirError as err:
            if group.world == 1:
                raise
            error = str(err)
    if group.world > 1:
        error = _share(error)
        if error is not None:
            raise WorkDirError(error if group.rank == 0 else f"{error} (rank 0)")
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
