"""SQuAD examples and BERT input features, as Google BERT's run_squad.py makes them.

A passage is split on whitespace into words (doc_tokens); each word is WordPiece-
tokenized; long passages become overlapping windows of at most max_seq_length
tokens laid out as [CLS] question [SEP] passage-window [SEP]. Each passage token is
"max context" in exactly one window: the one where it has the most context on both
sides, which is the window whose prediction for it counts.

Tokenization runs through the `tokenizers` batch API: every distinct passage is
tokenized once (SQuAD shares a paragraph among ~5 questions), word by word, in one
call for the whole data set.
"""
from __future__ import annotations

import logging
import numbers
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from tokenizers import Tokenizer

from helpers.errors import UserError, read_json

log = logging.getLogger(__name__)

FIRST_UNIQUE_ID = 1000000000  # run_squad's numbering of features


@dataclass(frozen=True)
class FeatureConfig:
    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64

    def __post_init__(self) -> None:
        # Messages name the field (the notebook's API) and the command-line option.
        for name, flag in (("max_seq_length", "-s"), ("doc_stride", "--doc-stride"),
                           ("max_query_length", "--max-query-length")):
            check_positive_int(getattr(self, name), name, flag)
        if self.doc_room < 1:
            raise UserError(
                f"max_seq_length (-s) {self.max_seq_length} leaves no room for the passage after a "
                f"{self.max_query_length}-token question and 3 special tokens: raise -s "
                "or lower --max-query-length")
        if self.doc_stride > self.doc_room:
            raise UserError(
                f"doc_stride (--doc-stride) {self.doc_stride} is larger than the {self.doc_room} passage "
                f"tokens a window holds (max_seq_length - max_query_length - 3): use --doc-stride <= "
                f"{self.doc_room}")

    @property
    def doc_room(self) -> int:
        """Passage tokens a window holds at the least (with the longest question)."""
        return self.max_seq_length - self.max_query_length - 3


def check_positive_int(value: Any, name: str, flag: str) -> None:
    """UserError unless value is an int >= 1; name is the field, flag the command-line option."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise UserError(f"{name} ({flag}) must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class SquadExample:
    qas_id: str
    question_text: str
    context: str
    doc_tokens: tuple[str, ...]          # the passage split on whitespace
    # passage character -> index into doc_tokens: int32, 4 bytes a character (a tuple of ints took
    # ~47 bytes: GBs for a long passage). Left out of ==/hash: the context determines it.
    char_to_word_offset: np.ndarray = field(compare=False)
    orig_answer_text: str | None = None  # training only
    start_position: int | None = None    # training only: first answer word
    end_position: int | None = None      # training only: last answer word
    is_impossible: bool = False
    answers: tuple[str, ...] = ()        # every gold answer text, for evaluation


class WindowMap(Mapping):
    """Read-only {window position: value} for positions offset .. offset + len(values) - 1, over a
    slice of one passage-wide array: a dict per window took ~6 KB (GBs for a long passage's windows)."""

    __slots__ = ("_offset", "_end", "_values")

    def __init__(self, offset: int, values: np.ndarray):
        self._offset, self._end, self._values = offset, offset + len(values), values

    def __contains__(self, pos: object) -> bool:
        try:
            return self._offset <= pos < self._end  # type: ignore[operator]
        except TypeError:  # not a number
            return False

    def __getitem__(self, pos: int):
        if pos in self:
            return self._values[pos - self._offset].item()
        raise KeyError(pos)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self._offset, self._end))


@dataclass(frozen=True, eq=False)
class Feature:
    unique_id: int
    example_index: int
    doc_span_index: int
    tokens: list[str]                     # [CLS] query [SEP] window [SEP], unpadded
    token_to_orig_map: Mapping[int, int]      # position of a window token -> doc word index (a WindowMap)
    token_is_max_context: Mapping[int, bool]  # position of a window token -> max context here?
    input_ids: np.ndarray                 # int32 [max_seq_length], 0-padded
    input_mask: np.ndarray                # int32 [max_seq_length]
    segment_ids: np.ndarray               # int32 [max_seq_length]
    start_position: int | None = None     # training only; 0 ([CLS]) when outside the window
    end_position: int | None = None
    is_impossible: bool = False


# run_squad's whitespace: not Python's, so that e.g. U+00A0 stays inside a word.
_WORD = re.compile(r"[^ \t\r\n\u202f]+")


