"""User-facing errors.

Anything a user can cause (a wrong file, bad input, a shape the engine was not
built for) raises UserError with a one-line message that says what to do next.
The command-line front-ends print it as ``error: <message>`` and exit with
status 2; they never show a traceback for it.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable


class UserError(Exception):
    """A mistake in the user's input, reported as one line without a traceback."""


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded into BERT weights."""


class EngineFileError(UserError):
    """An engine file that is missing, truncated, corrupt, foreign or of another version."""


def read_utf8(path: str | Path, what: str, fix: str) -> str:
    """The text of a UTF-8 file, or a one-line UserError naming the file's problem; `what` names the
    file ("vocabulary file"), `fix` says what to pass instead."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"no {what} at {path} (not found): {fix}") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a directory: {fix}") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return decode_utf8(raw, f"{what} {path}", fix)


def decode_utf8(raw: bytes, name: str, fix: str) -> str:
    """raw as UTF-8 text, or a one-line UserError naming where it came from (`name`)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{name} is not UTF-8 (bad byte at offset {exc.start}): {fix}") from None


def read_json(path: str | Path, what: str, fix: str) -> Any:
    """A UTF-8 JSON file's value, or a one-line UserError as read_utf8's (or naming the JSON error)."""
    text = read_utf8(path, what, fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                        f"{exc.msg}): {fix}") from None


def check_writable(path: str | Path, what: str) -> None:
    """A one-line UserError now, before minutes of work, when `path` (a file to write, `what` names
    it: "predictions file") cannot be written there; nothing is created."""
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory: give a file name")
    if not parent.is_dir():
        raise UserError(f"cannot write {what} {path}: there is no directory {parent} (create it first)")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write {what} {path}: permission denied")


def run_main(main: Callable[[], int | None]) -> None:
    """Run a CLI main(), turning UserError into a one-line message and exit status 2."""
    try:
        status = main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)
