"""Opening an engine file with the backend it was built for."""
from __future__ import annotations

from pathlib import Path

from helpers.engine_file import load_engine


def open_engine(path: str | Path, enable_graph: bool = True, threads: int | None = None):
    """A runner for the engine at path: .engine (metadata) and .run(ids, segments, mask) -> logits."""
    header = load_engine(path, tensors=False)
    if header.backend == "onnxruntime":
        from helpers.ort_backend import OrtRunner

        return OrtRunner(load_engine(path), threads=threads)
    from helpers import cuda_backend

    return cuda_backend.CudaRunner(path, enable_graph=enable_graph)
