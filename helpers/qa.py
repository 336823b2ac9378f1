"""Question answering over an engine: text in, answers with scores and character spans out."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from helpers.errors import UserError
from helpers.packing import PAD_LOGIT, plan_batches
from helpers.squad_features import (FeatureConfig, check_positive_int, convert_examples_to_features,
                                    examples_from_text, stack_features)
from helpers.squad_postprocess import check_options, get_predictions
from helpers.tokenization import load_tokenizer

# What a progress bar factory returns for a number of windows: update(n) and close() (tqdm's).
ProgressFactory = Callable[[int], object]


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

    def __post_init__(self) -> None:
        # Here, not after inference: a bad option fails before minutes of work. max_seq_length,
        # doc_stride and max_query_length are checked by FeatureConfig, in Answerer.__init__.
        check_options(self.n_best_size, self.max_answer_length, self.null_score_diff_threshold)
        # The window sizes again in FeatureConfig with the passage room; here their types, so that a
        # typo ("384", 2.5, True) is named here, not met as a comparison error or a profile miss.
        for name, flag, optional in (("max_seq_length", "-s", False), ("doc_stride", "--doc-stride", True),
                                     ("max_query_length", "--max-query-length", False),
                                     ("batch_size", "-b", True)):
            if not (optional and getattr(self, name) is None):
                check_positive_int(getattr(self, name), name, flag)
        if not isinstance(self.version_2_with_negative, bool):
            raise UserError("version_2_with_negative (--version-2-with-negative) must be True or False, "
                            f"got {self.version_2_with_negative!r}")


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

    def predict(self, examples, progress_factory: ProgressFactory | None = None):
        """Predictions for examples: ({qas_id: text}, {qas_id: details}, timings)."""
        t0 = time.perf_counter()
        features = convert_examples_to_features(examples, self.tokenizer, self.features_cfg,
                                                is_training=False)
        return self._predict(examples, features, time.perf_counter() - t0, progress_factory)

    def _predict(self, examples, features, features_s: float, progress_factory: ProgressFactory | None):
        no_window = len(examples) - len({f.example_index for f in features})
        if no_window:  # (answer() refuses such a passage; a SQuAD run goes on, as run_squad does)
            print(f"warning: {no_window} of {len(examples)} questions have a passage with no readable text "
                  "(nothing but control or zero-width characters); they are predicted no answer",
                  file=sys.stderr)
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
        timings = {"features_ms": 1e3 * features_s, "inference_ms": 1e3 * infer_s,
                   "postprocess_ms": 1e3 * (time.perf_counter() - t2), "num_features": len(features)}
        return predictions, details, timings

    def answer(self, passage: str, questions: str | Sequence[str],
               progress_factory: ProgressFactory | None = None) -> list[dict]:
        """One dict per question: question, answer, score, probability, start, end, timings.
        questions: a list of questions, or one question as a string.

        progress_factory, as predict's, gets the number of windows (a long passage has thousands)."""
        # One string is one question, not a sequence of one-character questions; a generator is
        # read once, here, as a list.
        questions = [questions] if isinstance(questions, str) else list(questions)
        if not questions:
            return []
        if not isinstance(passage, str) or not all(isinstance(q, str) for q in questions):
            raise TypeError("answer(passage, questions) takes a passage string and question strings, got "
                            f"{type(passage).__name__} and {[type(q).__name__ for q in questions]}")
        examples = examples_from_text(passage, questions)  # one split of the passage, shared
        self._check_readable(questions)
        t0 = time.perf_counter()
        features = convert_examples_to_features(examples, self.tokenizer, self.features_cfg,
                                                is_training=False)
        if not features:  # BERT's clean-up left no passage token, so there is no window to run
            raise UserError("the passage has no readable text after normalization (only control or "
                            "zero-width characters): give the text in which to look for the answer")
        _, details, timings = self._predict(examples, features, time.perf_counter() - t0, progress_factory)
        out = []
        for ex in examples:
            d = details[ex.qas_id]
            out.append({"question": ex.question_text, "answer": d["text"], "score": d["score"],
                        "probability": d["probability"], "start": d["start"], "end": d["end"],
                        "timings": timings})
        return out

    def _check_readable(self, questions: Sequence[str]) -> None:
        """UserError for a question that BERT's clean-up leaves without a token: it would be answered
        as if no question had been asked."""
        for q, enc in zip(questions, self.tokenizer.encode_batch(list(questions), add_special_tokens=False)):
            if not enc.ids:
                raise UserError(f"the question {q!r} has no readable text after normalization (only control, "
                                "zero-width or combining characters): type the question in words")
