"""Files written safely: atomic replacement, the umask's file mode (the project's only implementation).

Every file ihmr writes goes through :func:`atomic_write`: a temporary file in the target folder,
flushed and fsync'ed, then moved into place with :func:`os.replace`, so readers never see a partial
file and an interrupted write leaves none behind.
"""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence

from ihmr.errors import InputError

__all__ = ["atomic_write", "umask_mode", "write_text", "write_bytes", "write_csv", "ensure_writable_folder"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    Args:
        path: the final file; missing parent folders are created.
        mode: ``"wb"`` (bytes) or ``"w"`` (text, UTF-8).

    The data is flushed and fsync'ed before :func:`os.replace`. An exception inside the ``with``
    block (or an interrupted write) removes the temporary file and leaves ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def umask_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_text(path: str | os.PathLike, text: str, mode: int | None = None) -> None:
    """Write ``text`` (UTF-8) atomically; the file gets ``mode`` (default: :func:`umask_mode`)."""
    with atomic_write(path, "w") as fh:
        fh.write(text)
    os.chmod(path, umask_mode() if mode is None else mode)


def write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` atomically; the file gets ``mode`` (default: :func:`umask_mode`)."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, umask_mode() if mode is None else mode)


def write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[dict]) -> None:
    """Write ``rows`` (dicts keyed by ``columns``) as CSV with a header, atomically
    (:func:`atomic_write`)."""
    with atomic_write(path, "w") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns))
        w.writeheader()
        w.writerows(rows)


def ensure_writable_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check that a file can be made in it; returns it as a Path.

    Raises:
        InputError: it cannot be created, is not a folder (e.g. a file) or is not writable (one line).
    """
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"output path {str(out)!r} is not a folder") from None
    except OSError as e:
        raise InputError(f"cannot create output folder {str(out)!r}: {e.strerror or e}") from e
    if not out.is_dir():
        raise InputError(f"output path {str(out)!r} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".ihmr-probe."):
            pass
    except OSError as e:
        raise InputError(f"output folder {str(out)!r} is not writable: {e.strerror or e}") from e
    return out
