"""helpers/qa.py with odd input: options checked before any work, text that BERT's clean-up empties,
stray characters at an answer's ends, long passages (memory, progress) and SQuAD files' odd questions."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tracemalloc

import pytest

from helpers.errors import UserError
from helpers.qa import Answerer, QAConfig
from helpers.squad_features import read_squad_examples
from helpers.tokenization import dropped_by_bert
from model_fixtures import REPO, save_random_hf_model

WORDS = ["the", "tower", "was", "built", "in", "paris", "capital", "of", "france", "river", "seine", "1889."]


@pytest.fixture(scope="module")
def engine_path(tmp_path_factory):
    """A small random BERT's onnxruntime engine, -b 1 -b 8 -s 64 -s 128 (built once per module)."""
    from helpers.build import build_engine, load_checkpoint, profiles_from
    from helpers.engine_file import save_engine

    tmp = tmp_path_factory.mktemp("qa_input")
    ck = load_checkpoint(hf=str(save_random_hf_model(tmp / "model")))
    path = tmp / "small.engine"
    save_engine(path, build_engine(ck, "onnxruntime", profiles_from([1, 8], [64, 128], 128)))
    return path


@pytest.fixture(scope="module")
def answerer(engine_path):
    from helpers.runtime import open_engine

    return Answerer(open_engine(engine_path), QAConfig(max_seq_length=64, max_query_length=16))


def passage_of(n_words: int, sep: str = " ") -> str:
    return sep.join(WORDS[i % len(WORDS)] for i in range(n_words))


def run_inference(*args):
    return subprocess.run([sys.executable, "inference.py", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def assert_one_line_error(proc, pattern: str):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert re.search(pattern, lines[0]), lines[0]


# ---------------------------------------------------------------- options, before any work

@pytest.mark.parametrize("kwargs, message", [
    ({"n_best_size": 0}, r"n_best_size \(--n-best-size\) must be a positive integer, got 0"),
    ({"max_answer_length": 0}, r"max_answer_length \(--max-answer-length\) must be a positive integer, got 0"),
    ({"max_answer_length": -3}, r"--max-answer-length\) must be a positive integer, got -3"),
    ({"null_score_diff_threshold": math.inf}, r"null_score_diff_threshold \(--null-score-diff-threshold\) must "
                                              "be a finite number, got inf"),
    ({"null_score_diff_threshold": math.nan}, "finite number, got nan"),
])
def test_qaconfig_checks_postprocessing_options(kwargs, message):
    with pytest.raises(UserError, match=message):
        QAConfig(**kwargs)


def test_window_options_name_their_flags(engine_path):
    from helpers.runtime import open_engine

    runner = open_engine(engine_path)
    with pytest.raises(UserError, match=r"max_query_length \(--max-query-length\) must be a positive integer"):
        Answerer(runner, QAConfig(max_seq_length=64, max_query_length=0))
    with pytest.raises(UserError, match=r"doc_stride \(--doc-stride\) 50 is larger .* use --doc-stride <= 45"):
        Answerer(runner, QAConfig(max_seq_length=64, max_query_length=16, doc_stride=50))


def test_cli_refuses_a_bad_option_before_running_any_window(engine_path, tmp_path):
    squad = tmp_path / "s.json"
    squad.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [
        {"context": passage_of(400), "qas": [{"id": "a", "question": "when was it built?"}]}]}]}))
    proc = run_inference("-e", engine_path, "-s", 128, "-sq", squad, "-o", tmp_path / "p.json", "--n-best-size", 0)
    assert_one_line_error(proc, r"n_best_size \(--n-best-size\)")  # one line: no progress bar ran before it
    assert not (tmp_path / "p.json").exists()


# ---------------------------------------------------------------- text that BERT's clean-up empties

@pytest.mark.parametrize("passage", ["\u200b\u200b", "\x00\x01\x02", "\ufeff", "\u200b \u200e\n\u00ad"])
def test_unreadable_passage_is_refused(answerer, passage):
    with pytest.raises(UserError, match="the passage has no readable text after normalization"):
        answerer.answer(passage, ["When was it built?"])


@pytest.mark.parametrize("question", ["\u200b", "\u0301", "\x00\u200e"])
def test_unreadable_question_is_refused(answerer, question):
    # (an empty question used to be answered as if none had been asked; "" itself was refused already)
    with pytest.raises(UserError, match=r"the question .* has no readable text after normalization"):
        answerer.answer("The tower was built in 1889.", ["When was it built?", question])


def test_cli_unreadable_passage_is_one_line_error(engine_path):
    proc = run_inference("-e", engine_path, "-s", 128, "-p", "\u200b\u200b", "-q", "When was it built?")
    assert_one_line_error(proc, "the passage has no readable text")
    assert "Answer" not in proc.stdout


