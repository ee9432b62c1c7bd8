"""Atomic file writes that leave nothing behind, and a clear error when the disk is full.

Every file the package writes for a reader to find (weights, JSON, PNGs) is first written
to a temporary name next to it, `<name>.tmp<pid>` (`<stem>.tmp<pid>.weights.h5` for Keras
weight files, whose name must end in .weights.h5), and renamed over it when complete, so
a reader never sees half a file. Whatever ends the write early -- an exception, ENOSPC,
Ctrl-C -- removes the temporary; only a process killed outright (kill -9, a power cut)
leaves one, and `sweep_temporaries` removes those of dead processes when a run starts
again. A temporary left on a full disk is exactly the space the next attempt needs.

A full disk (ENOSPC, or EDQUOT for a quota) raises `DiskFullError`, an OSError naming the
file, the space its write needs when known, and the space left.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from typing import Callable, Iterator, List, Optional

_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# The messages under which HDF5 (via h5py) and TensorFlow report ENOSPC without an errno.
_DISK_FULL_TEXTS = ("no space left on device", "disk quota exceeded", "errno = 28")
WEIGHTS_SUFFIX = ".weights.h5"
# A temporary of `temporary_path`: `<anything>.tmp<pid>` or `<anything>.tmp<pid>.weights.h5`.
_TEMPORARY = re.compile(r".+\.tmp(\d+)(?:" + re.escape(WEIGHTS_SUFFIX) + r")?")


class DiskFullError(OSError):
    """No space left (ENOSPC / EDQUOT) while writing `filename`; the message says how much
    the write needs (when known) and how much is free."""

    def __init__(self, path: str, needed_bytes: Optional[int] = None):
        directory = os.path.dirname(os.path.abspath(path))
        try:
            free = shutil.disk_usage(directory).free
        except OSError:
            free = None
        needs = (f"writing it needs about {format_bytes(needed_bytes)}"
                 if needed_bytes is not None else "")
        left = f"{format_bytes(free)} free in {directory}" if free is not None else ""
        detail = "; ".join(part for part in (needs, left) if part)
        message = f"no space left on the device of {path}" + (f" ({detail})" if detail else "")
        super().__init__(errno.ENOSPC, message, path)
        self.message, self.needed_bytes, self.free_bytes = message, needed_bytes, free

    def __str__(self):
        return self.message


def format_bytes(count: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC / EDQUOT, also when h5py or TensorFlow only say so in the message."""
    if isinstance(error, DiskFullError):
        return True
    if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
        return True
    text = str(error).lower()
    return any(marker in text for marker in _DISK_FULL_TEXTS)


def disk_full_path(error: BaseException) -> Optional[str]:
    """The file an ENOSPC error names, if any."""
    return getattr(error, "filename", None)


def temporary_path(path: str) -> str:
    """Where an atomic write of `path` goes first (same directory: the rename is atomic)."""
    if path.endswith(WEIGHTS_SUFFIX):  # Keras refuses weight files not ending in .weights.h5
        return f"{path[:-len(WEIGHTS_SUFFIX)]}.tmp{os.getpid()}{WEIGHTS_SUFFIX}"
    return f"{path}.tmp{os.getpid()}"


def check_free_space(path: str, needed_bytes: int) -> None:
    """DiskFullError now if `needed_bytes` cannot fit next to `path`, before any write:
    Keras' HDF5 writer hitting ENOSPC half-way printed ~830 lines of HDF5 errors and then
    crashed the process, so the weight writers check first."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return  # cannot tell (e.g. a remote file system): let the write decide
    if free < needed_bytes:
        raise DiskFullError(path, needed_bytes)


@contextlib.contextmanager
def atomic_write(path: str, needed_bytes: Optional[int] = None) -> Iterator[str]:
    """`with atomic_write(path) as temporary:` write `temporary`; it replaces `path` when
    the block ends normally, and is removed otherwise (any exception, KeyboardInterrupt).
    ENOSPC inside the block becomes a DiskFullError naming `path`."""
    temporary = temporary_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException as error:
        remove_quietly(temporary)
        if isinstance(error, Exception) and not isinstance(error, DiskFullError) \
                and is_disk_full(error):
            raise DiskFullError(path, needed_bytes) from error
        raise


def write_bytes_atomic(path: str, data: bytes) -> str:
    """Writes `data` to `path` atomically (flushed to disk before the rename); returns it."""
    with atomic_write(path, needed_bytes=len(data)) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return path


def remove_quietly(path: str) -> None:
    """Removes a file or directory tree if it is there (cleanup must not mask the error)."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    except OSError:  # already gone, or not removable: the caller's error is what matters
        pass


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # at start-up nothing of ours is being written: an earlier namesake's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except OverflowError:
        return False
    return True


def sweep_temporaries(directory: str, is_alive: Callable[[int], bool] = _process_alive
                      ) -> List[str]:
    """Removes the temporaries of atomic writes under `directory` whose writer is gone
    (its pid is not a live process on this machine); returns their paths.

    Call it when a run starts, before it writes. Temporaries of live processes (e.g. a
    `launch.evaluate` writing into the same model_dir) are left alone; a writer on another
    machine sharing the directory cannot be told from a dead one, so do not start a run
    while another machine writes into its model_dir.
    """
    removed = []
    if not os.path.isdir(directory):
        return removed
    for root, dirs, names in os.walk(directory):
        for name in names + dirs:
            match = _TEMPORARY.fullmatch(name)
            if match and not is_alive(int(match.group(1))):
                path = os.path.join(root, name)
                remove_quietly(path)
                removed.append(path)
        dirs[:] = [name for name in dirs if not _TEMPORARY.fullmatch(name)]
    return removed
