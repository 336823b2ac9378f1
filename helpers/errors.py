"""User-facing errors.

Anything a user can cause (a wrong file, bad input, a shape the engine was not
built for) raises UserError with a one-line message that says what to do next.
The command-line front-ends print it as ``error: <message>`` and exit with
status 2; they never show a traceback for it.

The user's files are read and written here too, so that their failures become such
messages in one place: read_utf8 / read_json, check_outputs (before any work: writable,
and never one of the run's inputs), replacing / write_file_atomic (a failed write keeps
the old file).
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator


class UserError(Exception):
    """A mistake in the user's input, reported as one line without a traceback."""


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded into BERT weights."""


class EngineFileError(UserError):
    """An engine file that is missing, truncated, corrupt, foreign or of another version."""


def read_utf8(path: str | Path, what: str, fix: str) -> str:
    """The text of a UTF-8 file, or a one-line UserError naming the file's problem; `what` names the
    file ("vocabulary file"), `fix` says how to mend its content (it is not UTF-8). A path that is
    missing or a directory gets advice about the path instead: re-encoding would not help."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"no {what} at {path} (not found): check the path") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a directory: give the path of a file") from None
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


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether a and b name one file: by inode where both exist (links, ./x and x), else by the
    resolved paths (an output that does not exist yet)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_outputs(outputs: Iterable[tuple[str | Path | None, str]],
                  inputs: Iterable[tuple[str | Path | None, str]] = ()) -> None:
    """Before any work: check_writable for each output given (None: an option not given), and a
    UserError when one would overwrite an input of the run or another output. An output's `what`
    names it ("engine file"); an input's carries its article ("the SQuAD file"). "-" inputs are
    standard input, not files."""
    taken = [(Path(p), kind) for p, kind in inputs if p and str(p) != "-"]
    for path, what in outputs:
        if not path:
            continue
        check_writable(path, what)
        for other, kind in taken:
            if same_file(path, other):
                raise UserError(f"{what} {path} is also {kind}; write to another file")
        taken.append((Path(path), f"the {what}"))


@contextmanager
def replacing(path: str | Path, what: str) -> Iterator[Path]:
    """A temporary path to write `path`'s new content at. When the block ends without error the new
    file replaces path in one step (os.replace), so a failed write (full disk, file size limit,
    interrupt) never leaves a cut-off file where a good one was. The temporary path lies in a fresh
    folder beside path, with path's own name, so files a writer names after it (ONNX external data,
    NAME.data) move in too. An OSError becomes a UserError; the temporary folder is always removed."""
    target = Path(os.path.realpath(path))  # through a symlink: replace the file, keep the link
    tmpdir = None
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
        yield tmpdir / target.name
        _move_in(tmpdir, target)
    except OSError as exc:
        raise UserError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _move_in(tmpdir: Path, target: Path) -> None:
    """Move the files written in tmpdir next to target, on disk first (fsync) so that a crash right
    after cannot leave an empty file; target itself last, with its old permission bits."""
    files = sorted(tmpdir.iterdir(), key=lambda f: f.name == target.name)
    for f in files:
        _fsync(f)
    if target.exists():
        os.chmod(tmpdir / target.name, stat.S_IMODE(target.stat().st_mode))
    for f in files:
        os.replace(f, target.parent / f.name)
    try:
        _fsync(target.parent)  # the rename itself; not every file system syncs folders
    except OSError:
        pass


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: str | Path, data: str | bytes, what: str) -> None:
    """Write data (str: as UTF-8) to path through `replacing`: all of it, or the old file untouched."""
    with replacing(path, what) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def run_main(main: Callable[[], int | None]) -> None:
    """Run a CLI main(), turning UserError into a one-line message and exit status 2; also out of
    memory (a batch too large to allocate) and a reader that went away (`| head`)."""
    try:
        status = main()
        sys.stdout.flush()  # a closed pipe shows here, not as "Exception ignored" at shutdown
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except MemoryError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "the allocation failed"
        print(f"error: out of memory ({detail}): use a smaller batch or sequence length", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:
        # The reader closed standard output: stop quietly, as the Python docs advise; Python flushes
        # stdout at exit, so point it at devnull first, and exit 141 as a process killed by SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)
