"""From start/end logits back to answer text, as Google BERT's run_squad.py does it.

For each question: take the n best start and end positions of every window, keep the
pairs that form a valid span of passage tokens (start is max-context in its window,
end >= start, at most max_answer_length tokens), rank them by start+end logit, and
project the best WordPiece spans back onto the original passage text. We also report
where the answer lies in the passage, as character offsets.
"""
from __future__ import annotations

import math
import numbers
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np

from helpers.errors import UserError
from helpers.squad_features import Feature, SquadExample, check_positive_int
from helpers.tokenization import basic_tokenize, dropped_by_bert


def _nth_non_space(text: str, k: int) -> int:
    """Index in text of its k-th (from 0) character that is not " "."""
    pos = 0
    for piece in text.split(" "):
        if k < len(piece):
            return pos + k
        k -= len(piece)
        pos += len(piece) + 1
    raise IndexError(k)


def _align(pred_text: str, orig_text: str, tok_text: str) -> tuple[int, int]:
    """Where in orig_text the normalized prediction lies, as [start, end) offsets.

    tok_text is orig_text basic-tokenized (lower-cased, accents stripped, punctuation
    split off, joined by spaces), the form pred_text has. Find pred_text in it and map
    back through the two texts with their spaces removed, which line up character for
    character unless normalization changed their length; then keep the whole orig_text.
    Either way, characters BERT drops are trimmed from the ends.
    """
    return _trim_dropped(orig_text, *_find(pred_text, orig_text, tok_text))


def _find(pred_text: str, orig_text: str, tok_text: str) -> tuple[int, int]:
    whole = (0, len(orig_text))
    start = tok_text.find(pred_text)
    if start == -1 or not pred_text:
        return whole
    end = start + len(pred_text) - 1
    if len(orig_text) - orig_text.count(" ") != len(tok_text) - tok_text.count(" "):
        return whole
    if tok_text[start] == " " or tok_text[end] == " ":
        return whole
    ns_start = start - tok_text.count(" ", 0, start)
    ns_end = end - tok_text.count(" ", 0, end)
    return _nth_non_space(orig_text, ns_start), _nth_non_space(orig_text, ns_end) + 1


def _trim_dropped(text: str, start: int, end: int) -> tuple[int, int]:
    """[start, end) without the characters at its ends that BERT drops (NUL, U+200B, a BOM, ...).

    Where normalization changed the length, run_squad keeps the whole words, and such a
    character at their edge would leak into the answer ("\ufeffThe", "1889.\x00")."""
    lo, hi = start, end
    while lo < hi and dropped_by_bert(text[lo]):
        lo += 1
    while hi > lo and dropped_by_bert(text[hi - 1]):
        hi -= 1
    return (lo, hi) if lo < hi else (start, end)


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool = True) -> str:
    """The part of orig_text that the normalized prediction pred_text stands for.

    E.g. pred_text "steve smith" in orig_text "Steve Smith's" gives "Steve Smith".
    """
    start, end = _align(pred_text, orig_text, " ".join(basic_tokenize(orig_text, do_lower_case)))
    return orig_text[start:end]


@lru_cache(maxsize=1 << 16)
def _basic_text(word: str, do_lower_case: bool) -> str:
    """A passage word's BERT basic tokens joined by spaces. Basic tokenization never joins across
    whitespace, so the basic tokens of a run of passage words are each word's own, in turn: no
    tokenization of the whole passage (hundreds of MB of Python objects for a long one)."""
    return " ".join(basic_tokenize(word, do_lower_case))


class _Passage:
    """What projecting answers needs of a passage beyond its example, computed once per passage."""

    def __init__(self, example: SquadExample, do_lower_case: bool):
        self.example, self.do_lower_case = example, do_lower_case
        # Where each word begins: the first character mapped to it (char_to_word_offset is sorted).
        self.word_start = np.searchsorted(example.char_to_word_offset, np.arange(len(example.doc_tokens)))

    def tok_text(self, w_start: int, w_end: int) -> str:
        """The basic tokens of words w_start..w_end, joined by spaces."""
        words, lower = self.example.doc_tokens[w_start:w_end + 1], self.do_lower_case
        return " ".join([t for w in words if (t := _basic_text(w, lower))])

    def char_offset(self, w_start: int, k: int) -> int:
        """Passage offset of orig_text[k], orig_text being the words from w_start on joined
        by single spaces (the passage may have other whitespace between them)."""
        words = self.example.doc_tokens
        j = w_start
        while k >= len(words[j]):  # k is never on a joining space
            k -= len(words[j]) + 1
            j += 1
        return int(self.word_start[j]) + k


