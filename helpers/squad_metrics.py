"""SQuAD v1.1 and v2.0 evaluation metrics (exact match and token F1).

Written from the metric's definition, with the same numbers as the official
evaluation scripts on well-formed input:

* an answer is normalized by lower-casing it, removing punctuation, removing
  the articles a / an / the, and collapsing whitespace;
* exact match (EM) is 1 when the normalized prediction equals a normalized
  gold answer; token F1 is the harmonic mean of precision and recall of the
  multiset (Counter) overlap of normalized tokens;
* each question scores the maximum over its gold answers, and a set scores the
  mean over its questions, as a percentage.

SQuAD v2.0 adds unanswerable questions: a question whose gold answers are
empty (after dropping gold texts that normalize to nothing) has the single gold
answer "", so the empty prediction is right for it. With a no-answer
probability per question, a prediction is replaced by "" when its probability
exceeds a threshold, and best_exact / best_f1 report the best score over all
thresholds, found as the official v2.0 script does.

Where the official scripts would crash or silently mis-score, this module
raises UserError with one line that says what is wrong; where the official
scripts differ between versions this module documents its choice:

* A question without a prediction scores 0 in both versions, is counted in
  every total, and is reported through ``on_missing`` (by default one warning
  line on stderr each, as the official v1.1 script does). The official v2.0
  script crashes on the HasAns/NoAns breakdown instead.
* na_probs must give a probability for every predicted question of the
  dataset; ids that are not in the dataset are ignored.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import string
import sys
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from helpers.errors import UserError, read_json

__all__ = [
    "normalize_answer", "get_tokens", "exact_match_score", "f1_score_v1", "f1_score_v2",
    "evaluate_v1", "evaluate_v2", "find_best_thresh", "precision_recall_ap",
    "iter_questions", "load_json", "load_dataset", "load_predictions", "load_na_probs",
    "passes_threshold", "F1_TOLERANCE", "has_answer_map", "import_pyplot", "write_v2_plots",
    "ArgumentParser",
]

# demoBERT's accuracy check passes when f1 >= reference - F1_TOLERANCE.
F1_TOLERANCE = 0.5

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)

MissingHook = Callable[[str], None]


# --------------------------------------------------------------------------- normalization

def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, drop articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def get_tokens(text: str) -> list[str]:
    """The normalized tokens of an answer ([] for the empty answer)."""
    return normalize_answer(text).split() if text else []


def exact_match_score(prediction: str, ground_truth: str) -> int:
    """1 when both normalize to the same string, else 0."""
    return int(normalize_answer(prediction) == normalize_answer(ground_truth))


def _overlap_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score_v1(prediction: str, ground_truth: str) -> float:
    """Token F1 as in SQuAD v1.1: 0 whenever nothing overlaps, even if both are empty."""
    return _overlap_f1(get_tokens(prediction), get_tokens(ground_truth))


def f1_score_v2(prediction: str, ground_truth: str) -> float:
    """Token F1 as in SQuAD v2.0: if either side is empty, 1 when both are, else 0."""
    pred_tokens, gold_tokens = get_tokens(prediction), get_tokens(ground_truth)
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    return _overlap_f1(pred_tokens, gold_tokens)


# --------------------------------------------------------------------------- input

def load_json(path: str | Path, what: str) -> Any:
    """Read a JSON file, turning every way it can be unreadable into one UserError line."""
    return read_json(path, f"{what} file", "pass the JSON file the official evaluator reads")


def iter_questions(dataset: Any) -> Iterator[tuple[str, list[str]]]:
    """Yield (question id, gold answer texts) for the 'data' list of a SQuAD file.

    Checks the structure as it goes and raises UserError at the first place
    that is not article -> paragraphs -> qas -> {id, answers: [{text}]}.
    """
    if not isinstance(dataset, list):
        raise UserError("dataset 'data' must be a list of articles")
    for a, article in enumerate(dataset):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise UserError(f"dataset article {a} has no 'paragraphs' list")
        for p, paragraph in enumerate(paragraphs):
            qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
            if not isinstance(qas, list):
                raise UserError(f"dataset article {a} paragraph {p} has no 'qas' list")
            for q, qa in enumerate(qas):
                where = f"dataset article {a} paragraph {p} question {q}"
                if not isinstance(qa, dict) or not isinstance(qa.get("id"), str):
                    raise UserError(f"{where} has no string 'id'")
                answers = qa.get("answers")
                if not isinstance(answers, list):
                    raise UserError(f"{where} (id {qa['id']}) has no 'answers' list")
                texts = []
                for answer in answers:
                    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
                        raise UserError(f"{where} (id {qa['id']}) has an answer without a "
                                        f"string 'text'")
                    texts.append(answer["text"])
                yield qa["id"], texts


def load_dataset(path: str | Path, expected_version: str | None = None,
                 warn: Callable[[str], None] | None = None) -> list:
    """The 'data' list of a SQuAD dataset file (structure checked lazily by iter_questions).

    With expected_version, a different 'version' field only warns, as the
    official v1.1 script does.
    """
    content = load_json(path, "dataset")
    if not isinstance(content, dict) or "data" not in content:
        raise UserError(f"dataset file is not a SQuAD dataset (a JSON object with 'data'): {path}")
    version = content.get("version")
    if expected_version is not None and version != expected_version:
        (warn or _stderr)(f"Evaluation expects v-{expected_version}, "
                          f"but got dataset with v-{version}")
    return content["data"]


def _check_predictions(predictions: Any) -> Mapping[str, str]:
    if not isinstance(predictions, dict):
        raise UserError("predictions must be a JSON object mapping question id to answer text, "
                        f"got a JSON {_json_type(predictions)}")
    for qid, answer in predictions.items():
        if not isinstance(answer, str):
            raise UserError(f"prediction for question {qid} must be a string, "
                            f"got a JSON {_json_type(answer)}")
    return predictions


def load_predictions(path: str | Path) -> Mapping[str, str]:
    """A predictions file: a JSON object {question id: answer text}."""
    predictions = load_json(path, "predictions")
    try:
        return _check_predictions(predictions)
    except UserError as exc:
        raise UserError(f"{exc} ({path})") from None


def _check_na_probs(na_probs: Any) -> Mapping[str, float]:
    if not isinstance(na_probs, dict):
        raise UserError("no-answer probabilities must be a JSON object mapping question id to "
                        f"a number, got a JSON {_json_type(na_probs)}")
    for qid, prob in na_probs.items():
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or math.isnan(prob):
            raise UserError(f"no-answer probability for question {qid} must be a number, "
                            f"got {json.dumps(prob)}")
    return na_probs


def load_na_probs(path: str | Path) -> Mapping[str, float]:
    """A no-answer probability file: a JSON object {question id: number}."""
    na_probs = load_json(path, "no-answer probability")
    try:
        return _check_na_probs(na_probs)
    except UserError as exc:
        raise UserError(f"{exc} ({path})") from None


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            int: "number", float: "number", type(None): "null"}.get(type(value), "value")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _warn_unanswered(qid: str) -> None:
    _stderr(f"Unanswered question {qid} will receive score 0.")


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage mistakes are one-line UserErrors (exit 2 through run_main)."""

    def error(self, message: str):  # type: ignore[override]
        usage = " ".join(self.format_usage().split())
        raise UserError(f"{message} ({usage})")


