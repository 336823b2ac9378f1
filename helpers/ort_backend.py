"""The CPU backend: the network description run by ONNX Runtime.

The engine file holds the weights in float32 with the network description; the
ONNX graph is rebuilt from them in memory at load time (a fraction of a second),
so there is one network description and one file format for every backend.
"""
from __future__ import annotations

import os

import numpy as np

from helpers.config import BertConfig
from helpers.engine_file import Engine, Profile
from helpers.errors import UserError
from helpers.network import build_network, network_weights
from helpers.packing import lengths_from_mask
from helpers.onnx_export import to_onnx
from helpers.weights import Weights

BACKEND = "onnxruntime"


def build_engine(cfg: BertConfig, weights: Weights, vocab: list[str], do_lower_case: bool,
                 profiles: list[Profile], precision: str = "fp32", producer: str = "") -> Engine:
    if precision != "fp32":
        raise UserError(f"the onnxruntime backend runs fp32 only, not {precision}; "
                        "use --backend cuda on a GPU for --fp16")
    import onnxruntime

    network = build_network(cfg)
    tensors = network_weights(cfg, weights)
    return Engine(backend=BACKEND, precision=precision, config=cfg, network=network,
                  profiles=tuple(profiles), vocab=tuple(vocab), do_lower_case=do_lower_case,
                  tensors={n: tensors[n] for n in network.weight_names()},
                  backend_info={"onnxruntime_version": onnxruntime.__version__},
                  producer=producer)


class OrtRunner:
    """Runs an onnxruntime engine: run(input_ids, segment_ids, input_mask) -> logits [B, S, 2].

    The ONNX graph takes any shape, so S may be any length up to a profile's (shorter_seq): SQuAD
    runs cut each length-sorted batch to its longest window instead of computing the padding.
    """

    shorter_seq = True

    def __init__(self, engine: Engine, threads: int | None = None):
        import onnxruntime as ort

        self.engine = engine
        model = to_onnx(engine.network, engine.tensors)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        self._session = ort.InferenceSession(model.SerializeToString(), opts,
                                             providers=["CPUExecutionProvider"])

    def run(self, input_ids: np.ndarray, segment_ids: np.ndarray, input_mask: np.ndarray) -> np.ndarray:
        feeds = check_inputs(self.engine, input_ids, segment_ids, input_mask)
        return self._session.run(None, feeds)[0]


def check_inputs(engine: Engine, input_ids, segment_ids, input_mask) -> dict[str, np.ndarray]:
    """Validate a batch against the engine (shapes, profiles, id ranges); int32 arrays by name."""
    given = {}
    for name, a in (("input_ids", input_ids), ("segment_ids", segment_ids), ("input_mask", input_mask)):
        a = np.asarray(a)
        if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
            raise UserError(f"{name} must be an integer array [batch, seq], got {a.dtype} {a.shape}")
        given[name] = a
    shapes = {a.shape for a in given.values()}
    if len(shapes) != 1:
        raise UserError(f"input_ids, segment_ids and input_mask differ in shape: {sorted(shapes)}")
    batch, seq = given["input_ids"].shape
    engine.profile_for(batch, seq, shorter_seq=True)
    cfg = engine.config
    # Ranges on the arrays as given, before int32: a conversion would wrap 2**33 + 101 to 101.
    ids, seg = given["input_ids"], given["segment_ids"]
    if ids.size and (ids.min() < 0 or ids.max() >= cfg.vocab_size):
        raise UserError(f"token ids must lie in [0, {cfg.vocab_size}); got {ids.min()}..{ids.max()}")
    if seg.size and (seg.min() < 0 or seg.max() >= cfg.type_vocab_size):
        raise UserError(f"segment ids must lie in [0, {cfg.type_vocab_size}); got {seg.min()}..{seg.max()}")
    # A prefix mask (ones, then padding), at least one token a row: what the cuda engines require.
    lengths_from_mask(given["input_mask"])
    return {name: np.ascontiguousarray(a, dtype=np.int32) for name, a in given.items()}
