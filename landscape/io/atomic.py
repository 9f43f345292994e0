"""Atomic writes: write to a temporary file in the same folder, fsync, then rename over the target.

An interruption leaves either the old file or the new one, never a half-written file. The file gets
the mode a plain ``open`` would give it (``0o666`` less the umask), not ``mkstemp``'s private 0600,
so results on a shared cluster stay readable by the group. A read-only file system, a missing
permission or a full disk becomes an :class:`~landscape.errors.OutputWriteError` naming the path.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from landscape.errors import OutputWriteError
from landscape.io.jsonio import dumps

# Errors a user fixes by choosing another place or freeing space; anything else is left as it is.
_NOT_WRITABLE = "choose an output folder you can write to"
_NO_SPACE = "free some space or choose an output folder on another disk"
_WRITE_ERRNOS = {
    errno.EROFS: ("the file system is read-only", _NOT_WRITABLE),
    errno.EACCES: ("permission denied", _NOT_WRITABLE),
    errno.EPERM: ("operation not permitted", _NOT_WRITABLE),
    errno.ENOSPC: ("no space left on the device", _NO_SPACE),
    errno.EDQUOT: ("disk quota exceeded", _NO_SPACE),
    errno.EFBIG: ("file too large for the file system", _NO_SPACE),
}


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows.

    ``os.umask`` can only be read by setting it, which races with other threads creating files;
    Linux reports it in ``/proc/self/status``, so that is tried first.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_error(exc: OSError, path: str | Path) -> OutputWriteError | None:
    """An :class:`OutputWriteError` naming ``path`` for an OSError a user can fix, else ``None``."""
    known = _WRITE_ERRNOS.get(exc.errno or 0)
    if known is None:
        return None
    reason, fix = known
    return OutputWriteError(f"cannot write {str(path)!r}: {reason} [Errno {exc.errno}]; {fix}")


def _host_tag() -> str:
    """This machine's name as it may appear in a file name (on a shared file system, a temporary
    belongs to the host whose process wrote it)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _temp_prefix(target: Path) -> str:
    """``.NAME.HOST.PID.``: whose temporary a file is, so a later writer can tell a stale one."""
    return f".{target.name}.{_host_tag()}.{os.getpid()}."


def _process_is_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False  # another write of ours may be under way in another thread
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):  # alive, under another user
        return False
    return False


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporaries of ``path`` that a writer on this host left when it was killed.

    A kill -9 between creating the temporary and renaming it leaves ``.NAME.HOST.PID.XXXX.tmp``; one
    whose process no longer runs can never be finished. Temporaries of live processes, of other hosts
    and of other files stay.

    Returns:
        The temporaries removed.
    """
    target = Path(path)
    pattern = re.compile(re.escape(f".{target.name}.{_host_tag()}.") + r"(\d+)\.[^/]*\.tmp[^/]*")
    removed = []
    try:
        candidates = list(target.parent.glob(f".{glob.escape(target.name)}.*.tmp*"))
    except OSError:
        return removed
    for tmp in candidates:
        match = pattern.fullmatch(tmp.name)
        if match is None or not _process_is_gone(int(match.group(1))):
            continue
        try:
            tmp.unlink()
        except OSError:  # gone already, or not ours to remove: leave it
            continue
        removed.append(tmp)
    return removed


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed.

    ``suffix`` keeps an extension on the temporary name for writers that insist on one (numpy adds
    ``.npz`` when it is missing). Temporaries of ``path`` left by killed writers are removed first
    (:func:`remove_stale_temporaries`).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=f".tmp{suffix}", dir=target.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~current_umask())
    except OSError as exc:
        mapped = write_error(exc, target)
        if mapped is None:
            raise
        raise mapped from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        mapped = write_error(exc, target)
        if mapped is None:
            raise
        raise mapped from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, writer: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``writer(fh)`` on a binary temporary file, then move it onto ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        writer(fh)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as JSON (indent 2) under the non-finite policy of :mod:`landscape.io.jsonio`:
    NaN -> ``null``, +/-inf -> ``"inf"``/``"-inf"``."""
    return atomic_write_text(path, dumps(obj) + "\n")


def atomic_save_npz(path: str | Path, **arrays: Any) -> Path:
    """``np.savez`` to ``path`` atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically."""
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh))


def save_figure(fig: Any, path: str | Path, *, dpi: int = 120, format: str | None = None) -> Path:
    """``fig.savefig`` to ``path`` atomically, in the format its suffix names (``.png``, ``.pdf``, ...).

    A reader never sees half a figure, and the file gets the umask mode like every other output.
    """
    target = Path(path)
    fmt = format or target.suffix.lstrip(".") or "png"
    with atomic_path(target, suffix=f".{fmt}") as tmp:
        fig.savefig(tmp, dpi=dpi, format=fmt)
    return target
