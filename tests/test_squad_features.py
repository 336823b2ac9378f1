"""helpers/squad_features.py: reading SQuAD, windows, max context, training positions."""
from __future__ import annotations

import json
import random
import string
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.errors import UserError
from helpers.squad_features import (FeatureConfig, _check_is_max_context, _doc_spans, convert_examples_to_features,
                                    example_from_text, examples_from_text, read_squad_examples, split_doc,
                                    stack_features)
from helpers.tokenization import load_tokenizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
UNCASED = SHARED / "vocab" / "bert-base-uncased-vocab.txt"
DEV = SHARED / "squad" / "dev-v1.1.json"
TRAIN = SHARED / "squad" / "train-v1.1.json"
needs_data = pytest.mark.skipif(not UNCASED.is_file() or not DEV.is_file() or not TRAIN.is_file(),
                                reason=f"shared data (uncased vocab, SQuAD v1.1) not found at {SHARED}")


@pytest.fixture(scope="module")
def tok():
    if not UNCASED.is_file():
        pytest.skip(f"shared data not found at {SHARED}")
    return load_tokenizer(UNCASED, do_lower_case=True)


# ---------------------------------------------------------------- config and text

def test_feature_config_validation():
    assert FeatureConfig().doc_room == 384 - 64 - 3
    FeatureConfig(max_seq_length=8, doc_stride=1, max_query_length=4)
    with pytest.raises(UserError, match="no room for the passage"):
        FeatureConfig(max_seq_length=64, doc_stride=16, max_query_length=64)
    # Messages name the field (the notebook) and the option (the command lines).
    with pytest.raises(UserError, match=r"doc_stride \(--doc-stride\) 200 is larger than the 61.*--doc-stride <= 61"):
        FeatureConfig(max_seq_length=128, doc_stride=200, max_query_length=64)
    with pytest.raises(UserError, match=r"^max_seq_length \(-s\) must be a positive integer, got 0$"):
        FeatureConfig(max_seq_length=0)
    with pytest.raises(UserError, match=r"doc_stride \(--doc-stride\) must be a positive integer, got 1.5"):
        FeatureConfig(doc_stride=1.5)
    with pytest.raises(UserError, match=r"max_query_length \(--max-query-length\) must be a positive integer"):
        FeatureConfig(max_query_length=-1)


def test_split_doc_uses_run_squads_whitespace():
    text = "  The  cat\tsat\u202fdown\u00a0x\n"
    words, offsets = split_doc(text)
    # U+202F is run_squad whitespace; U+00A0 is not (it stays inside a word).
    assert words == ("The", "cat", "sat", "down\u00a0x")
    assert offsets.tolist() == [-1, -1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3]
    assert len(offsets) == len(text) and not offsets.flags.writeable  # shared by the questions
    assert split_doc("")[1].shape == (0,) and split_doc("  ")[1].tolist() == [-1, -1]


def test_example_from_text_rejects_empty_input():
    for passage in ("", "   \n\t ", "\u00a0"):
        with pytest.raises(UserError, match="passage is empty"):
            example_from_text(passage, "Who?")
    for question in ("", " \n"):
        with pytest.raises(UserError, match="question is empty"):
            example_from_text("Some text.", question)
    ex = example_from_text(" Paris is\nin France. ", "Where is Paris?", qas_id="q1")
    assert ex.doc_tokens == ("Paris", "is", "in", "France.") and ex.qas_id == "q1"


def test_examples_from_text_share_one_split():
    # A long passage is split once for all its questions (the split was per question: GBs at 20 MB).
    a, b = examples_from_text("Paris is in France.", ["Where is Paris?", "What is in France?"])
    assert (a.qas_id, b.qas_id) == ("0", "1") and a.doc_tokens is b.doc_tokens
    assert a.char_to_word_offset is b.char_to_word_offset
    assert a == example_from_text("Paris is in France.", "Where is Paris?")  # equal by value, offsets aside
    with pytest.raises(UserError, match="question is empty"):
        examples_from_text("Paris is in France.", ["Where?", " "])


# ---------------------------------------------------------------- windows

LETTERS = " ".join(string.ascii_lowercase[:20])  # 20 words of one WordPiece token each