# --------------------------------------------------------------------------- v1.1

def evaluate_v1(dataset: list, predictions: Mapping[str, str],
                on_missing: MissingHook | None = _warn_unanswered) -> dict:
    """SQuAD v1.1 scores of predictions on a dataset's 'data' list.

    Returns {"exact_match": %, "f1": %} over all questions of the dataset;
    a question without a prediction scores 0 and is passed to on_missing.
    """
    _check_predictions(predictions)
    exact = f1 = 0.0
    total = 0
    for qid, gold in iter_questions(dataset):
        total += 1
        if not gold:
            raise UserError(f"question {qid} has no gold answers: SQuAD v1.1 needs one or more "
                            "(for SQuAD v2.0 data use evaluate-v2.0.py)")
        if qid not in predictions:
            if on_missing is not None:
                on_missing(qid)
            continue
        prediction = predictions[qid]
        exact += max(exact_match_score(prediction, g) for g in gold)
        f1 += max(f1_score_v1(prediction, g) for g in gold)
    if total == 0:
        raise UserError("dataset has no questions")
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}


def passes_threshold(f1: float, reference_f1: float, tolerance: float = F1_TOLERANCE) -> bool:
    """demoBERT's accuracy check: FAILED when f1 < reference - tolerance, or when either is not a
    number (a NaN compares false with everything, and would pass)."""
    if not all(math.isfinite(x) for x in (f1, reference_f1, tolerance)):
        return False
    return f1 >= reference_f1 - tolerance


# --------------------------------------------------------------------------- v2.0

def _gold_v2(texts: list[str]) -> list[str]:
    gold = [t for t in texts if normalize_answer(t)]
    return gold or [""]


