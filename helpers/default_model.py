"""The model shipped with the repository, built into a cached engine on first use."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from helpers.engine_file import FORMAT_VERSION
from helpers.errors import UserError

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "minilm-l6-squad"
BATCH = 32
SEQ_LENGTHS = (128, 256, 384)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bertqa"


def weights_digest(weights: Path) -> str:
    """sha256 of the weights file's content. It is remembered in the cache beside the engines under
    the file's size and modification time, so a run hashes the 90 MB once per checkout, not per start;
    the content, not the time stamp, names the engine (a fresh clone must not build a new one)."""
    st = weights.stat()
    stamp = f"{weights.resolve()} {st.st_size} {st.st_mtime_ns}"
    memo = cache_dir() / f"{weights.parent.name}.sha256"
    try:
        saved, digest = memo.read_text(encoding="utf-8").splitlines()[:2]
        if saved == stamp and len(digest) == 64:
            return digest
    except (OSError, ValueError):
        pass
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f"{memo.name}.{os.getpid()}.tmp")
        tmp.write_text(f"{stamp}\n{digest}\n", encoding="utf-8")
        os.replace(tmp, memo)
    except OSError:
        pass  # a read-only cache only costs the hash on the next start
    return digest


def engine_path_for(backend: str, weights: Path = MODEL_DIR / "model.safetensors") -> Path:
    """Where the default model's engine for backend lives in the cache: named by what it is built
    from (producer, engine format, backend, the weights' content, profiles)."""
    from helpers.build import PRODUCER

    key = hashlib.sha256(f"{PRODUCER}|{FORMAT_VERSION}|{backend}|{weights_digest(weights)}|"
                         f"{BATCH}|{SEQ_LENGTHS}".encode()).hexdigest()[:16]
    return cache_dir() / f"{weights.parent.name}-{backend}-{key}.engine"


def prune_stale_engines(keep: Path) -> list[Path]:
    """Removes the cached engines of the same model and backend other than keep (built from older
    weights or by an older version); returns what it removed."""
    model_backend = keep.name.rsplit("-", 1)[0]
    removed = []
    for old in keep.parent.glob(f"{model_backend}-*.engine"):
        if old != keep and old.name.rsplit("-", 1)[0] == model_backend:
            try:
                old.unlink()
                removed.append(old)
            except OSError:
                pass
    return removed


def default_engine_path(backend: str | None = None, verbose: bool = False) -> Path:
    """An engine of the default model for backend (default: the best one here), built once.
    A backend that cannot run here, or a cache that cannot be written, is a UserError before
    anything is built or announced."""
    from helpers.build import build_engine, default_backend, load_checkpoint, profiles_from
    from helpers.engine_file import save_engine

    backend = backend or default_backend()
    path = engine_path_for(backend)
    if path.is_file():
        return path
    _check_backend_here(backend)
    _check_cache_writable(path.parent)
    if verbose:
        print(f"building the default model's {backend} engine into {path} (once)")
    ck = load_checkpoint(hf=str(MODEL_DIR))
    profiles = profiles_from([BATCH], list(SEQ_LENGTHS), ck.config.max_position_embeddings)
    precision = "fp16" if backend == "cuda" else "fp32"
    save_engine(path, build_engine(ck, backend, profiles, precision))
    prune_stale_engines(path)
    return path


def _check_backend_here(backend: str) -> None:
    if backend != "cuda":
        return
    try:
        from helpers import cuda_backend
    except ImportError as exc:
        ok, why = False, str(exc)
    else:
        ok, why = cuda_backend.available()
    if not ok:
        raise UserError(f"cannot build the default model's cuda engine here: {why}; "
                        "or answer on the CPU with --backend onnxruntime")


def _check_cache_writable(directory: Path) -> None:
    """Creates directory and a scratch file in it: the one test that holds for root and read-only
    mounts alike (os.access does not)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UserError(f"cannot write the default engine cache in {directory} "
                        f"({exc.strerror or exc}): set XDG_CACHE_HOME to a writable directory, "
                        "or build an engine with builder.py and pass -e") from None