def test_windows_max_context_and_padding_by_hand(tok):
    # room = 12 - 2 (query) - 3 = 7 tokens, stride 3: windows start at 0, 3, 6, 9, 12, 15.
    cfg = FeatureConfig(max_seq_length=12, doc_stride=3, max_query_length=4)
    feats = convert_examples_to_features([example_from_text(LETTERS, "where?")], tok, cfg)
    assert [f.doc_span_index for f in feats] == list(range(6))
    assert [f.unique_id for f in feats] == list(range(1000000000, 1000000006))
    assert feats[0].tokens == ["[CLS]", "where", "?", "[SEP]", *"abcdefg", "[SEP]"]
    assert feats[5].tokens == ["[CLS]", "where", "?", "[SEP]", *"pqrst", "[SEP]"]
    last = feats[5]
    assert last.input_mask.tolist() == [1] * 10 + [0] * 2
    assert last.segment_ids.tolist() == [0] * 4 + [1] * 6 + [0] * 2
    assert last.input_ids.tolist()[-2:] == [0, 0] and last.input_ids.dtype == np.int32
    assert last.input_ids[0] == tok.token_to_id("[CLS]") and last.input_ids[9] == tok.token_to_id("[SEP]")
    # Worked out by hand: score = min(left, right) context + 0.01 * window length.
    best = [0] * 5 + [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3 + [5] * 3
    for f in feats:
        assert set(f.token_to_orig_map) == set(range(4, 4 + len(f.tokens) - 5))
        for pos, word in f.token_to_orig_map.items():
            assert f.tokens[pos] == string.ascii_lowercase[word]
            assert f.token_is_max_context[pos] == (best[word] == f.doc_span_index)


def test_window_maps_behave_as_dicts(tok):
    # The per-window maps are views of passage-wide arrays (a dict per window took ~6 KB); they
    # must answer as the dicts did, for the post-processing and for notebook users.
    cfg = FeatureConfig(max_seq_length=12, doc_stride=3, max_query_length=4)
    f = convert_examples_to_features([example_from_text(LETTERS, "where?")], tok, cfg)[1]
    assert dict(f.token_to_orig_map) == {4 + i: 3 + i for i in range(7)}
    assert dict(f.token_is_max_context) == {4: False, 5: False, 6: True, 7: True, 8: True, 9: False, 10: False}
    assert f.token_to_orig_map == {4 + i: 3 + i for i in range(7)} and len(f.token_to_orig_map) == 7
    assert 4 in f.token_to_orig_map and 3 not in f.token_to_orig_map and 11 not in f.token_to_orig_map
    assert "4" not in f.token_to_orig_map and f.token_is_max_context.get(0, False) is False
    assert type(f.token_to_orig_map[4]) is int and type(f.token_is_max_context[6]) is bool
    with pytest.raises(KeyError):
        f.token_to_orig_map[11]


def test_query_is_truncated_and_window_shrinks_to_fit(tok):
    cfg = FeatureConfig(max_seq_length=16, doc_stride=4, max_query_length=5)
    question = "what is the name of the letter that comes after the letter c?"
    feats = convert_examples_to_features([example_from_text(LETTERS, question)], tok, cfg)
    q = tok.encode(question, add_special_tokens=False).tokens
    assert len(q) > 5
    for f in feats:
        assert f.tokens[:7] == ["[CLS]", *q[:5], "[SEP]"]
        assert len(f.tokens) <= 16 and f.input_mask.sum() == len(f.tokens)
    assert len(feats[0].token_to_orig_map) == 16 - 5 - 3


def test_max_context_matches_run_squad_rule_on_random_layouts(tok):
    rng = random.Random(0)
    words = ["a", "b", "unaffable", "1895-1943", "x" * 120, "naïve", "\u200b", "(hello),"]
    for _ in range(40):
        passage = " ".join(rng.choice(words) for _ in range(rng.randint(1, 60)))
        q_len = rng.randint(1, 6)
        cfg = FeatureConfig(max_seq_length=rng.randint(q_len + 4, 30), doc_stride=1, max_query_length=q_len)
        cfg = FeatureConfig(cfg.max_seq_length, rng.randint(1, cfg.doc_room), q_len)
        ex = example_from_text(passage, " ".join(["q"] * rng.randint(1, 8)))
        feats = convert_examples_to_features([ex], tok, cfg)
        n_q = min(len(tok.encode(ex.question_text, add_special_tokens=False).tokens), q_len)
        doc = [t for w in ex.doc_tokens for t in tok.encode(w, add_special_tokens=False).tokens]
        spans = _doc_spans(len(doc), cfg.max_seq_length - n_q - 3, cfg.doc_stride)
        assert len(feats) == len(spans)
        owners = [0] * len(doc)
        for f, (start, length) in zip(feats, spans):
            assert f.tokens[n_q + 2:-1] == doc[start:start + length]
            for i in range(length):
                is_max = f.token_is_max_context[n_q + 2 + i]
                assert is_max == _check_is_max_context(spans, f.doc_span_index, start + i)
                owners[start + i] += is_max
        assert owners == [1] * len(doc)  # every token is max context in exactly one window


def test_word_with_no_tokens_maps_to_next_word(tok):
    # "\u200b" (zero-width space, a format character) is a run_squad word that BERT deletes.
    ex = example_from_text("alpha \u200b beta", "q?")
    (f,) = convert_examples_to_features([ex], tok, FeatureConfig(32, 8, 8))
    assert f.tokens[4:-1] == ["alpha", "beta"]
    assert [f.token_to_orig_map[p] for p in (4, 5)] == [0, 2]


@needs_data
def test_layout_matches_per_word_reference_tokenization_on_dev(tok):
    """Features' passage tokens are run_squad's: the slow reference tokenizer, word by word."""
    try:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as Slow
    except ImportError:
        from transformers import BertTokenizer as Slow
    ref = Slow(vocab_file=str(UNCASED), do_lower_case=True)
    examples = read_squad_examples(DEV, is_training=False)[::25]
    feats = convert_examples_to_features(examples, tok, FeatureConfig())
    # Each passage token once, from the window where it is max context, in passage order.
    owned: dict[int, list[tuple[str, int]]] = {}
    for f in feats:
        owned.setdefault(f.example_index, []).extend(
            (f.tokens[pos], word) for pos, word in f.token_to_orig_map.items() if f.token_is_max_context[pos])
    for i, ex in enumerate(examples):
        want = [(piece, w) for w, word in enumerate(ex.doc_tokens) for basic in ref.basic_tokenizer.tokenize(word)
                for piece in ref.wordpiece_tokenizer.tokenize(basic)]
        assert owned[i] == want, ex.qas_id
        q = ref.tokenize(ex.question_text)[:64]
        first = next(f for f in feats if f.example_index == i)
        assert first.tokens[1:1 + len(q) + 1] == q + ["[SEP]"]
        assert first.input_ids[:len(first.tokens)].tolist() == ref.convert_tokens_to_ids(first.tokens)


@needs_data
def test_dev_set_gives_run_squads_feature_count(tok):
    examples = read_squad_examples(DEV, is_training=False)
    assert len(examples) == 10570 and len({id(e.doc_tokens) for e in examples}) == 2067
    feats = convert_examples_to_features(examples, tok, FeatureConfig(384, 128, 64))
    # Google's run_squad logs 10833 split examples for dev-v1.1, uncased, 384/128/64.
    assert len(feats) == 10833
    arrays = stack_features(feats)
    assert {k: (v.shape, v.dtype) for k, v in arrays.items()} == {
        k: ((10833, 384), np.dtype(np.int32)) for k in ("input_ids", "segment_ids", "input_mask")}
    assert (arrays["input_mask"].sum(1) == [len(f.tokens) for f in feats]).all()


# ---------------------------------------------------------------- training positions

@needs_data
def test_training_positions_recover_answers_on_train_set(tok):
    data = json.loads(TRAIN.read_text(encoding="utf-8"))
    sample = {"data": data["data"][::25]}
    examples = read_squad_examples(sample, is_training=True)
    assert len(examples) > 3000
    feats = convert_examples_to_features(examples, tok, FeatureConfig(), is_training=True)
    exact = inside = 0
    has_window = set()
    for f in feats:
        ex = examples[f.example_index]
        if f.start_position == 0:
            assert f.end_position == 0
            continue
        inside += 1
        has_window.add(f.example_index)
        assert 0 < f.start_position <= f.end_position < len(f.tokens) - 1
        assert f.segment_ids[f.start_position] == 1
        span = f.tokens[f.start_position:f.end_position + 1]
        exact += span == tok.encode(ex.orig_answer_text, add_special_tokens=False).tokens
        # The span lies in the answer's words, widened to whole words it is the answer's text.
        words = {f.token_to_orig_map[p] for p in (f.start_position, f.end_position)}
        assert words <= set(range(ex.start_position, ex.end_position + 1))
    assert has_window == set(range(len(examples)))
    # Not exact only where the answer is part of a word ("breed" in "breeding").
    assert exact / inside > 0.995


def test_answer_outside_window_or_impossible_is_cls(tok):
    passage = LETTERS
    data = {"data": [{"title": "t", "paragraphs": [{"context": passage, "qas": [
        {"id": "s", "question": "which?", "answers": [{"text": "s", "answer_start": passage.index("s")}]},
        {"id": "cut", "question": "which?", "answers": [{"text": "f g h", "answer_start": passage.index("f g")}]},
        {"id": "none", "question": "which?", "answers": [], "is_impossible": True},
    ]}]}]}
    examples = read_squad_examples(data, is_training=True, version_2_with_negative=True)
    assert [e.is_impossible for e in examples] == [False, False, True]
    cfg = FeatureConfig(max_seq_length=12, doc_stride=3, max_query_length=4)  # windows as above
    feats = convert_examples_to_features(examples, tok, cfg, is_training=True)
    pos = {(examples[f.example_index].qas_id, f.doc_span_index): (f.start_position, f.end_position)
           for f in feats}
    # "s" (word 18) lies in windows 4 (12..18) and 5 (15..19); at offset 4 ("[CLS] which ? [SEP]").
    assert [pos["s", i] for i in range(6)] == [(0, 0)] * 4 + [(4 + 6, 4 + 6), (4 + 3, 4 + 3)]
    # "f g h" (words 5..7) is whole only in window 1 (3..9): window 0 (0..6) cuts "h".
    assert [pos["cut", i] for i in range(6)] == [(0, 0), (4 + 2, 4 + 4), (0, 0), (0, 0), (0, 0), (0, 0)]
    assert all(pos["none", i] == (0, 0) for i in range(6))
    assert all(f.is_impossible == (examples[f.example_index].qas_id == "none") for f in feats)


# ---------------------------------------------------------------- long passages

def test_passage_of_100k_words(tok):
    rng = random.Random(1)
    vocab = ["the", "river", "flows", "through", "ancient", "cities", "of", "stone", "1,200", "(north)."]
    words = [rng.choice(vocab) for _ in range(100_000)]
    pieces = {w: len(tok.encode(w, add_special_tokens=False).tokens) for w in vocab}
    n_doc = sum(pieces[w] for w in words)
    t0 = time.perf_counter()
    feats = convert_examples_to_features([example_from_text(" ".join(words), "Where does it flow?")], tok,
                                         FeatureConfig())
    seconds = time.perf_counter() - t0
    room = 384 - 6 - 3  # "where does it flow ?" is 5 tokens
    assert len(feats) == len(_doc_spans(n_doc, room, 128)) > 1000
    assert all(len(f.tokens) == 384 for f in feats[:-1])
    assert sum(sum(f.token_is_max_context.values()) for f in feats) == n_doc
    last = feats[-1]
    assert last.token_to_orig_map[len(last.tokens) - 2] == 100_000 - 1
    assert seconds < 60, f"100k words took {seconds:.1f} s"


# ---------------------------------------------------------------- bad input files

def _write(tmp_path, obj) -> Path:
    p = tmp_path / "squad.json"
    p.write_text(json.dumps(obj), encoding="utf-8")
    return p


def test_bad_squad_files(tmp_path):
    with pytest.raises(UserError, match="no SQuAD file"):
        read_squad_examples(tmp_path / "none.json", is_training=False)
    p = tmp_path / "latin1.json"
    p.write_bytes('{"data": [{"paragraphs": [{"context": "caf\xe9"}]}]}'.encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        read_squad_examples(p, is_training=False)
    p.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(UserError, match="not valid JSON"):
        read_squad_examples(p, is_training=False)


@pytest.mark.parametrize("broken, field, where", [
    ({"version": "1.1"}, "data", "top level"),
    ({"data": [{"title": "T"}]}, "paragraphs", "article 0 ('T')"),
    ({"data": [{"paragraphs": [{"qas": []}]}]}, "context", "paragraph 0"),
    ({"data": [{"paragraphs": [{"context": "x"}]}]}, "qas", "paragraph 0"),
    ({"data": [{"paragraphs": [{"context": "x", "qas": [{"question": "q"}]}]}]}, "id", "question 0"),
    ({"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "abc"}]}]}]}, "question", "'abc'"),
    ({"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "abc", "question": "q"}]}]}]},
     "answers", "'abc'"),
    ({"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "abc", "question": "q",
                                                         "answers": [{"text": "x"}]}]}]}]},
     "answer_start", "'abc'"),
])
def test_missing_fields_are_named(tmp_path, broken, field, where):
    p = _write(tmp_path, broken)
    with pytest.raises(UserError) as err:
        read_squad_examples(p, is_training=True)
    assert f"'{field}'" in str(err.value) and where in str(err.value)
    assert "\n" not in str(err.value)