def find_best_thresh(predictions: Mapping[str, str], scores: Mapping[str, float],
                     na_probs: Mapping[str, float], has_ans: Mapping[str, bool]
                     ) -> tuple[float, float]:
    """Best score (%) over no-answer thresholds, and the threshold that reaches it.

    The sweep of the official v2.0 script: start from "every question answered
    with no-answer" (score = number of unanswerable questions), then, in order
    of increasing na_prob, switch each question to its prediction; an
    answerable question then gains its score, an unanswerable one loses 1 if
    its raw prediction is non-empty. The first strict maximum wins; its
    threshold is that question's na_prob (0.0 if no switch improves).

    scores holds every question of the dataset (unanswered ones at 0); a
    question without a prediction cannot be switched and counts 0 throughout.
    """
    if not scores:
        # the official script divides by zero here; evaluate_v2 refuses an empty dataset first
        raise ValueError("find_best_thresh needs the scores of one or more questions")
    cur = best = sum(1 for q, h in has_ans.items() if not h and q in predictions)
    best_thresh = 0.0
    for qid in sorted((q for q in na_probs if q in predictions and q in scores),
                      key=lambda q: na_probs[q]):
        if has_ans[qid]:
            cur += scores[qid]
        elif predictions[qid]:
            cur -= 1
        if cur > best:
            best, best_thresh = cur, na_probs[qid]
    return 100.0 * best / len(scores), best_thresh


def precision_recall_ap(scores: Mapping[str, float], na_probs: Mapping[str, float],
                        has_ans: Mapping[str, bool]
                        ) -> tuple[float, list[float], list[float]]:
    """Average precision (%) of answering in order of increasing na_prob, and the curve.

    As the official v2.0 script's precision-recall analysis: walking the
    questions by increasing na_prob, true positives accumulate the score of
    answerable questions; a point is taken wherever a threshold can fall
    (between distinct na_probs), and AP sums precision times recall gained.
    Returns (ap, precisions, recalls).
    """
    num_true_pos = sum(1 for h in has_ans.values() if h)
    qids = sorted((q for q in na_probs if q in scores), key=lambda q: na_probs[q])
    true_pos = ap = 0.0
    precisions, recalls = [1.0], [0.0]
    for i, qid in enumerate(qids):
        if has_ans[qid]:
            true_pos += scores[qid]
        if i == len(qids) - 1 or na_probs[qid] != na_probs[qids[i + 1]]:
            precision, recall = true_pos / (i + 1), true_pos / num_true_pos
            ap += precision * (recall - recalls[-1])
            precisions.append(precision)
            recalls.append(recall)
    return 100.0 * ap, precisions, recalls


def _eval_dict(exact: Mapping[str, float], f1: Mapping[str, float],
               qids: Iterable[str]) -> "OrderedDict[str, float]":
    qids = list(qids)
    total = len(qids)
    return OrderedDict([("exact", 100.0 * sum(exact[q] for q in qids) / total),
                        ("f1", 100.0 * sum(f1[q] for q in qids) / total),
                        ("total", total)])


