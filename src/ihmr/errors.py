"""Project-wide exception types.

Every error that ihmr raises on purpose derives from :class:`IhmrError`. Errors about the caller's
input also derive from :class:`ValueError`, so ``except ValueError`` keeps working for users who do
not know about ihmr's own types.
"""

from __future__ import annotations


class IhmrError(Exception):
    """Base class of every error raised on purpose by ihmr."""


class InputError(IhmrError, ValueError):
    """Bad input from the caller: wrong shape, dtype, NaN/inf values, an empty batch, ..."""


class ModelFileError(IhmrError, ValueError):
    """A hand-model file is missing, truncated, of the wrong structure or not allowed to load."""


class UnsafePickleError(ModelFileError):
    """A pickle asked for a class that the restricted unpickler does not allow."""


def one_line(exc: BaseException, about: object = None) -> str:
    """``exc`` as one line for a batch's progress output and summary: the message of an
    :class:`IhmrError`, ``"Type: message"`` of any other exception (newlines folded). ``about``:
    the item the line is printed for (e.g. a path); a leading ``"<about>: "`` of the message is
    dropped, as the line names the item already."""
    msg = " ".join(str(exc).split())
    if about is not None and msg.startswith(f"{about}: "):
        msg = msg[len(f"{about}: "):]
    if isinstance(exc, IhmrError):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
