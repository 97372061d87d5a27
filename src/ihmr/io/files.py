"""Files written safely: atomic replacement, the umask's file mode (the project's only implementation).

Every file ihmr writes goes through :func:`atomic_write`: a temporary file in the target folder,
flushed and fsync'ed, then moved into place with :func:`os.replace`, so readers never see a partial
file and an interrupted write leaves none behind.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence

from ihmr.errors import InputError

__all__ = ["atomic_write", "atomic_folder", "remove_leftovers", "umask_mode", "write_text", "write_bytes", "write_csv", "ensure_writable_folder"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", file_mode: int | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    Args:
        path: the final file; missing parent folders are created.
        mode: ``"wb"`` (bytes) or ``"w"`` (text, UTF-8).
        file_mode: the permission bits of the file (default :func:`umask_mode`, as ``open()``
            would give; the temporary file starts private, 0600).

    The data is flushed and fsync'ed before :func:`os.replace`. An exception inside the ``with``
    block (or an interrupted write) removes the temporary file and leaves ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, umask_mode() if file_mode is None else file_mode)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A staging folder beside ``path`` (``.<name>.partial-XXXX``, the umask's folder mode) to fill;
    on success it replaces ``path`` (an old folder at ``path`` is moved aside, then deleted), so
    ``path`` never holds a mix of two runs. An exception inside the block removes the staging
    folder and leaves ``path`` as it was; what a killed process leaves is removed by
    :func:`remove_leftovers`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.partial-"))
    try:
        os.chmod(staging, 0o777 & ~_umask())
        yield staging
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
            os.replace(path, old / path.name)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_leftovers(path: str | os.PathLike, recursive: bool = False) -> None:
    """Remove what interrupted writes of ``path`` left behind: the staging and old folders of
    :func:`atomic_folder` beside it (``.<name>.partial-XXXXXXXX``, ``.<name>.old-XXXXXXXX``,
    exactly) and, when ``path`` is a folder, the ``.*.tmp`` files of :func:`atomic_write` in it
    (with ``recursive``, in all its subfolders too)."""
    path = Path(path)
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            for tag in (".partial-", ".old-"):
                head = f".{path.name}{tag}"
                # mkdtemp's suffix is 8 characters: ".a.old-x.partial-12345678" belongs to "a.old-x", not "a"
                if p.name.startswith(head) and len(p.name) == len(head) + 8 and p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
    if path.is_dir():
        for p in (path.rglob if recursive else path.glob)(".*.tmp"):
            if p.is_file():
                p.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def umask_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (``0o666 & ~umask``)."""
    return 0o666 & ~_umask()


def write_text(path: str | os.PathLike, text: str, mode: int | None = None) -> None:
    """Write ``text`` (UTF-8) atomically; the file gets ``mode`` (default: :func:`umask_mode`)."""
    with atomic_write(path, "w", mode) as fh:
        fh.write(text)


def write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` atomically; the file gets ``mode`` (default: :func:`umask_mode`)."""
    with atomic_write(path, "wb", mode) as fh:
        fh.write(data)


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
