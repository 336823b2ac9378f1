"""Tests of the SQuAD metrics (helpers/squad_metrics.py) and both evaluation CLIs.

Golden numbers: the official scores of the three reference prediction files
(shared/data/README.md). v2.0 numbers are derived here from hand-made
predictions, independently of the code under test.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers import squad_metrics as sm  # noqa: E402
from helpers.errors import UserError  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SQUAD = DATA / "squad"
DEV_V1 = SQUAD / "dev-v1.1.json"
DEV_V2_HALF = SQUAD / "dev-v2.0-half.json"
PREDS_V1 = SQUAD / "predictions-v1.1"
EVAL_V1 = ROOT / "squad" / "evaluate-v1.1.py"
EVAL_V2 = ROOT / "squad" / "evaluate-v2.0.py"

# shared/data/README.md: official scores on dev-v1.1.json.
OFFICIAL_V1 = {
    "bert-ensemble.json": (86.206, 92.196),
    "slqa-ensemble.json": (81.949, 88.384),
    "match-lstm-ensemble.json": (67.635, 76.756),
}


def run(script: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert proc.stdout == ""


def squad_file(questions, version="v2.0") -> dict:
    """A one-article SQuAD file; questions are (id, [gold texts])."""
    qas = [{"id": qid, "question": "?", "is_impossible": not gold,
            "answers": [{"text": t, "answer_start": 0} for t in gold]}
           for qid, gold in questions]
    return {"version": version,
            "data": [{"title": "t", "paragraphs": [{"context": "c", "qas": qas}]}]}


@pytest.fixture(scope="module")
def v2_questions():
    """[(id, [gold texts])] of dev-v2.0-half.json, read without the code under test."""
    content = json.loads(DEV_V2_HALF.read_text(encoding="utf-8"))
    return [(qa["id"], [a["text"] for a in qa["answers"]])
            for article in content["data"] for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]]


# --------------------------------------------------------------------------- normalization

@pytest.mark.parametrize("text, expected", [
    ("The Cat!", "cat"),
    ("an apple a day", "apple day"),
    ("A", ""),
    ("the", ""),
    ("theater anthem", "theater anthem"),        # articles only as whole words
    ("  many\t spaces\n here ", "many spaces here"),
    ("U.S.A.", "usa"),                            # punctuation removed, not split
    ("rock-n-roll", "rocknroll"),
    ("Denver Broncos", "denver broncos"),
    ("École «Normale»", "école «normale»"),      # only ASCII punctuation is removed
    ("The, the. THE", ""),
    ("", ""),
])
def test_normalize_answer(text, expected):
    assert sm.normalize_answer(text) == expected


def test_get_tokens():
    assert sm.get_tokens("") == []
    assert sm.get_tokens("The big, red dog.") == ["big", "red", "dog"]


def test_exact_match():
    assert sm.exact_match_score("The  Dog.", "dog") == 1
    assert sm.exact_match_score("dogs", "dog") == 0
    assert sm.exact_match_score("", "the") == 1


@pytest.mark.parametrize("f1", [sm.f1_score_v1, sm.f1_score_v2])
def test_f1_overlap(f1):
    assert f1("big dog", "the big red dog") == pytest.approx(0.8)   # P=1, R=2/3
    assert f1("the big red dog", "big dog") == pytest.approx(0.8)   # symmetric
    assert f1("Big Dog!", "big dog") == 1.0
    assert f1("cat", "dog") == 0.0
    # Counter overlap: a repeated token counts as often as both sides have it.
    assert f1("dog dog dog", "dog") == pytest.approx(0.5)            # P=1/3, R=1
    assert f1("dog dog", "dog dog cat") == pytest.approx(0.8)        # P=1, R=2/3


def test_f1_empty_answers_differ_between_versions():
    # v1.1: nothing overlaps, so 0 even when both are empty.
    assert sm.f1_score_v1("", "") == 0.0
    assert sm.f1_score_v1("the", "") == 0.0
    # v2.0: empty vs empty is a correct no-answer; one side empty is 0.
    assert sm.f1_score_v2("", "") == 1.0
    assert sm.f1_score_v2("a", "") == 1.0
    assert sm.f1_score_v2("", "dog") == 0.0
    assert sm.f1_score_v2("dog", "") == 0.0


# --------------------------------------------------------------------------- v1.1 API

def test_evaluate_v1_max_over_ground_truths_and_missing():
    data = squad_file([("q1", ["the big red dog", "red dog"]), ("q2", ["Paris"]),
                       ("q3", ["x"]), ("q4", ["London", "in London"])], version="1.1")["data"]
    missing = []
    result = sm.evaluate_v1(data, {"q1": "big dog", "q2": "paris.", "q4": "in london"},
                            on_missing=missing.append)
    assert missing == ["q3"]
    # q1: max(0.8, 0.5), q2: 1, q3: 0 (missing), q4: 1 (second gold).
    assert result == {"exact_match": pytest.approx(50.0), "f1": pytest.approx(70.0)}


def test_evaluate_v1_rejects_v2_data_and_bad_predictions():
    data = squad_file([("q1", [])], version="1.1")["data"]
    with pytest.raises(UserError, match="no gold answers"):
        sm.evaluate_v1(data, {"q1": ""})
    with pytest.raises(UserError, match="JSON object"):
        sm.evaluate_v1(squad_file([("q1", ["a"])])["data"], ["a"])
    with pytest.raises(UserError, match="must be a string"):
        sm.evaluate_v1(squad_file([("q1", ["a"])])["data"], {"q1": ["a"]})
    with pytest.raises(UserError, match="no questions"):
        sm.evaluate_v1([], {})


def test_passes_threshold():
    assert sm.passes_threshold(90.0, 90.5)
    assert sm.passes_threshold(90.0, 90.0)
    assert not sm.passes_threshold(89.99, 90.5)
    nan = float("nan")
    assert not sm.passes_threshold(nan, 90.0) and not sm.passes_threshold(90.0, nan)  # never a pass


# --------------------------------------------------------------------------- v1.1 CLI

@pytest.mark.parametrize("name", sorted(OFFICIAL_V1))
def test_v1_cli_reproduces_official_scores(name, tmp_path):
    proc = run(EVAL_V1, DEV_V1, PREDS_V1 / name, cwd=tmp_path)   # not from the repo root
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert list(result) == ["exact_match", "f1"]
    assert (round(result["exact_match"], 3), round(result["f1"], 3)) == OFFICIAL_V1[name]
    assert proc.stderr == ""


def test_v1_api_reproduces_official_scores():
    data = sm.load_dataset(DEV_V1, expected_version="1.1")
    for name, expected in OFFICIAL_V1.items():
        result = sm.evaluate_v1(data, sm.load_predictions(PREDS_V1 / name))
        assert (round(result["exact_match"], 3), round(result["f1"], 3)) == expected


@pytest.mark.parametrize("threshold, verdict, status", [
    ("92.69", "PASSED", 0),    # 92.196 >= 92.19
    ("92.196", "PASSED", 0),
    ("90", "PASSED", 0),
    ("92.70", "FAILED", 1),    # 92.1956 < 92.20
    ("95", "FAILED", 1),
])
def test_v1_cli_threshold(threshold, verdict, status, tmp_path):
    proc = run(EVAL_V1, DEV_V1, PREDS_V1 / "bert-ensemble.json", threshold, cwd=tmp_path)
    assert proc.returncode == status, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    assert round(json.loads(lines[0])["f1"], 3) == 92.196
    assert lines[1].split(":")[0] == verdict


def test_v1_cli_warns_on_unanswered(tmp_path):
    preds = json.loads((PREDS_V1 / "bert-ensemble.json").read_text(encoding="utf-8"))
    dropped = sorted(preds)[:2]
    for qid in dropped:
        del preds[qid]
    proc = run(EVAL_V1, DEV_V1, write_json(tmp_path / "p.json", preds), cwd=tmp_path)
    assert proc.returncode == 0
    for qid in dropped:
        assert f"Unanswered question {qid} will receive score 0." in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 2
    result = json.loads(proc.stdout)
    assert result["exact_match"] < 86.206 and result["f1"] < 92.196


def test_v1_cli_empty_predictions_score_zero(tmp_path):
    proc = run(EVAL_V1, DEV_V1, write_json(tmp_path / "p.json", {}), "10", cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert json.loads(lines[0]) == {"exact_match": 0.0, "f1": 0.0}
    assert lines[1].startswith("FAILED")
    assert proc.stderr.count("Unanswered question") == 10570


# --------------------------------------------------------------------------- bad input

@pytest.fixture
def bad_files(tmp_path):
    files = {
        "missing": tmp_path / "nope.json",
        "not_json": tmp_path / "bad.json",
        "list": write_json(tmp_path / "list.json", ["a", "b"]),
        "non_string": write_json(tmp_path / "nonstr.json", {"x": 3}),
        "no_data": write_json(tmp_path / "nodata.json", {"version": "1.1"}),
        "bad_structure": write_json(tmp_path / "struct.json",
                                    {"version": "1.1", "data": [{"paragraphs": [{"qas": [
                                        {"id": "q", "answers": "Paris"}]}]}]}),
        "empty": write_json(tmp_path / "empty.json", {}),
    }
    files["not_json"].write_text("{not json", encoding="utf-8")
    return files


@pytest.mark.parametrize("script", [EVAL_V1, EVAL_V2], ids=["v1.1", "v2.0"])
def test_cli_bad_input(script, bad_files, tmp_path):
    f = bad_files
    assert_user_error(run(script, f["missing"], f["empty"], cwd=tmp_path), "not found",
                      "nope.json")
    assert_user_error(run(script, DEV_V1, f["missing"], cwd=tmp_path), "not found")
    assert_user_error(run(script, f["not_json"], f["empty"], cwd=tmp_path), "not valid JSON")
    assert_user_error(run(script, DEV_V1, f["not_json"], cwd=tmp_path), "not valid JSON")
    assert_user_error(run(script, DEV_V1, f["list"], cwd=tmp_path), "JSON object", "array")
    assert_user_error(run(script, DEV_V1, f["non_string"], cwd=tmp_path), "must be a string")
    assert_user_error(run(script, f["no_data"], f["empty"], cwd=tmp_path), "'data'")
    assert_user_error(run(script, f["list"], f["empty"], cwd=tmp_path), "'data'")
    assert_user_error(run(script, f["bad_structure"], f["empty"], cwd=tmp_path),
                      "'answers' list")
    assert_user_error(run(script, DEV_V1, tmp_path, cwd=tmp_path), "directory")
    assert_user_error(run(script, cwd=tmp_path), "required")


def test_v1_cli_bad_threshold_and_args(tmp_path):
    p = PREDS_V1 / "bert-ensemble.json"
    assert_user_error(run(EVAL_V1, DEV_V1, p, "high", cwd=tmp_path), "F1_THRESHOLD")
    assert_user_error(run(EVAL_V1, DEV_V1, p, "nan", cwd=tmp_path), "F1_THRESHOLD")
    assert_user_error(run(EVAL_V1, DEV_V1, p, "90", "extra", cwd=tmp_path), "unrecognized")


def test_v1_cli_on_v2_data(tmp_path):
    proc = run(EVAL_V1, DEV_V2_HALF, write_json(tmp_path / "p.json", {}), cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "Evaluation expects v-1.1" in proc.stderr            # the official warning
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "evaluate-v2.0.py" in proc.stderr


def test_v2_cli_bad_options(tmp_path, v2_questions):
    preds = write_json(tmp_path / "p.json", {qid: "" for qid, _ in v2_questions})
    partial_na = write_json(tmp_path / "na.json", {v2_questions[0][0]: 0.5})
    assert_user_error(run(EVAL_V2, DEV_V2_HALF, preds, "-n", partial_na, cwd=tmp_path),
                      "no entry for question")
    assert_user_error(run(EVAL_V2, DEV_V2_HALF, preds, "-n", preds, cwd=tmp_path),
                      "must be a number")
    assert_user_error(run(EVAL_V2, DEV_V2_HALF, preds, "-t", "x", cwd=tmp_path), "-t")
    assert_user_error(run(EVAL_V2, DEV_V2_HALF, preds, "-n", tmp_path / "none.json",
                          cwd=tmp_path), "not found")
    assert_user_error(run(EVAL_V2, DEV_V2_HALF, preds, "-p", tmp_path / "img", cwd=tmp_path),
                      "--na-prob-file")
    assert_user_error(run(EVAL_V2, DEV_V2_HALF, preds, "-o", tmp_path / "no" / "dir.json",
                          cwd=tmp_path), "cannot write")


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is not None,
                    reason="matplotlib is installed")
def test_v2_cli_images_need_matplotlib(tmp_path, v2_questions):
    preds = write_json(tmp_path / "p.json", {qid: "" for qid, _ in v2_questions})
    na = write_json(tmp_path / "na.json", {qid: 0.5 for qid, _ in v2_questions})
    assert_user_error(run(EVAL_V2, DEV_V2_HALF, preds, "-n", na, "-p", tmp_path / "img",
                          cwd=tmp_path), "matplotlib")


# --------------------------------------------------------------------------- v2.0 API

SMALL_V2 = [("q1", ["the big red dog", "red dog"]), ("q2", []), ("q3", ["Paris"]),
            ("q4", [])]
SMALL_PREDS = {"q1": "big dog", "q2": "", "q3": "paris.", "q4": "London"}
SMALL_NA = {"q1": 0.2, "q2": 0.9, "q3": 0.1, "q4": 0.6}


def test_evaluate_v2_small_by_hand():
    data = squad_file(SMALL_V2)["data"]
    result = sm.evaluate_v2(data, SMALL_PREDS)
    assert isinstance(result, OrderedDict)
    assert list(result) == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total",
                            "NoAns_exact", "NoAns_f1", "NoAns_total"]
    # q1: EM 0, F1 max(0.8, 0.5); q2: 1/1; q3: 1/1; q4: 0/0.
    assert result == pytest.approx({"exact": 50.0, "f1": 70.0, "total": 4,
                                    "HasAns_exact": 50.0, "HasAns_f1": 90.0, "HasAns_total": 2,
                                    "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2})


def test_evaluate_v2_small_with_na_probs():
    data = squad_file(SMALL_V2)["data"]
    result = sm.evaluate_v2(data, SMALL_PREDS, SMALL_NA)
    assert list(result)[-4:] == ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]
    # Threshold 1.0 overrides nothing.
    assert result["exact"] == pytest.approx(50.0) and result["f1"] == pytest.approx(70.0)
    # Sweep by na_prob from "all no-answer" (2 right): q3 +1 -> 3 (0.1); q1 +0 EM / +0.8 F1
    # (0.2); q4 (non-empty prediction on a NoAns question) -1; q2 (empty) +0.
    assert result["best_exact"] == pytest.approx(75.0)
    assert result["best_exact_thresh"] == 0.1
    assert result["best_f1"] == pytest.approx(95.0)
    assert result["best_f1_thresh"] == 0.2
    # Threshold 0.5: q4 (0.6) and q2 (0.9) become no-answer, both right.
    result = sm.evaluate_v2(data, SMALL_PREDS, SMALL_NA, na_prob_thresh=0.5)
    assert result["exact"] == pytest.approx(75.0) and result["f1"] == pytest.approx(95.0)
    assert result["NoAns_exact"] == pytest.approx(100.0)
    # The threshold is strict: na_prob 0.6 is not > 0.6.
    result = sm.evaluate_v2(data, SMALL_PREDS, SMALL_NA, na_prob_thresh=0.6)
    assert result["NoAns_exact"] == pytest.approx(50.0)


def test_evaluate_v2_precision_recall_ap():
    curves: dict = {}
    result = sm.evaluate_v2(squad_file(SMALL_V2)["data"], SMALL_PREDS, SMALL_NA,
                            pr_curves=curves)
    # Order q3, q1, q4, q2; 2 answerable. F1: (P,R) = (1,.5), (.9,.9), (.6,.9), (.45,.9).
    assert result["pr_f1_ap"] == pytest.approx(100 * (1 * 0.5 + 0.9 * 0.4))
    assert result["pr_exact_ap"] == pytest.approx(50.0)      # (1,.5) then (.5,.5)
    assert result["pr_oracle_ap"] == pytest.approx(100.0)    # both answerable come first
    assert curves["f1"][1] == pytest.approx([0.0, 0.5, 0.9, 0.9, 0.9])
    # Tied na_probs give a single point.
    ap, precisions, recalls = sm.precision_recall_ap({"a": 1.0, "b": 0.0}, {"a": 0.5, "b": 0.5},
                                                     {"a": True, "b": False})
    assert ap == pytest.approx(50.0) and recalls == [0.0, 1.0] and precisions == [1.0, 0.5]


def test_evaluate_v2_gold_that_normalizes_to_nothing_is_dropped():
    data = squad_file([("q1", ["The", "dog"]), ("q2", ["the"])])["data"]
    result = sm.evaluate_v2(data, {"q1": "dog", "q2": ""})
    # q2 keeps HasAns (it has answers) but its only gold is "", so "" is right.
    assert result["exact"] == pytest.approx(100.0)
    assert result["HasAns_total"] == 2 and "NoAns_total" not in result


def test_evaluate_v2_missing_prediction_scores_zero():
    data = squad_file(SMALL_V2)["data"]
    preds = {k: v for k, v in SMALL_PREDS.items() if k != "q2"}
    missing = []
    result = sm.evaluate_v2(data, preds, {"q1": 0.2, "q3": 0.1, "q4": 0.6},
                            on_missing=missing.append)
    assert missing == ["q2"]
    assert result["total"] == 4 and result["exact"] == pytest.approx(25.0)
    assert result["NoAns_exact"] == pytest.approx(0.0)
    # Sweep: start 1 (q4 only), q3 +1 = 2 (0.1), q1 +0, q4 -1; q2 never counts.
    assert result["best_exact"] == pytest.approx(50.0)
    assert result["best_exact_thresh"] == 0.1


def test_evaluate_v2_rejects_bad_input():
    data = squad_file(SMALL_V2)["data"]
    with pytest.raises(UserError, match="no entry for question"):
        sm.evaluate_v2(data, SMALL_PREDS, {"q1": 0.5})
    with pytest.raises(UserError, match="must be a number"):
        sm.evaluate_v2(data, SMALL_PREDS, {k: "0.5" for k in SMALL_PREDS})
    with pytest.raises(UserError, match="twice"):
        sm.evaluate_v2(squad_file([("q", []), ("q", [])])["data"], {"q": ""})
    with pytest.raises(UserError, match="threshold"):
        sm.evaluate_v2(data, SMALL_PREDS, na_prob_thresh=float("nan"))
    with pytest.raises(UserError, match="no questions"):
        sm.evaluate_v2([], {})
    with pytest.raises(ValueError, match="one or more questions"):
        sm.find_best_thresh({}, {}, {}, {})


# --------------------------------------------------------------------------- v2.0 CLI

def v2_cli(tmp_path, preds, *options) -> OrderedDict:
    proc = run(EVAL_V2, DEV_V2_HALF, write_json(tmp_path / "preds.json", preds), *options,
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return json.loads(proc.stdout, object_pairs_hook=OrderedDict)


def test_v2_cli_gold_everywhere_is_100(tmp_path, v2_questions):
    preds = {qid: (gold[0] if gold else "") for qid, gold in v2_questions}
    n_has = sum(1 for _, gold in v2_questions if gold)
    n_no = len(v2_questions) - n_has
    assert (len(v2_questions), n_no) == (6078, 3168)              # shared/data/README.md
    result = v2_cli(tmp_path, preds)
    assert result == {"exact": 100.0, "f1": 100.0, "total": 6078,
                      "HasAns_exact": 100.0, "HasAns_f1": 100.0, "HasAns_total": n_has,
                      "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": n_no}
    assert list(result) == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1",
                            "HasAns_total", "NoAns_exact", "NoAns_f1", "NoAns_total"]


def test_v2_cli_empty_everywhere(tmp_path, v2_questions):
    n_no = sum(1 for _, gold in v2_questions if not gold)
    result = v2_cli(tmp_path, {qid: "" for qid, _ in v2_questions})
    expected = 100.0 * n_no / len(v2_questions)
    assert round(result["exact"], 6) == round(expected, 6)
    assert round(result["f1"], 6) == round(expected, 6)
    assert (result["HasAns_exact"], result["HasAns_f1"]) == (0.0, 0.0)
    assert (result["NoAns_exact"], result["NoAns_f1"]) == (100.0, 100.0)


def test_v2_cli_na_probs_and_best_thresholds(tmp_path, v2_questions):
    """Half the answerable questions right (na 0.1), half wrong (na 0.9), NoAns wrong (na 0.5)."""
    has = [qid for qid, gold in v2_questions if gold]
    gold = dict(v2_questions)
    right, wrong = has[: len(has) // 2], has[len(has) // 2:]
    no = [qid for qid, g in v2_questions if not g]
    preds, na = {}, {}
    for qid in right:
        preds[qid], na[qid] = gold[qid][0], 0.1
    for qid in wrong:
        preds[qid], na[qid] = "zzzz qqqq", 0.9
    for qid in no:
        preds[qid], na[qid] = "zzzz", 0.5
    na_file = write_json(tmp_path / "na.json", na)
    total = len(v2_questions)

    result = v2_cli(tmp_path, preds, "-n", na_file)
    assert round(result["exact"], 6) == round(100.0 * len(right) / total, 6)
    assert round(result["f1"], 6) == round(100.0 * len(right) / total, 6)
    assert round(result["HasAns_exact"], 6) == round(100.0 * len(right) / len(has), 6)
    assert result["NoAns_exact"] == 0.0
    # Best: answer where na_prob <= 0.1, so the right half answered, the rest no-answer.
    best = 100.0 * (len(right) + len(no)) / total
    assert round(result["best_exact"], 6) == round(best, 6)
    assert round(result["best_f1"], 6) == round(best, 6)
    assert result["best_exact_thresh"] == 0.1 and result["best_f1_thresh"] == 0.1

    # -t 0.3 reaches that best score; -t 0.5 does not (0.5 is not > 0.5).
    result = v2_cli(tmp_path, preds, "-n", na_file, "-t", "0.3")
    assert round(result["exact"], 6) == round(best, 6)
    assert result["NoAns_exact"] == 100.0
    result = v2_cli(tmp_path, preds, "--na-prob-file", na_file, "--na-prob-thresh", "0.5")
    assert round(result["exact"], 6) == round(100.0 * len(right) / total, 6)


def test_v2_cli_out_file(tmp_path, v2_questions):
    preds = write_json(tmp_path / "p.json", {qid: "" for qid, _ in v2_questions})
    out = tmp_path / "eval.json"
    proc = run(EVAL_V2, DEV_V2_HALF, preds, "-o", out, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == ""
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["NoAns_exact"] == 100.0 and result["total"] == 6078


def test_v2_cli_on_v1_data_matches_v1(tmp_path):
    """Without unanswerable questions, v2.0 scores equal v1.1's (F1 differs only on empties)."""
    proc = run(EVAL_V2, DEV_V1, PREDS_V1 / "bert-ensemble.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (round(result["exact"], 3), round(result["f1"], 3)) == (86.206, 92.196)
    assert "NoAns_total" not in result and result["HasAns_total"] == 10570


def test_v2_cli_missing_prediction_warns(tmp_path, v2_questions):
    preds = {qid: (gold[0] if gold else "") for qid, gold in v2_questions[1:]}
    proc = run(EVAL_V2, DEV_V2_HALF, write_json(tmp_path / "p.json", preds), cwd=tmp_path)
    assert proc.returncode == 0
    assert v2_questions[0][0] in proc.stderr
    result = json.loads(proc.stdout)
    assert result["total"] == 6078
    assert round(result["exact"], 6) == round(100.0 * 6077 / 6078, 6)