def test_training_needs_one_answer_inside_the_passage(tmp_path):
    two = {"data": [{"paragraphs": [{"context": "a b", "qas": [
        {"id": "q2", "question": "q", "answers": [{"text": "a", "answer_start": 0},
                                                  {"text": "b", "answer_start": 2}]}]}]}]}
    with pytest.raises(UserError, match="'q2' has 2 answers"):
        read_squad_examples(two, is_training=True)
    assert len(read_squad_examples(two, is_training=False)[0].answers) == 2  # fine for evaluation
    far = {"data": [{"paragraphs": [{"context": "a b", "qas": [
        {"id": "qf", "question": "q", "answers": [{"text": "b", "answer_start": 7}]}]}]}]}
    with pytest.raises(UserError, match="'qf'.*outside"):
        read_squad_examples(far, is_training=True)
    blank = {"data": [{"paragraphs": [{"context": "a b", "qas": [
        {"id": "qe", "question": "q", "answers": [{"text": " ", "answer_start": 1}]}]}]}]}
    with pytest.raises(UserError, match="'qe' is empty"):
        read_squad_examples(blank, is_training=True)
    # An answer text that is not at answer_start is skipped with a warning, as in BERT.
    wrong = {"data": [{"paragraphs": [{"context": "a b", "qas": [
        {"id": "qw", "question": "q", "answers": [{"text": "z", "answer_start": 0}]}]}]}]}
    assert read_squad_examples(wrong, is_training=True) == []