def test_squad_run_goes_on_past_odd_questions(answerer, capsys):
    """In a SQuAD file they are read as run_squad reads them: one odd question does not stop a run."""
    data = {"data": [{"title": "T", "paragraphs": [
        {"context": "\u200b\x00", "qas": [{"id": "empty-passage", "question": "When was it built?"}]},
        {"context": passage_of(30), "qas": [{"id": "zw-question", "question": "\u200b"},
                                            {"id": "fine", "question": "where is the tower?"}]}]}]}
    preds, details, _ = answerer.predict(read_squad_examples(data, is_training=False))
    assert set(preds) == {"empty-passage", "zw-question", "fine"}
    assert preds["empty-passage"] == "" and details["empty-passage"]["start"] == -1
    assert preds["zw-question"] and preds["fine"]  # answered from the passage, as run_squad does
    err = capsys.readouterr().err
    assert err.startswith("warning: 1 of 3 questions have a passage with no readable text") and err.count("\n") == 1


# ---------------------------------------------------------------- stray characters at an answer's ends

def test_answers_never_start_or_end_with_dropped_characters(answerer):
    # Every word wrapped in characters BERT drops; offsets index the passage as given.
    wrappers = ["\ufeff{}", "{}\x00", "\u200b{}\u200e", "{}\x01", "\u00ad{}"]
    passage = " ".join(wrappers[i % len(wrappers)].format(WORDS[i % len(WORDS)]) for i in range(60))
    questions = ["when was it built?", "where is the tower?", "what river?", "what capital?"]
    for r in answerer.answer(passage, questions):
        assert r["answer"] and r["answer"] == passage[r["start"]:r["end"]]
        assert not dropped_by_bert(r["answer"][0]) and not dropped_by_bert(r["answer"][-1]), r["answer"]


def test_bom_passage_offsets_refer_to_the_text_given(answerer):
    passage = "\ufeff" + passage_of(20)
    for r in answerer.answer(passage, ["where is the tower?", "what was built?"]):
        assert r["answer"] == passage[r["start"]:r["end"]] and not r["answer"].startswith("\ufeff")


# ---------------------------------------------------------------- long passages

class Bar:
    """A progress bar as tqdm's: update(n) and close()."""

    def __init__(self, total: int):
        self.total, self.done, self.closed = total, 0, False

    def update(self, n: int) -> None:
        self.done += n

    def close(self) -> None:
        self.closed = True


def test_answer_reports_progress_over_windows(answerer):
    bars = []

    def factory(total):
        bars.append(Bar(total))
        return bars[-1]

    results = answerer.answer(passage_of(2000), ["when was it built?", "where?"], progress_factory=factory)
    (bar,) = bars
    assert bar.total == bar.done == results[0]["timings"]["num_features"] > 50 and bar.closed


def test_long_passage_memory_stays_small(answerer):
    """The pipeline took ~29 KB a window here (two dicts a window, an int object a character and question, a
    tuple a candidate span): ~4.9 GB for a 20 MB passage. Now ~7 KB: arrays shared by the windows."""
    passage = passage_of(60_000, sep="  ")  # ~370 KB, ~1300 windows for each of 3 questions
    tracemalloc.start()
    try:
        results = answerer.answer(passage, ["when was it built?", "where is the tower?", "what river?"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    n = results[0]["timings"]["num_features"]
    assert n > 3000
    for r in results:
        assert r["answer"] == passage[r["start"]:r["end"]]
    assert peak / n < 12_000, f"{peak / 1e6:.0f} MB traced for {n} windows"


def test_one_question_as_a_string(answerer):
    """A string is one question (not one question per character); other types are a TypeError."""
    passage = "The tower was built in 1889 in Paris."
    one = answerer.answer(passage, "When was the tower built?")
    assert len(one) == 1 and one[0]["question"] == "When was the tower built?"
    assert one[0]["answer"] == answerer.answer(passage, ["When was the tower built?"])[0]["answer"]
    with pytest.raises(TypeError, match="question strings"):
        answerer.answer(passage, [None])
    with pytest.raises(TypeError, match="passage string"):
        answerer.answer(None, ["When?"])


def test_questions_as_a_generator_or_none(answerer):
    passage = "The tower was built in 1889 in Paris."
    got = answerer.answer(passage, (q for q in ["When was the tower built?"]))
    assert len(got) == 1 and got[0]["question"] == "When was the tower built?"
    assert answerer.answer(passage, []) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"max_seq_length": "384"}, r"max_seq_length \(-s\) must be a positive integer, got '384'"),
    ({"max_query_length": None}, r"max_query_length \(--max-query-length\)"),
    ({"batch_size": 2.5}, r"batch_size \(-b\) must be a positive integer, got 2.5"),
    ({"batch_size": True}, r"batch_size \(-b\)"),
    ({"doc_stride": "64"}, r"doc_stride \(--doc-stride\)"),
    ({"version_2_with_negative": "False"}, "must be True or False"),
])
def test_qaconfig_checks_types(kwargs, message):
    with pytest.raises(UserError, match=message):
        QAConfig(**kwargs)
