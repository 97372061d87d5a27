"""The command line's console: library messages (``logging``) shown to the user while a command runs."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

__all__ = ["ConsoleHandler", "console_log"]


class ConsoleHandler(logging.Handler):
    """INFO lines as they are to stdout (or stderr with ``info_to_stderr``), warnings and errors to
    stderr as ``ihmr: message`` (the streams looked up at every line, flushed)."""

    def __init__(self, level: int = logging.INFO, info_to_stderr: bool = False) -> None:
        super().__init__(level)
        self.info_to_stderr = info_to_stderr

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            if record.levelno >= logging.WARNING:
                stream, msg = sys.stderr, f"ihmr: {msg}"
            else:
                stream = sys.stderr if self.info_to_stderr else sys.stdout
            stream.write(msg + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


@contextlib.contextmanager
def console_log(name: str, info_to_stderr: bool = False, level: int = logging.INFO) -> Iterator[None]:
    """Show the messages of logger ``name`` from ``level`` up on the console while the block runs
    (:class:`ConsoleHandler`; they do not also reach the handlers of the logger's parents)."""
    logger = logging.getLogger(name)
    handler, old = ConsoleHandler(level, info_to_stderr), (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old[0])
        logger.propagate = old[1]