def test_duplicate_vocabulary_entries_use_the_later_id():
    # BERT's load_vocab fills a dict in file order, so a repeated token keeps its last line.
    tok = load_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", "a"])
    (f,) = convert_examples_to_features([example_from_text("a b", "b")], tok, FeatureConfig(16, 4, 4))
    assert f.tokens == ["[CLS]", "b", "[SEP]", "a", "b", "[SEP]"]
    assert f.input_ids[:6].tolist() == [2, 5, 3, 6, 5, 3]


def test_stack_features_empty():
    out = stack_features([])
    assert set(out) == {"input_ids", "segment_ids", "input_mask"} and out["input_ids"].shape[0] == 0


def _squad(*qas, context="The tower was built in 1889.", title="Eiffel"):
    return {"data": [{"title": title, "paragraphs": [{"context": context, "qas": list(qas)}]}]}


def test_duplicate_question_ids_are_refused():
    # Predictions are keyed by id: the second "a" used to overwrite the first, silently.
    data = _squad({"id": "a", "question": "When?"}, {"id": "b", "question": "Where?"}, {"id": "a", "question": "Who?"})
    with pytest.raises(UserError, match=r"question id 'a' of question 2 of paragraph 0 of article 0 \('Eiffel'\) "
                                        r"is also the id of question 0 of paragraph 0"):
        read_squad_examples(data, is_training=False)
    across = {"data": _squad({"id": "a", "question": "When?"})["data"] + _squad({"id": "a", "question": "Who?"},
                                                                                title="Other")["data"]}
    with pytest.raises(UserError, match=r"'a' of question 0 of paragraph 0 of article 1 \('Other'\)"):
        read_squad_examples(across, is_training=False)