def evaluate_v2(dataset: list, predictions: Mapping[str, str],
                na_probs: Mapping[str, float] | None = None, na_prob_thresh: float = 1.0,
                on_missing: MissingHook | None = _warn_unanswered,
                pr_curves: dict | None = None) -> "OrderedDict[str, float]":
    """SQuAD v2.0 scores, keyed as the official script's output.

    exact, f1, total; HasAns_exact/f1/total and NoAns_exact/f1/total when the
    dataset has such questions; with na_probs also best_exact,
    best_exact_thresh, best_f1, best_f1_thresh. A prediction whose na_prob
    exceeds na_prob_thresh is taken as no-answer. Without na_probs every
    na_prob is 0.0 (so no prediction is overridden), as in the official script.

    If pr_curves is a dict (and na_probs are given, and some question is
    answerable), the precision-recall analysis of the official -p option is
    run: pr_exact_ap, pr_f1_ap, pr_oracle_ap are added to the result and
    pr_curves receives {"exact"|"f1"|"oracle": (precisions, recalls)}.
    """
    _check_predictions(predictions)
    given_na_probs = na_probs is not None
    if given_na_probs:
        _check_na_probs(na_probs)
    else:
        na_probs = {qid: 0.0 for qid in predictions}
    if isinstance(na_prob_thresh, bool) or not isinstance(na_prob_thresh, (int, float)) \
            or math.isnan(na_prob_thresh):
        raise UserError(f"no-answer threshold must be a number, got {na_prob_thresh!r}")

    has_ans: "OrderedDict[str, bool]" = OrderedDict()
    exact_raw: dict[str, float] = {}
    f1_raw: dict[str, float] = {}
    missing = []
    for qid, texts in iter_questions(dataset):
        if qid in has_ans:
            raise UserError(f"dataset has question id {qid} twice")
        has_ans[qid] = bool(texts)
        gold = _gold_v2(texts)
        if qid not in predictions:
            missing.append(qid)
            if on_missing is not None:
                on_missing(qid)
            exact_raw[qid] = f1_raw[qid] = 0.0
            continue
        if qid not in na_probs:
            raise UserError(f"no-answer probability file has no entry for question {qid}")
        prediction = predictions[qid]
        exact_raw[qid] = float(max(exact_match_score(prediction, g) for g in gold))
        f1_raw[qid] = max(f1_score_v2(prediction, g) for g in gold)
    if not has_ans:
        raise UserError("dataset has no questions")

    # Apply the no-answer threshold; unanswered questions stay at 0.
    exact_thr, f1_thr = dict(exact_raw), dict(f1_raw)
    for qid in has_ans:
        if qid in predictions and na_probs[qid] > na_prob_thresh:
            exact_thr[qid] = f1_thr[qid] = float(not has_ans[qid])

    result = _eval_dict(exact_thr, f1_thr, has_ans)
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [q for q, h in has_ans.items() if h is wanted]
        if qids:
            for key, value in _eval_dict(exact_thr, f1_thr, qids).items():
                result[f"{prefix}_{key}"] = value
    if given_na_probs:
        result["best_exact"], result["best_exact_thresh"] = find_best_thresh(
            predictions, exact_raw, na_probs, has_ans)
        result["best_f1"], result["best_f1_thresh"] = find_best_thresh(
            predictions, f1_raw, na_probs, has_ans)
        if pr_curves is not None and any(has_ans.values()):
            answered = {q: na_probs[q] for q in has_ans if q in predictions}
            oracle = {q: float(h) for q, h in has_ans.items()}
            for name, scores in (("exact", exact_raw), ("f1", f1_raw), ("oracle", oracle)):
                ap, precisions, recalls = precision_recall_ap(scores, answered, has_ans)
                result[f"pr_{name}_ap"] = ap
                pr_curves[name] = (precisions, recalls)
    return result


def import_pyplot():
    """matplotlib.pyplot on the Agg backend, or UserError if matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--out-image-dir needs matplotlib, which is not installed "
                        "(pip install matplotlib, or leave out --out-image-dir)") from None
    return plt


def write_v2_plots(out_dir: str | Path, pr_curves: dict, na_probs: Mapping[str, float],
                   has_ans: Mapping[str, bool]) -> None:
    """Precision-recall curves and no-answer histograms, as the official -p option draws them."""
    plt = import_pyplot()
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create image directory {out_dir}: {exc.strerror or exc}") from None
    titles = {"exact": ("pr_exact.png", "Precision-Recall curve for Exact Match score"),
              "f1": ("pr_f1.png", "Precision-Recall curve for F1 score"),
              "oracle": ("pr_oracle.png",
                         "Oracle Precision-Recall curve (binary task of HasAns vs. NoAns)")}
    for name, (precisions, recalls) in pr_curves.items():
        filename, title = titles[name]
        plt.step(recalls, precisions, color="b", alpha=0.2, where="post")
        plt.fill_between(recalls, precisions, step="post", alpha=0.2, color="b")
        plt.xlabel("Recall")
        plt.ylabel("Precision")
        plt.xlim([0.0, 1.05])
        plt.ylim([0.0, 1.05])
        plt.title(title)
        plt.savefig(out_dir / filename)
        plt.clf()
    for name, wanted in (("hasAns", True), ("noAns", False)):
        values = [na_probs[q] for q, h in has_ans.items() if h is wanted and q in na_probs]
        if not values:
            continue
        plt.hist(values, weights=[1.0 / len(values)] * len(values), bins=20, range=(0.0, 1.0))
        plt.xlabel("Model probability of no-answer")
        plt.ylabel("Proportion of dataset")
        plt.title(f"Histogram of no-answer probability: {name}")
        plt.savefig(out_dir / f"na_prob_hist_{name}.png")
        plt.clf()


def has_answer_map(dataset: list) -> "OrderedDict[str, bool]":
    """{question id: whether it has gold answers} for a dataset's 'data' list."""
    return OrderedDict((qid, bool(texts)) for qid, texts in iter_questions(dataset))
