"""Question answering over an engine: text in, answers with scores and character spans out."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from helpers.errors import UserError
from helpers.packing import PAD_LOGIT, plan_batches
from helpers.squad_features import (FeatureConfig, convert_examples_to_features, example_from_text,
                                    stack_features)
from helpers.squad_postprocess import get_predictions
from helpers.tokenization import load_tokenizer


@dataclass(frozen=True)
class QAConfig:
    max_seq_length: int = 384
    doc_stride: int | None = None  # default: 128, or what fits in a window if that is less
    max_query_length: int = 64
    n_best_size: int = 20
    max_answer_length: int = 30
    version_2_with_negative: bool = False
    null_score_diff_threshold: float = 0.0
    batch_size: int | None = None  # default: the largest batch the engine runs at max_seq_length


class Answerer:
    """Tokenizes, windows, runs the engine in batches and projects answers back to the text."""

    def __init__(self, runner, cfg: QAConfig = QAConfig(), vocab=None, do_lower_case: bool | None = None):
        engine = runner.engine
        self.packed = bool(getattr(engine, "packed", False))
        # Runners that take any sequence length up to a profile's (packed engines, ONNX Runtime) get
        # length-sorted batches cut to their longest window: no padding computed past it. The cuda
        # engine's padded profiles are exact lengths and run whole windows in file order.
        self.shorter_seq = self.packed or bool(getattr(runner, "shorter_seq", False))
        seqs = sorted({p.seq for p in engine.profiles})
        fits = [p for p in engine.profiles
                if (p.seq >= cfg.max_seq_length if self.shorter_seq else p.seq == cfg.max_seq_length)]
        if not fits and self.shorter_seq:
            raise UserError(f"sequence length {cfg.max_seq_length} (-s) is over this {'packed ' * self.packed}"
                            f"engine's maximum {seqs[-1]}; pass a smaller -s or rebuild the engine")
        if not fits:
            raise UserError(f"the engine has no profile for sequence length {cfg.max_seq_length} "
                            f"(it has {', '.join(map(str, seqs))}); pass -s with one of them "
                            "or rebuild the engine")
        largest = max(p.batch for p in fits)
        if cfg.batch_size is not None and not 1 <= cfg.batch_size <= largest:
            raise UserError(f"batch size {cfg.batch_size} is outside the engine's 1..{largest} "
                            f"at sequence length {cfg.max_seq_length}")
        self.runner, self.cfg = runner, cfg
        self.batch_size = cfg.batch_size or largest
        self.do_lower_case = engine.do_lower_case if do_lower_case is None else do_lower_case
        self.tokenizer = load_tokenizer(list(vocab or engine.vocab), self.do_lower_case)
        stride = cfg.doc_stride
        if stride is None:
            stride = max(1, min(128, cfg.max_seq_length - cfg.max_query_length - 3))
        self.features_cfg = FeatureConfig(cfg.max_seq_length, stride, cfg.max_query_length)

    def infer(self, features, progress=None) -> tuple[dict, float]:
        """Run every feature through the engine; unique_id -> (start_logits, end_logits), seconds."""
        arrays = stack_features(features)
        results, seconds = {}, 0.0
        lengths = arrays["input_mask"].sum(axis=1) if len(features) else np.zeros(0, np.int64)
        if self.shorter_seq:
            # Windows sorted by real length, each call filled up to the batch size (and a packed
            # engine's token capacity) and cut to its longest window.
            capacity = (self.runner.engine.token_capacity if self.packed
                        else self.batch_size * self.cfg.max_seq_length)
            batches = plan_batches(lengths, self.batch_size, capacity)
        else:
            batches = [slice(lo, min(lo + self.batch_size, len(features)))
                       for lo in range(0, len(features), self.batch_size)]
        for idx in batches:
            width = int(lengths[idx].max()) if self.shorter_seq else arrays["input_ids"].shape[1]
            rows = (idx, slice(0, width))
            t0 = time.perf_counter()
            logits = self.runner.run(arrays["input_ids"][rows], arrays["segment_ids"][rows],
                                     arrays["input_mask"][rows])
            seconds += time.perf_counter() - t0
            logits = np.asarray(logits, dtype=np.float32)
            if width < arrays["input_ids"].shape[1]:  # back to the windows' length, PAD_LOGIT past the end
                full = np.full((len(idx), arrays["input_ids"].shape[1], 2), PAD_LOGIT, np.float32)
                full[:, :width] = logits
                logits = full
            for f, row in zip(features[idx] if isinstance(idx, slice) else [features[i] for i in idx.tolist()],
                              logits):
                results[f.unique_id] = (row[:, 0], row[:, 1])
            if progress is not None:
                progress.update(len(logits))
        return results, seconds

    def predict(self, examples, progress_factory=None):
        """Predictions for examples: ({qas_id: text}, {qas_id: details}, timings)."""
        t0 = time.perf_counter()
        features = convert_examples_to_features(examples, self.tokenizer, self.features_cfg,
                                                is_training=False)
        t1 = time.perf_counter()
        bar = progress_factory(len(features)) if progress_factory else None
        try:
            results, infer_s = self.infer(features, bar)
        finally:
            if bar is not None:
                bar.close()
        t2 = time.perf_counter()
        predictions, details = get_predictions(
            examples, features, results, n_best_size=self.cfg.n_best_size,
            max_answer_length=self.cfg.max_answer_length, do_lower_case=self.do_lower_case,
            version_2_with_negative=self.cfg.version_2_with_negative,
            null_score_diff_threshold=self.cfg.null_score_diff_threshold)
        timings = {"features_ms": 1e3 * (t1 - t0), "inference_ms": 1e3 * infer_s,
                   "postprocess_ms": 1e3 * (time.perf_counter() - t2), "num_features": len(features)}
        return predictions, details, timings

    def answer(self, passage: str, questions: list[str]) -> list[dict]:
        """One dict per question: question, answer, score, probability, start, end, timings."""
        examples = [example_from_text(passage, q, qas_id=str(i)) for i, q in enumerate(questions)]
        _, details, timings = self.predict(examples)
        out = []
        for i, q in enumerate(questions):
            d = details[str(i)]
            out.append({"question": q, "answer": d["text"], "score": d["score"],
                        "probability": d["probability"], "start": d["start"], "end": d["end"],
                        "timings": timings})
        return out