def test_number_ids_are_refused():
    # 1 and "1" were both read as "1"; the official evaluator matches predictions by string id.
    for bad in (1, 1.5):
        data = _squad({"id": bad, "question": "When?"}, {"id": "x", "question": "Who?"})
        with pytest.raises(UserError, match=rf"id of question 0 .* is the number {bad}; SQuAD ids are strings"):
            read_squad_examples(data, is_training=False)
    with pytest.raises(UserError, match="field 'id' .* should be a str, not list"):
        read_squad_examples(_squad({"id": ["a"], "question": "When?"}), is_training=False)


def test_impossible_questions_read_as_v1_warn(capsys):
    data = _squad({"id": "a", "question": "When?", "answers": [], "is_impossible": True},
                  {"id": "b", "question": "Who?", "answers": [{"text": "1889", "answer_start": 23}]})
    examples = read_squad_examples(data, is_training=False)
    err = capsys.readouterr().err
    assert not any(e.is_impossible for e in examples)
    assert err.count("\n") == 1 and err.startswith("warning: SQuAD data marks 1 questions is_impossible")
    assert "--version-2-with-negative" in err
    examples = read_squad_examples(data, is_training=False, version_2_with_negative=True)
    assert [e.is_impossible for e in examples] == [True, False] and capsys.readouterr().err == ""
    read_squad_examples(_squad({"id": "b", "question": "Who?"}), is_training=False)
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not (SHARED / "squad" / "dev-v2.0-half.json").is_file(), reason="SQuAD v2.0 dev half absent")
def test_v2_dev_file_read_as_v1_warns_once(capsys):
    read_squad_examples(SHARED / "squad" / "dev-v2.0-half.json", is_training=False)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "marks 3168 questions is_impossible" in err[0]
