"""The model shipped with the repository, built into a cached engine on first use."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from helpers.engine_file import FORMAT_VERSION

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "minilm-l6-squad"
BATCH = 32
SEQ_LENGTHS = (128, 256, 384)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bertqa"


def default_engine_path(backend: str | None = None, verbose: bool = False) -> Path:
    """An engine of the default model for backend (default: the best one here), built once."""
    from helpers.build import PRODUCER, build_engine, default_backend, load_checkpoint, profiles_from
    from helpers.engine_file import save_engine

    backend = backend or default_backend()
    weights = MODEL_DIR / "model.safetensors"
    stat = weights.stat()
    key = hashlib.sha256(f"{PRODUCER}|{FORMAT_VERSION}|{backend}|{stat.st_size}|{stat.st_mtime_ns}|"
                         f"{BATCH}|{SEQ_LENGTHS}".encode()).hexdigest()[:16]
    path = cache_dir() / f"minilm-l6-squad-{backend}-{key}.engine"
    if not path.is_file():
        if verbose:
            print(f"building the default model's {backend} engine into {path} (once)")
        ck = load_checkpoint(hf=str(MODEL_DIR))
        profiles = profiles_from([BATCH], list(SEQ_LENGTHS), ck.config.max_position_embeddings)
        precision = "fp16" if backend == "cuda" else "fp32"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_engine(path, build_engine(ck, backend, profiles, precision))
    return path