def split_doc(text: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Split a passage into whitespace-separated words and map each character to its word
    (a read-only int32 array)."""
    words = tuple(_WORD.findall(text))
    # A character belongs to the last word that started at or before it (whitespace
    # before the first word gets -1), exactly run_squad's char_to_word_offset: count the
    # word starts up to each character. 8 bytes a character at the peak, no match objects kept.
    is_start = np.zeros(len(text), dtype=np.int32)
    is_start[np.fromiter((m.start() for m in _WORD.finditer(text)), dtype=np.int64, count=len(words))] = 1
    offsets = np.cumsum(is_start, dtype=np.int32)
    offsets -= 1
    offsets.flags.writeable = False  # shared by every question on the passage
    return words, offsets


def examples_from_text(passage: str, questions: Sequence[str]) -> list[SquadExample]:
    """One example per question typed by a user (qas_id "0", "1", ...), all sharing the passage's
    split: a long passage is split once, not once per question."""
    if not isinstance(passage, str) or not passage.strip():
        raise UserError("the passage is empty: give the text in which to look for the answer")
    for question in questions:
        if not isinstance(question, str) or not question.strip():
            raise UserError("the question is empty: give a question about the passage")
    doc_tokens, offsets = split_doc(passage)
    return [SquadExample(qas_id=str(i), question_text=q, context=passage, doc_tokens=doc_tokens,
                         char_to_word_offset=offsets) for i, q in enumerate(questions)]


def example_from_text(passage: str, question: str, qas_id: str = "0") -> SquadExample:
    """One example from a passage and a question typed by a user."""
    (ex,) = examples_from_text(passage, [question])
    return ex if str(qas_id) == ex.qas_id else replace(ex, qas_id=str(qas_id))


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str, src: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise UserError(f"{src}: {where} lacks the field {key!r}: it is not in SQuAD format")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise UserError(f"{src}: field {key!r} of {where} should be a {name}, "
                        f"not {type(value).__name__}: it is not in SQuAD format")
    return value


def read_squad_examples(path_or_dataset: str | Path | dict, is_training: bool,
                        version_2_with_negative: bool = False) -> list[SquadExample]:
    """Read a SQuAD JSON file (or its parsed dict) into examples, as run_squad does.

    For training every answerable question needs exactly one answer; a question whose
    answer cannot be found in the passage's words is skipped with a warning, as in BERT.
    """
    if isinstance(path_or_dataset, dict):
        data, src = path_or_dataset, "SQuAD data"
    else:
        path = Path(path_or_dataset)
        data, src = read_json(path, "SQuAD file", "pass a SQuAD v1.1/v2.0 JSON file"), f"SQuAD file {path}"
    articles = _get(data, "data", list, "the top level", src)
    examples: list[SquadExample] = []
    skipped = marked_impossible = 0
    seen_ids: dict[str, str] = {}  # id -> where it was first
    # Empty or unreadable questions and passages are read as they are, as BERT's and Hugging Face's
    # run_squad read them: one odd question must not abort a 10,000-question run. A question
    # without tokens is answered from the passage alone; a passage without tokens gets no window,
    # and its questions the prediction "" (run_squad writes the text "empty"); see Answerer.predict.
    for a_i, article in enumerate(articles):
        a_where = f"article {a_i}" + (f" ({article['title']!r})" if isinstance(article, dict)
                                      and isinstance(article.get("title"), str) else "")
        for p_i, paragraph in enumerate(_get(article, "paragraphs", list, a_where, src)):
            p_where = f"paragraph {p_i} of {a_where}"
            context = _get(paragraph, "context", str, p_where, src)
            qas = _get(paragraph, "qas", list, p_where, src)
            doc_tokens, char_to_word = split_doc(context)  # shared by the paragraph's questions
            for q_i, qa in enumerate(qas):
                # Ids key the predictions file: a repeated id would silently keep one answer, and
                # the official evaluator looks predictions up by string id (1 and "1" collide too).
                position = f"question {q_i} of {p_where}"
                if isinstance(qa, dict) and type(qa.get("id")) in (int, float):
                    raise UserError(f"{src}: the id of {position} is the number {qa['id']!r}; SQuAD ids are "
                                    f"strings, as the official evaluator matches them: write \"{qa['id']}\"")
                qas_id = _get(qa, "id", str, position, src)
                if qas_id in seen_ids:
                    raise UserError(f"{src}: question id {qas_id!r} of {position} is also the id of "
                                    f"{seen_ids[qas_id]}: give every question its own id")
                seen_ids[qas_id] = position
                q_where = f"question {qas_id!r}"
                question = _get(qa, "question", str, q_where, src)
                marked = bool(qa.get("is_impossible", False))
                marked_impossible += marked
                is_impossible = version_2_with_negative and marked
                # Training needs the answer; elsewhere answers are kept only for evaluation.
                needed = is_training and not is_impossible
                answers = _get(qa, "answers", list, q_where, src) if needed or "answers" in qa else []
                texts = tuple(_get(ans, "text", str, f"an answer of {q_where}", src) for ans in answers)
                ex = dict(qas_id=qas_id, question_text=question, context=context, doc_tokens=doc_tokens,
                          char_to_word_offset=char_to_word, is_impossible=is_impossible, answers=texts)
                if is_training:
                    if is_impossible:
                        ex.update(orig_answer_text="", start_position=-1, end_position=-1)
                    else:
                        if len(answers) != 1:
                            raise UserError(f"{src}: {q_where} has {len(answers)} answers; for training "
                                            "each question needs exactly one (use a training file)")
                        pos = _answer_words(answers[0], context, doc_tokens, char_to_word, q_where, src)
                        if pos is None:
                            skipped += 1
                            continue
                        ex.update(orig_answer_text=texts[0], start_position=pos[0], end_position=pos[1])
                examples.append(SquadExample(**ex))
    if skipped:
        log.warning("%s: skipped %d training questions whose answer is not found in the passage",
                    src, skipped)
    if marked_impossible and not version_2_with_negative:
        print(f"warning: {src} marks {marked_impossible} questions is_impossible (SQuAD v2.0), but it is "
              "read as v1.1: every one of them gets an answer; pass --version-2-with-negative "
              "(version_2_with_negative=True) to allow no answer", file=sys.stderr)
    return examples


def _answer_words(answer: dict, context: str, doc_tokens: tuple[str, ...], char_to_word: np.ndarray,
                  where: str, src: str) -> tuple[int, int] | None:
    text = answer["text"]
    start = _get(answer, "answer_start", int, f"the answer of {where}", src)
    if not text.strip():
        raise UserError(f"{src}: the answer of {where} is empty: give its text, or mark the question "
                        "is_impossible (SQuAD v2.0)")
    if start < 0 or start + len(text) > len(context):
        raise UserError(f"{src}: the answer of {where} (start {start}, {len(text)} characters) "
                        f"lies outside its {len(context)}-character passage: fix answer_start")
    # An answer starting on whitespace before the first word would give word -1.
    first = max(int(char_to_word[start]), 0)
    last = max(int(char_to_word[start + len(text) - 1]), 0)
    actual = " ".join(doc_tokens[first:last + 1])
    if actual.find(" ".join(text.split())) == -1:
        return None
    return first, last


def _doc_spans(n_tokens: int, room: int, stride: int) -> list[tuple[int, int]]:
    """(start, length) windows over n_tokens passage tokens, run_squad's sliding rule."""
    spans = []
    start = 0
    while start < n_tokens:
        length = min(n_tokens - start, room)
        spans.append((start, length))
        if start + length == n_tokens:
            break
        start += min(length, stride)
    return spans


def _check_is_max_context(doc_spans: Sequence[tuple[int, int]], cur_span_index: int, position: int) -> bool:
    """run_squad's rule, one token at a time: is `position` best placed in window cur_span_index?

    The score of a window for a token is min(left context, right context) plus a small
    bonus for longer windows; the first window with the highest score wins.
    """
    best_score, best_index = None, None
    for i, (start, length) in enumerate(doc_spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best_index = score, i
    return cur_span_index == best_index


def _max_context_span(doc_spans: Sequence[tuple[int, int]], n_tokens: int) -> np.ndarray:
    """For every passage token, the index of its max-context window (same rule, vectorized)."""
    if len(doc_spans) == 1:
        return np.zeros(n_tokens, dtype=np.int64)
    best_score = np.full(n_tokens, -np.inf)
    best_index = np.full(n_tokens, -1, dtype=np.int64)
    for i, (start, length) in enumerate(doc_spans):
        pos = np.arange(start, start + length)
        score = np.minimum(pos - start, start + length - 1 - pos) + 0.01 * length
        better = score > best_score[start:start + length]  # strict: the earlier window keeps ties
        best_score[start:start + length][better] = score[better]
        best_index[start:start + length][better] = i
    return best_index


def _improve_answer_span(doc_tokens: Sequence[str], input_start: int, input_end: int,
                         tok_answer_text: str) -> tuple[int, int]:
    """The sub-token span that matches the tokenized answer exactly, if one lies inside.

    The word-level span can be too wide: for "(1895-1943)." with answer "1895" the word
    covers punctuation too; the sub-tokens "( 1895 - 1943 ) ." narrow it to "1895".
    """
    for new_start in range(input_start, input_end + 1):
        for new_end in range(input_end, new_start - 1, -1):
            if " ".join(doc_tokens[new_start:new_end + 1]) == tok_answer_text:
                return new_start, new_end
    return input_start, input_end


@dataclass(frozen=True)
class _Doc:
    tokens: list[str]        # all sub-tokens of the passage
    ids: np.ndarray          # their ids
    tok_to_orig: np.ndarray  # sub-token -> word
    orig_to_tok: np.ndarray  # word -> its first sub-token (the next word's when it has none)


def _tokenize_docs(tokenizer: Tokenizer, docs: list[tuple[str, ...]]) -> list[_Doc]:
    # run_squad tokenizes each passage word on its own, so a word's sub-tokens do not
    # depend on its neighbours: tokenize every distinct word once, in one batch, then
    # lay the passages out from that table with numpy.
    word_index: dict[str, int] = {}
    doc_words = [np.fromiter((word_index.setdefault(w, len(word_index)) for w in d), dtype=np.int64,
                             count=len(d)) for d in docs]
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)  # no offsets needed
    pieces = [e.ids for e in encode(list(word_index), add_special_tokens=False)] if word_index else []
    n_pieces = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    first_piece = np.concatenate([[0], np.cumsum(n_pieces)[:-1]]).astype(np.int64)
    all_ids = np.fromiter((i for p in pieces for i in p), dtype=np.int32, count=int(n_pieces.sum()))
    # Only the ids these passages use (the whole vocabulary's table costs ~20 ms a call). A set, not
    # np.unique: that imports numpy.ma on first use, ~13 ms of a user's first question.
    id_to_token = {i: tokenizer.id_to_token(i) for i in set(all_ids.tolist())}

    out = []
    for words in doc_words:
        lens = n_pieces[words]
        tok_to_orig = np.repeat(np.arange(len(words), dtype=np.int32), lens)
        first_tok = np.cumsum(lens) - lens  # each word's first sub-token in the passage
        ids = all_ids[np.repeat(first_piece[words] - first_tok, lens) + np.arange(len(tok_to_orig))]
        out.append(_Doc(tokens=[id_to_token[i] for i in ids.tolist()], ids=ids, tok_to_orig=tok_to_orig,
                        orig_to_tok=first_tok.astype(np.int32)))
    return out


def convert_examples_to_features(examples: Sequence[SquadExample], tokenizer: Tokenizer,
                                 cfg: FeatureConfig = FeatureConfig(),
                                 is_training: bool = False) -> list[Feature]:
    """Windows of BERT input for every example, numbered from 1000000000 as in run_squad.

    A question longer than cfg.max_query_length tokens is cut to that length (BERT does
    the same). With is_training, start/end_position give the answer's token positions
    in the window, or 0 ([CLS]) when the answer is impossible or outside the window.
    """
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if cls_id is None or sep_id is None:
        raise UserError("the tokenizer's vocabulary lacks [CLS] or [SEP]: load BERT's vocab.txt")
    # Every distinct passage once, every question and training answer in one batch each.
    doc_index: dict[str, int] = {}
    unique_docs: list[tuple[str, ...]] = []
    for ex in examples:
        if ex.context not in doc_index:
            doc_index[ex.context] = len(unique_docs)
            unique_docs.append(ex.doc_tokens)
    docs = _tokenize_docs(tokenizer, unique_docs)
    queries = tokenizer.encode_batch([ex.question_text for ex in examples], add_special_tokens=False)
    answer_tokens: dict[int, str] = {}
    if is_training:
        need = [i for i, ex in enumerate(examples) if not ex.is_impossible]
        encs = tokenizer.encode_batch([examples[i].orig_answer_text or "" for i in need],
                                      add_special_tokens=False)
        answer_tokens = {i: " ".join(e.tokens) for i, e in zip(need, encs)}

    S = cfg.max_seq_length
    features: list[Feature] = []
    unique_id = FIRST_UNIQUE_ID
    for ex_index, ex in enumerate(examples):
        doc = docs[doc_index[ex.context]]
        q = queries[ex_index]
        q_tokens, q_ids = q.tokens[:cfg.max_query_length], q.ids[:cfg.max_query_length]
        n_doc = len(doc.tokens)

        tok_start = tok_end = None
        if is_training and ex.is_impossible:
            tok_start = tok_end = -1
        elif is_training:
            if ex.start_position is None or ex.end_position is None or ex.orig_answer_text is None:
                raise UserError(f"question {ex.qas_id!r} has no answer position: read training data "
                                "with read_squad_examples(..., is_training=True)")
            tok_start = int(doc.orig_to_tok[ex.start_position])
            if ex.end_position < len(ex.doc_tokens) - 1:
                tok_end = int(doc.orig_to_tok[ex.end_position + 1]) - 1
            else:
                tok_end = n_doc - 1
            tok_start, tok_end = _improve_answer_span(doc.tokens, tok_start, tok_end, answer_tokens[ex_index])

        spans = _doc_spans(n_doc, S - len(q_tokens) - 3, cfg.doc_stride)
        best_span = _max_context_span(spans, n_doc)
        offset = len(q_tokens) + 2  # window token i sits at position offset + i
        head_ids = [cls_id, *q_ids, sep_id]
        head_tokens = ["[CLS]", *q_tokens, "[SEP]"]
        for span_index, (start, length) in enumerate(spans):
            n = offset + length + 1
            input_ids = np.zeros(S, dtype=np.int32)
            input_ids[:offset] = head_ids
            input_ids[offset:offset + length] = doc.ids[start:start + length]
            input_ids[offset + length] = sep_id
            input_mask = np.zeros(S, dtype=np.int32)
            input_mask[:n] = 1
            segment_ids = np.zeros(S, dtype=np.int32)
            segment_ids[offset:n] = 1
            token_to_orig_map = WindowMap(offset, doc.tok_to_orig[start:start + length])
            token_is_max_context = WindowMap(offset, best_span[start:start + length] == span_index)

            start_position = end_position = None
            if is_training:
                inside = tok_start >= start and tok_end <= start + length - 1
                if ex.is_impossible or not inside:
                    start_position = end_position = 0
                else:
                    start_position, end_position = tok_start - start + offset, tok_end - start + offset
            features.append(Feature(
                unique_id=unique_id, example_index=ex_index, doc_span_index=span_index,
                tokens=head_tokens + doc.tokens[start:start + length] + ["[SEP]"],
                token_to_orig_map=token_to_orig_map, token_is_max_context=token_is_max_context,
                input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids,
                start_position=start_position, end_position=end_position,
                is_impossible=bool(ex.is_impossible) if is_training else False))
            unique_id += 1
    return features


def stack_features(features: Sequence[Feature]) -> dict[str, np.ndarray]:
    """The model inputs of many features as [N, max_seq_length] int32 arrays."""
    if not features:
        empty = np.zeros((0, 0), dtype=np.int32)
        return {"input_ids": empty, "segment_ids": empty.copy(), "input_mask": empty.copy()}
    return {name: np.stack([getattr(f, name) for f in features]).astype(np.int32, copy=False)
            for name in ("input_ids", "segment_ids", "input_mask")}


def first_questions(dataset: dict, n: int | None) -> dict:
    """The SQuAD dataset cut after its first n questions in file order (n None or 0: all).

    Articles and paragraphs keep their order; emptied ones are dropped. The fixed samples
    of the model card and CI's end-to-end test are made with it.
    """
    if not n:
        return dataset
    out, left = [], n
    for article in dataset["data"]:
        paragraphs = []
        for para in article["paragraphs"]:
            if left <= 0:
                break
            qas = para["qas"][:left]
            left -= len(qas)
            paragraphs.append({**para, "qas": qas})
        if paragraphs:
            out.append({**article, "paragraphs": paragraphs})
        if left <= 0:
            break
    return {**dataset, "data": out}
