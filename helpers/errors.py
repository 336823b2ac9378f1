"""User-facing errors.

Anything a user can cause (a wrong file, bad input, a shape the engine was not
built for) raises UserError with a one-line message that says what to do next.
The command-line front-ends print it as ``error: <message>`` and exit with
status 2; they never show a traceback for it.
"""
from __future__ import annotations

import sys
from typing import Callable


class UserError(Exception):
    """A mistake in the user's input, reported as one line without a traceback."""


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded into BERT weights."""


class EngineFileError(UserError):
    """An engine file that is missing, truncated, corrupt, foreign or of another version."""


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
