"""helpers/squad_postprocess.py: answer text, character offsets, n-best, SQuAD v2.0 null answers."""
from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import string
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.errors import UserError
from helpers.squad_features import (FeatureConfig, convert_examples_to_features, example_from_text,
                                    read_squad_examples)
from helpers.squad_postprocess import check_options, get_final_text, get_predictions
from helpers.tokenization import load_tokenizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
UNCASED = SHARED / "vocab" / "bert-base-uncased-vocab.txt"
DEV = SHARED / "squad" / "dev-v1.1.json"
DEV2 = SHARED / "squad" / "dev-v2.0-half.json"
needs_dev = pytest.mark.skipif(not DEV.is_file() or not DEV2.is_file(), reason=f"SQuAD dev sets not found at {SHARED}")


@pytest.fixture(scope="module")
def tok():
    if not UNCASED.is_file():
        pytest.skip(f"shared data not found at {SHARED}")
    return load_tokenizer(UNCASED, do_lower_case=True)


def normalize_answer(s: str) -> str:
    """The official SQuAD answer normalization: lower case, no punctuation, articles, extra spaces."""
    s = "".join(c for c in s.lower() if c not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def logits_for(features, marks: dict[int, dict[str, dict[int, float]]]):
    """results with zeros everywhere except marks[unique_id]["start"/"end"][position]."""
    out = {}
    for f in features:
        start, end = np.zeros(len(f.input_ids), np.float32), np.zeros(len(f.input_ids), np.float32)
        for pos, v in marks.get(f.unique_id, {}).get("start", {}).items():
            start[pos] = v
        for pos, v in marks.get(f.unique_id, {}).get("end", {}).items():
            end[pos] = v
        out[f.unique_id] = (start, end)
    return out


# ---------------------------------------------------------------- get_final_text

@pytest.mark.parametrize("pred, orig, lower, want", [
    ("steve smith", "Steve Smith's", True, "Steve Smith"),       # possessive dropped
    ("1895", "(1895-1943).", True, "1895"),                      # punctuation around kept out
    ("1895 - 1943", "(1895-1943).", True, "1895-1943"),          # inner punctuation, original spacing
    ("u . s .", "U.S.", True, "U.S."),
    ("cafe", "Café,", True, "Café"),                             # accent restored from the original
    ("naive", "Naïve café", True, "Naïve"),
    ("Café", "Café,", False, "Café"),                            # cased model: matched as is
    ("cafe", "Café", False, "Café"),                             # not found: the whole original
    ("steve", "Steve's", False, "Steve's"),                      # cased, wrong case: not found
    ("中 文", "中文", True, "中文"),                              # CJK characters are separate tokens
    ("the", "Then the", True, "The"),                            # first match wins, as in BERT
    ("baz", "foo\u200bbar baz", True, "foo\u200bbar baz"),       # lengths differ after cleaning
    ("paris", "Paris.\u00a0Really.", True, "Paris.\u00a0Really."),  # NBSP is no " ": no alignment
    ("istanbul", "İstanbul!", True, "İstanbul"),
    # Characters BERT drops never start or end an answer, even where the whole words are kept.
    ("the eiffel tower", "\ufeffThe Eiffel Tower", True, "The Eiffel Tower"),
    ("1889", "1889.\x00", True, "1889."),
    ("paris", "\u200bParis\u200e", True, "Paris"),
    ("baz", "foo\u200bbar baz\x01", True, "foo\u200bbar baz"),
    ("cafe", "cafe\u0301\u200b", True, "cafe\u0301"),   # a combining accent stays with its letter
])
def test_get_final_text(pred, orig, lower, want):
    assert get_final_text(pred, orig, lower) == want


# ---------------------------------------------------------------- offsets

PASSAGE = "The  Eiffel\nTower (1887-1889) stands in Paris.\u00a0Really."


def _one_window(tok, passage, question="What stands in Paris?"):
    ex = example_from_text(passage, question)
    (f,) = convert_examples_to_features([ex], tok, FeatureConfig())
    return ex, f


@pytest.mark.parametrize("first, last, prediction, sliced", [
    ("e", "tower", "Eiffel Tower", "Eiffel\nTower"),        # "e ##iff ##el tower"; the passage's own whitespace
    ("1887", "1887", "1887", "1887"),                       # part of a word
    ("1887", "1889", "1887-1889", "1887-1889"),
    ("the", "##el", "The Eiffel", "The  Eiffel"),
    ("paris", "paris", "Paris.\u00a0Really.", "Paris.\u00a0Really."),
])
def test_character_offsets_slice_the_passage(tok, first, last, prediction, sliced):
    ex, f = _one_window(tok, PASSAGE)
    s = f.tokens.index(first, f.tokens.index("[SEP]"))
    e = f.tokens.index(last, s)
    preds, details = get_predictions([ex], [f], logits_for([f], {f.unique_id: {"start": {s: 10}, "end": {e: 10}}}))
    d = details[ex.qas_id]
    assert preds[ex.qas_id] == prediction
    assert d["text"] == sliced == PASSAGE[d["start"]:d["end"]]
    assert d["score"] == 20.0
    for n in d["nbest"]:  # every n-best entry slices too
        assert PASSAGE[n["start"]:n["end"]] == n["text"]


@pytest.mark.parametrize("passage, first, last, want", [
    ("\ufeffThe Eiffel Tower was built in 1889.", "the", "tower", "The Eiffel Tower"),  # a BOM at the start
    ("The tower was built in 1889.\x00 in Paris", "1889", "1889", "1889."),
    ("The tower was built in\u200b \x01\u200b1889\u200e", "1889", "1889", "1889"),
    # (inside the kept words they stay: run_squad keeps whole words where clean-up changed the length)
])
def test_dropped_characters_stay_out_of_answers(tok, passage, first, last, want):
    # Offsets refer to the passage as given: passage[start:end] is the answer, without the stray characters.
    ex, f = _one_window(tok, passage, "When was it built?")
    s = f.tokens.index(first, f.tokens.index("[SEP]"))
    e = f.tokens.index(last, s)
    preds, details = get_predictions([ex], [f], logits_for([f], {f.unique_id: {"start": {s: 10}, "end": {e: 10}}}))
    d = details[ex.qas_id]
    assert preds[ex.qas_id] == d["text"] == want == passage[d["start"]:d["end"]]
    for n in d["nbest"]:
        assert n["text"] == passage[n["start"]:n["end"]] and n["text"] == n["text"].strip("\ufeff\x00\x01\u200b\u200e")


@pytest.mark.parametrize("kwargs, message", [
    ({"n_best_size": 0}, r"^n_best_size \(--n-best-size\) must be a positive integer, got 0$"),
    ({"n_best_size": 2.5}, r"n_best_size \(--n-best-size\) must be a positive integer, got 2.5"),
    ({"max_answer_length": 0}, r"^max_answer_length \(--max-answer-length\) must be a positive integer, got 0$"),
    ({"null_score_diff_threshold": math.inf}, r"null_score_diff_threshold \(--null-score-diff-threshold\) must be a "
                                              r"finite number, got inf"),
    ({"null_score_diff_threshold": -math.inf}, "finite number, got -inf"),
    ({"null_score_diff_threshold": math.nan}, "finite number, got nan"),
])
def test_options_are_checked_with_their_flags(tok, kwargs, message):
    ex, f = _one_window(tok, "a b c", "q?")
    with pytest.raises(UserError, match=message):
        get_predictions([ex], [f], logits_for([f], {}), **kwargs)
    with pytest.raises(UserError, match=message):
        check_options(**{"n_best_size": 20, "max_answer_length": 30, "null_score_diff_threshold": 0.0, **kwargs})


# ---------------------------------------------------------------- n-best

def test_nbest_order_probabilities_and_length_limit(tok):
    ex, f = _one_window(tok, "a b c d e f", "q?")
    assert f.tokens[4:10] == list("abcdef")
    marks = {f.unique_id: {"start": {4: 3.0, 6: 2.0}, "end": {5: 1.0, 7: 2.5}}}
    preds, details = get_predictions([ex], [f], logits_for([f], marks), n_best_size=3)
    nbest = details[ex.qas_id]["nbest"]
    # Top-3 starts: a (3), c (2), [CLS] (0, first of the ties); ends: d, b, [CLS].
    assert [(n["text"], n["score"]) for n in nbest] == [("a b c d", 5.5), ("c d", 4.5), ("a b", 4.0)]
    z = sum(math.exp(x) for x in (5.5, 4.5, 4.0))
    assert [n["probability"] for n in nbest] == pytest.approx([math.exp(x) / z for x in (5.5, 4.5, 4.0)])
    assert preds[ex.qas_id] == "a b c d" and details[ex.qas_id]["probability"] == pytest.approx(math.exp(5.5) / z)
    assert [(n["start_logit"], n["end_logit"]) for n in nbest] == [(3.0, 2.5), (2.0, 2.5), (3.0, 1.0)]
    # Spans longer than max_answer_length tokens are dropped.
    preds, details = get_predictions([ex], [f], logits_for([f], marks), n_best_size=3, max_answer_length=2)
    assert [n["text"] for n in details[ex.qas_id]["nbest"]] == ["c d", "a b"]


def test_duplicate_texts_are_kept_once(tok):
    ex, f = _one_window(tok, PASSAGE)
    p, r = f.tokens.index("paris"), f.tokens.index("really")
    marks = {f.unique_id: {"start": {p: 5.0, r: 4.0}, "end": {r: 3.0}}}
    _, details = get_predictions([ex], [f], logits_for([f], marks))
    texts = [n["text"] for n in details[ex.qas_id]["nbest"]]
    assert texts[0] == "Paris.\u00a0Really." and texts.count("Paris.\u00a0Really.") == 1


def test_padding_in_the_top_n_takes_a_slot(tok):
    # run_squad ranks all max_seq_length positions and then drops those past the tokens.
    ex, f = _one_window(tok, "a b c", "q?")
    pad = len(f.tokens) + 3
    marks = {f.unique_id: {"start": {pad: 9.0, 4: 1.0}, "end": {5: 1.0}}}
    preds, details = get_predictions([ex], [f], logits_for([f], marks), n_best_size=1)
    assert preds[ex.qas_id] == "" and details[ex.qas_id]["start"] == -1  # nothing valid left
    preds, _ = get_predictions([ex], [f], logits_for([f], marks), n_best_size=2)
    assert preds[ex.qas_id] == "a b"


def test_start_must_be_max_context(tok):
    letters = " ".join(string.ascii_lowercase[:20])
    ex = example_from_text(letters, "which?")
    feats = convert_examples_to_features([ex], tok, FeatureConfig(12, 3, 4))  # windows at 0, 3, 6, ...
    w0, w1 = feats[0], feats[1]
    # "f" (word 5) is max context in window 1 only; window 0 has it at position 9.
    assert w0.tokens[9] == w1.tokens[6] == "f" and not w0.token_is_max_context[9] and w1.token_is_max_context[6]
    results = logits_for(feats, {w1.unique_id: {"start": {6: 1.0}, "end": {7: 1.0}}})
    start0, end0 = np.full(12, -100.0, np.float32), np.full(12, -100.0, np.float32)
    start0[9], end0[10] = 10.0, 10.0  # "f g" scores 20 in window 0, where "f" is not max context
    results[w0.unique_id] = (start0, end0)
    preds, details = get_predictions([ex], feats, results)
    assert preds[ex.qas_id] == "f g" and details[ex.qas_id]["score"] == 2.0  # window 1's "f g"


# ---------------------------------------------------------------- SQuAD v2.0

def test_null_answer_and_threshold(tok):
    letters = " ".join(string.ascii_lowercase[:20])
    ex = example_from_text(letters, "which?")
    feats = convert_examples_to_features([ex], tok, FeatureConfig(12, 3, 4))
    # [CLS] scores 4 in window 0, 1 in window 1, 6 in the others: the null score is the least, 1.
    marks = {f.unique_id: {"start": {0: 3.0}, "end": {0: 3.0}} for f in feats[2:]}
    marks[feats[0].unique_id] = {"start": {0: 2.0, 4: 0.2}, "end": {0: 2.0, 5: 0.3}}
    marks[feats[1].unique_id] = {"start": {0: 0.5}, "end": {0: 0.5}}
    results = logits_for(feats, marks)
    preds, details = get_predictions([ex], feats, results, version_2_with_negative=True)
    d = details[ex.qas_id]
    assert d["null_score_diff"] == pytest.approx(1.0 - 0.5)  # null 1.0 minus best answer "a b" (0.5)
    assert preds[ex.qas_id] == "" and d["text"] == "" and (d["start"], d["end"]) == (-1, -1)
    assert d["score"] == pytest.approx(1.0)
    assert "" in [n["text"] for n in d["nbest"]] and sum(n["probability"] for n in d["nbest"]) == pytest.approx(1)
    preds, details = get_predictions([ex], feats, results, version_2_with_negative=True,
                                     null_score_diff_threshold=0.6)
    assert preds[ex.qas_id] == "a b" and details[ex.qas_id]["null_score_diff"] == pytest.approx(0.5)
    # Without v2.0 there is no null answer at all.
    preds, details = get_predictions([ex], feats, results)
    assert preds[ex.qas_id] == "a b" and details[ex.qas_id]["null_score_diff"] is None
    with pytest.raises(UserError, match="finite"):  # a NaN threshold would answer everything silently
        get_predictions([ex], feats, results, version_2_with_negative=True, null_score_diff_threshold=float("nan"))


@needs_dev
def test_v2_file_is_read_with_impossible_questions():
    examples = read_squad_examples(DEV2, is_training=False, version_2_with_negative=True)
    assert len(examples) == 6078 and sum(e.is_impossible for e in examples) == 3168
    assert all(e.answers == () for e in examples if e.is_impossible)


# ---------------------------------------------------------------- round trip on SQuAD dev

@needs_dev
def test_round_trip_gold_positions_give_gold_answers(tok):
    """Put the logits' peaks on the gold answer's tokens; the text that comes back is the answer."""
    examples = read_squad_examples(DEV, is_training=False)[::5]
    golds = {}
    raw = json.loads(DEV.read_text(encoding="utf-8"))["data"]
    for article in raw:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                golds[qa["id"]] = qa["answers"][0]
    train_like = []
    for ex in examples:
        a = golds[ex.qas_id]
        first = ex.char_to_word_offset[a["answer_start"]]
        last = ex.char_to_word_offset[a["answer_start"] + len(a["text"]) - 1]
        train_like.append(dataclasses.replace(ex, orig_answer_text=a["text"], start_position=first,
                                              end_position=last))
    # Training features know the answer's token positions (narrowed by _improve_answer_span).
    feats = convert_examples_to_features(train_like, tok, FeatureConfig(), is_training=True)
    marks = {f.unique_id: {"start": {f.start_position: 10.0}, "end": {f.end_position: 10.0}}
             for f in feats if f.start_position > 0}
    t0 = time.perf_counter()
    preds, details = get_predictions(examples, feats, logits_for(feats, marks))
    seconds = time.perf_counter() - t0
    right = sum(normalize_answer(preds[ex.qas_id]) in {normalize_answer(t) for t in ex.answers} for ex in examples)
    assert right / len(examples) >= 0.99, f"{right}/{len(examples)}"
    for ex in examples:
        d = details[ex.qas_id]
        assert ex.context[d["start"]:d["end"]] == d["text"]
        assert " ".join(d["text"].split()) == preds[ex.qas_id]
    assert seconds < 30


# ---------------------------------------------------------------- robustness

def test_missing_logits_is_a_user_error(tok):
    ex, f = _one_window(tok, "a b c", "q?")
    with pytest.raises(UserError, match="no logits for feature 1000000000"):
        get_predictions([ex], [f], {})


def test_long_passage_predictions(tok):
    rng = random.Random(2)
    words = [rng.choice(["Tower", "river", "(1887)", "Paris,", "stone", "naïve"]) for _ in range(100_000)]
    passage = "  ".join(words)
    ex = example_from_text(passage, "What is it?")
    feats = convert_examples_to_features([ex], tok, FeatureConfig())
    rs = np.random.default_rng(0)
    results = {f.unique_id: (rs.normal(size=384).astype(np.float32), rs.normal(size=384).astype(np.float32))
               for f in feats}
    t0 = time.perf_counter()
    preds, details = get_predictions([ex], feats, results)
    assert time.perf_counter() - t0 < 60
    d = details[ex.qas_id]
    assert len(d["nbest"]) == 20 and d["text"] and passage[d["start"]:d["end"]] == d["text"]
    scores = [n["score"] for n in d["nbest"]]
    assert scores == sorted(scores, reverse=True)
