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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

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
        for name in ("max_seq_length", "doc_stride", "max_query_length"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise UserError(f"{name} must be a positive integer, got {v!r}")
        if self.doc_room < 1:
            raise UserError(
                f"max_seq_length {self.max_seq_length} leaves no room for the passage after a "
                f"{self.max_query_length}-token question and 3 special tokens: raise max_seq_length "
                "or lower max_query_length")
        if self.doc_stride > self.doc_room:
            raise UserError(
                f"doc_stride {self.doc_stride} is larger than the {self.doc_room} passage tokens a window "
                f"holds (max_seq_length - max_query_length - 3): use doc_stride <= {self.doc_room}")

    @property
    def doc_room(self) -> int:
        """Passage tokens a window holds at the least (with the longest question)."""
        return self.max_seq_length - self.max_query_length - 3


@dataclass(frozen=True)
class SquadExample:
    qas_id: str
    question_text: str
    context: str
    doc_tokens: tuple[str, ...]          # the passage split on whitespace
    char_to_word_offset: tuple[int, ...]  # passage character -> index into doc_tokens
    orig_answer_text: str | None = None  # training only
    start_position: int | None = None    # training only: first answer word
    end_position: int | None = None      # training only: last answer word
    is_impossible: bool = False
    answers: tuple[str, ...] = ()        # every gold answer text, for evaluation


@dataclass(frozen=True, eq=False)
class Feature:
    unique_id: int
    example_index: int
    doc_span_index: int
    tokens: list[str]                     # [CLS] query [SEP] window [SEP], unpadded
    token_to_orig_map: dict[int, int]     # position of a window token -> doc word index
    token_is_max_context: dict[int, bool]  # position of a window token -> max context here?
    input_ids: np.ndarray                 # int32 [max_seq_length], 0-padded
    input_mask: np.ndarray                # int32 [max_seq_length]
    segment_ids: np.ndarray               # int32 [max_seq_length]
    start_position: int | None = None     # training only; 0 ([CLS]) when outside the window
    end_position: int | None = None
    is_impossible: bool = False


# run_squad's whitespace: not Python's, so that e.g. U+00A0 stays inside a word.
_WORD = re.compile(r"[^ \t\r\n\u202f]+")


def split_doc(text: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Split a passage into whitespace-separated words and map each character to its word."""
    matches = list(_WORD.finditer(text))
    starts = np.fromiter((m.start() for m in matches), dtype=np.int64, count=len(matches))
    # A character belongs to the last word that started at or before it (whitespace
    # before the first word gets -1), exactly run_squad's char_to_word_offset.
    offsets = np.searchsorted(starts, np.arange(len(text)), side="right") - 1
    return tuple(m.group() for m in matches), tuple(offsets.tolist())


def example_from_text(passage: str, question: str, qas_id: str = "0") -> SquadExample:
    """One example from a passage and a question typed by a user."""
    if not isinstance(passage, str) or not passage.strip():
        raise UserError("the passage is empty: give the text in which to look for the answer")
    if not isinstance(question, str) or not question.strip():
        raise UserError("the question is empty: give a question about the passage")
    doc_tokens, offsets = split_doc(passage)
    return SquadExample(qas_id=str(qas_id), question_text=question, context=passage,
                        doc_tokens=doc_tokens, char_to_word_offset=offsets)


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
    skipped = 0
    for a_i, article in enumerate(articles):
        a_where = f"article {a_i}" + (f" ({article['title']!r})" if isinstance(article, dict)
                                      and isinstance(article.get("title"), str) else "")
        for p_i, paragraph in enumerate(_get(article, "paragraphs", list, a_where, src)):
            p_where = f"paragraph {p_i} of {a_where}"
            context = _get(paragraph, "context", str, p_where, src)
            qas = _get(paragraph, "qas", list, p_where, src)
            doc_tokens, char_to_word = split_doc(context)  # shared by the paragraph's questions
            for q_i, qa in enumerate(qas):
                qas_id = str(_get(qa, "id", (str, int), f"question {q_i} of {p_where}", src))
                q_where = f"question {qas_id!r}"
                question = _get(qa, "question", str, q_where, src)
                is_impossible = version_2_with_negative and bool(qa.get("is_impossible", False))
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
    return examples


def _answer_words(answer: dict, context: str, doc_tokens: tuple[str, ...], char_to_word: tuple[int, ...],
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
    first = max(char_to_word[start], 0)
    last = max(char_to_word[start + len(text) - 1], 0)
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
    # Only the ids these passages use (the whole vocabulary's table costs ~20 ms a call).
    id_to_token = {i: tokenizer.id_to_token(i) for i in np.unique(all_ids).tolist()}

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
            positions = range(offset, offset + length)
            token_to_orig_map = dict(zip(positions, doc.tok_to_orig[start:start + length].tolist()))
            token_is_max_context = dict(zip(positions, (best_span[start:start + length] == span_index).tolist()))

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