def check_options(n_best_size: Any, max_answer_length: Any, null_score_diff_threshold: Any) -> None:
    """UserError unless the post-processing options are usable (QAConfig checks them before any
    work; get_predictions again for callers of its own)."""
    check_positive_int(n_best_size, "n_best_size", "--n-best-size")
    check_positive_int(max_answer_length, "max_answer_length", "--max-answer-length")
    threshold = null_score_diff_threshold
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold):
        # (a NaN would compare false everywhere: every question silently answered; inf likewise)
        raise UserError(f"null_score_diff_threshold (--null-score-diff-threshold) must be a finite number, "
                        f"got {threshold!r}")


def _softmax(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def _best_indexes(logits: np.ndarray, n_best_size: int) -> np.ndarray:
    # Stable sort on the negated logits: ties keep index order, as run_squad's sorted().
    return np.argsort(-logits, kind="stable")[:n_best_size]


def get_predictions(examples: Sequence[SquadExample], features: Sequence[Feature],
                    results: Mapping[int, tuple[np.ndarray, np.ndarray]], n_best_size: int = 20,
                    max_answer_length: int = 30, do_lower_case: bool = True,
                    version_2_with_negative: bool = False, null_score_diff_threshold: float = 0.0,
                    ) -> tuple[dict[str, str], dict[str, dict]]:
    """run_squad's write_predictions: answers from the logits of every feature.

    results maps a feature's unique_id to its (start_logits, end_logits). Returns the
    predictions {qas_id: text} (the SQuAD predictions file) and, per question, details:
    {"text", "score" (start+end logit), "probability" (softmax over the n-best),
    "start", "end" (character offsets: passage[start:end] is the answer; -1, -1 for
    no answer), "nbest" (list of dicts with those keys and the two logits),
    "null_score_diff" (v2.0: null score minus best non-null score, else None)}.
    Details' texts are passage[start:end]; the predictions' texts are run_squad's,
    whose words are joined by single spaces: they differ only where the passage has
    other whitespace (a newline, two spaces) inside the answer.
    """
    check_options(n_best_size, max_answer_length, null_score_diff_threshold)
    by_example: dict[int, list[Feature]] = {}
    for f in features:
        by_example.setdefault(f.example_index, []).append(f)

    predictions: dict[str, str] = {}
    details: dict[str, dict] = {}
    passages: dict[str, _Passage] = {}  # SQuAD paragraphs are shared by several questions
    for ex_index, example in enumerate(examples):
        feats = by_example.get(ex_index, [])
        ranked, (score_null, null_start, null_end) = _ranked_candidates(
            example, feats, results, n_best_size, max_answer_length, version_2_with_negative)
        f_all, s_all, e_all, sl_all, el_all = ranked

        seen: set[str] = set()
        nbest: list[tuple[str, float, float, int, int]] = []  # text, logits, char span
        for i in np.argsort(-(sl_all + el_all), kind="stable"):  # best first; ties keep their order
            if len(nbest) >= n_best_size:
                break
            f_index, s, e, s_logit, e_logit = (int(f_all[i]), int(s_all[i]), int(e_all[i]), float(sl_all[i]),
                                               float(el_all[i]))
            if s == 0:  # the null answer ([CLS])
                text, span = "", (-1, -1)
            else:
                if example.context not in passages:
                    passages[example.context] = _Passage(example, do_lower_case)
                text, span = _project(passages[example.context], feats[f_index], s, e)
                if text in seen:
                    continue
            seen.add(text)
            nbest.append((text, s_logit, e_logit, *span))
        if version_2_with_negative and feats and "" not in seen:
            nbest.append(("", null_start, null_end, -1, -1))
        if not nbest:  # a passage without a single token: nothing to predict
            nbest.append(("", 0.0, 0.0, -1, -1))

        probs = _softmax([sl + el for _, sl, el, _, _ in nbest])
        answers = [{"text": example.context[sc:ec] if sc >= 0 else "", "probability": p, "score": sl + el,
                    "start_logit": sl, "end_logit": el, "start": sc, "end": ec}
                   for (_, sl, el, sc, ec), p in zip(nbest, probs)]
        best, diff = 0, None
        if version_2_with_negative:
            non_null = next((i for i, n in enumerate(nbest) if n[0]), None)
            diff = score_null - answers[non_null]["score"] if non_null is not None else math.inf
            # run_squad: no answer when the null score beats the best answer by the threshold.
            if non_null is None or diff > null_score_diff_threshold:
                best = next(i for i, n in enumerate(nbest) if not n[0])
            else:
                best = non_null
        predictions[example.qas_id] = nbest[best][0]
        best = answers[best]
        details[example.qas_id] = {
            "text": best["text"], "score": best["score"], "probability": best["probability"],
            "start": best["start"], "end": best["end"], "nbest": answers, "null_score_diff": diff}
    return predictions, details


def _ranked_candidates(example: SquadExample, feats: Sequence[Feature],
                       results: Mapping[int, tuple[np.ndarray, np.ndarray]], n_best_size: int,
                       max_answer_length: int, version_2_with_negative: bool):
    """An example's candidate spans in run_squad's order (window, start rank, end rank), as arrays:
    feature index, start, end, start logit, end logit; 28 bytes a candidate (a tuple each took ~200
    bytes: GBs for the millions of a long passage). With v2.0 the null answer ([CLS] of the window
    where it scores least) comes last. Also (null score, its start and end logits)."""
    cands: list[tuple[np.ndarray, ...]] = []
    score_null, null_start, null_end, null_feature = math.inf, 0.0, 0.0, 0
    for f_index, feature in enumerate(feats):
        if feature.unique_id not in results:
            raise UserError(f"no logits for feature {feature.unique_id} of question "
                            f"{example.qas_id!r}: run the model on every feature")
        start_logits, end_logits = (np.asarray(x, dtype=np.float64).reshape(-1)
                                    for x in results[feature.unique_id])
        if version_2_with_negative:
            null = float(start_logits[0] + end_logits[0])
            if null < score_null:
                score_null, null_feature = null, f_index
                null_start, null_end = float(start_logits[0]), float(end_logits[0])
        starts, ends = _spans(feature, start_logits, end_logits, n_best_size, max_answer_length)
        cands.append(_candidates(f_index, starts, ends, start_logits[starts], end_logits[ends]))
    if version_2_with_negative and feats:
        cands.append(_candidates(null_feature, [0], [0], [null_start], [null_end]))
    cands = cands or [_candidates(0, [], [], [], [])]
    return [np.concatenate(c) for c in zip(*cands)], (score_null, null_start, null_end)


def _candidates(f_index: int, starts, ends, start_logits, end_logits) -> tuple[np.ndarray, ...]:
    return (np.full(len(starts), f_index, np.int32), np.asarray(starts, np.int32), np.asarray(ends, np.int32),
            np.asarray(start_logits, np.float64), np.asarray(end_logits, np.float64))


def _spans(feature: Feature, start_logits: np.ndarray, end_logits: np.ndarray, n_best_size: int,
           max_answer_length: int) -> tuple[np.ndarray, np.ndarray]:
    """run_squad's candidate spans in one window, in its order (start rank, then end rank): the n
    best starts and ends, each a passage token of the window, the start max context there, end >=
    start and at most max_answer_length tokens. Ranked over the whole window, padding included, as
    run_squad: padding that makes the top n takes a slot and is then dropped."""
    positions, max_context = feature.token_to_orig_map, feature.token_is_max_context
    starts = [s for s in _best_indexes(start_logits, n_best_size).tolist()
              if s in positions and max_context.get(s, False)]
    ends = [e for e in _best_indexes(end_logits, n_best_size).tolist() if e in positions]
    s = np.repeat(np.array(starts, dtype=np.int64), len(ends))
    e = np.tile(np.array(ends, dtype=np.int64), len(starts))
    keep = (e >= s) & (e - s < max_answer_length)
    return s[keep], e[keep]


def _project(passage: _Passage, feature: Feature, s: int, e: int) -> tuple[str, tuple[int, int]]:
    """run_squad's answer text for window tokens s..e, and its passage offsets (the one place
    answers are projected back onto the text)."""
    tok_text = " ".join(feature.tokens[s:e + 1])
    # De-tokenize WordPiece: glue "##" continuations and drop stray "##".
    pred_text = " ".join(tok_text.replace(" ##", "").replace("##", "").split())
    w_start, w_end = feature.token_to_orig_map[s], feature.token_to_orig_map[e]
    orig_text = " ".join(passage.example.doc_tokens[w_start:w_end + 1])
    start, end = _align(pred_text, orig_text, passage.tok_text(w_start, w_end))
    return orig_text[start:end], (passage.char_offset(w_start, start),
                                  passage.char_offset(w_start, end - 1) + 1)
