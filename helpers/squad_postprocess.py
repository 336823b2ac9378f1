"""From start/end logits back to answer text, as Google BERT's run_squad.py does it.

For each question: take the n best start and end positions of every window, keep the
pairs that form a valid span of passage tokens (start is max-context in its window,
end >= start, at most max_answer_length tokens), rank them by start+end logit, and
project the best WordPiece spans back onto the original passage text. We also report
where the answer lies in the passage, as character offsets.
"""
from __future__ import annotations

import bisect
import math
from typing import Mapping, Sequence

import numpy as np
from tokenizers import PreTokenizedString

from helpers.errors import UserError
from helpers.squad_features import Feature, SquadExample
from helpers.tokenization import _basic_parts, basic_tokenize


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
    """
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


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool = True) -> str:
    """The part of orig_text that the normalized prediction pred_text stands for.

    E.g. pred_text "steve smith" in orig_text "Steve Smith's" gives "Steve Smith".
    """
    start, end = _align(pred_text, orig_text, " ".join(basic_tokenize(orig_text, do_lower_case)))
    return orig_text[start:end]


class _Passage:
    """A passage's BERT basic tokens with the word each came from, computed once.

    Basic tokenization never joins across whitespace, so the basic tokens of a run of
    words are those of the passage that came from these words.
    """

    def __init__(self, example: SquadExample, do_lower_case: bool):
        norm, pre = _basic_parts(do_lower_case)
        pts = PreTokenizedString(example.context)
        pts.normalize(norm.normalize)
        pre.pre_tokenize(pts)
        splits = pts.get_splits(offset_referential="original", offset_type="char")
        self.example = example
        self.tokens = [t for t, _, _ in splits]
        self.token_word = [example.char_to_word_offset[a] for _, (a, _), _ in splits]

    def tok_text(self, w_start: int, w_end: int) -> str:
        lo = bisect.bisect_left(self.token_word, w_start)
        hi = bisect.bisect_right(self.token_word, w_end)
        return " ".join(self.tokens[lo:hi])

    def char_offset(self, w_start: int, k: int) -> int:
        """Passage offset of orig_text[k], orig_text being the words from w_start on joined
        by single spaces (the passage may have other whitespace between them)."""
        words = self.example.doc_tokens
        j = w_start
        while k >= len(words[j]):  # k is never on a joining space
            k -= len(words[j]) + 1
            j += 1
        # A word begins at the first character mapped to it (char_to_word_offset is sorted).
        return bisect.bisect_left(self.example.char_to_word_offset, j) + k


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
    if n_best_size < 1 or max_answer_length < 1:
        raise UserError("n_best_size and max_answer_length must be at least 1")
    if not math.isfinite(null_score_diff_threshold):
        # (a NaN would compare false everywhere: every question silently answered)
        raise UserError(f"null_score_diff_threshold must be a finite number, got {null_score_diff_threshold}")
    by_example: dict[int, list[Feature]] = {}
    for f in features:
        by_example.setdefault(f.example_index, []).append(f)

    predictions: dict[str, str] = {}
    details: dict[str, dict] = {}
    passages: dict[str, _Passage] = {}  # SQuAD paragraphs are shared by several questions
    for ex_index, example in enumerate(examples):
        feats = by_example.get(ex_index, [])
        # (score, feature index, start, end, start logit, end logit), in run_squad's order.
        prelim: list[tuple[float, int, int, int, float, float]] = []
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
            # Rank over the whole window, padding included, as run_squad: padding that
            # makes the top n takes a slot and is then dropped by the checks below.
            positions = feature.token_to_orig_map
            ends = _best_indexes(end_logits, n_best_size).tolist()
            for s in _best_indexes(start_logits, n_best_size).tolist():
                if s not in positions or not feature.token_is_max_context.get(s, False):
                    continue
                for e in ends:
                    if e not in positions or e < s or e - s + 1 > max_answer_length:
                        continue
                    prelim.append((float(start_logits[s]) + float(end_logits[e]), f_index, s, e,
                                   float(start_logits[s]), float(end_logits[e])))
        if version_2_with_negative and feats:
            prelim.append((score_null, null_feature, 0, 0, null_start, null_end))
        prelim.sort(key=lambda p: p[0], reverse=True)  # stable: ties keep their order

        seen: set[str] = set()
        nbest: list[tuple[str, float, float, int, int]] = []  # text, logits, char span
        for _, f_index, s, e, s_logit, e_logit in prelim:
            if len(nbest) >= n_best_size:
                break
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


def _project(passage: _Passage, feature: Feature, s: int, e: int) -> tuple[str, tuple[int, int]]:
    """run_squad's answer text for window tokens s..e, and its passage offsets."""
    tok_text = " ".join(feature.tokens[s:e + 1])
    # De-tokenize WordPiece: glue "##" continuations and drop stray "##".
    pred_text = " ".join(tok_text.replace(" ##", "").replace("##", "").split())
    w_start, w_end = feature.token_to_orig_map[s], feature.token_to_orig_map[e]
    orig_text = " ".join(passage.example.doc_tokens[w_start:w_end + 1])
    start, end = _align(pred_text, orig_text, passage.tok_text(w_start, w_end))
    return orig_text[start:end], (passage.char_offset(w_start, start),
                                  passage.char_offset(w_start, end - 1) + 1)
