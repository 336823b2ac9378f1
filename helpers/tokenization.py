"""BERT WordPiece tokenization, built from the `tokenizers` library's parts.

The pipeline is BERT's own: clean text, space out CJK ideographs, lower-case and
strip accents (uncased models only), split on whitespace and punctuation, then
greedy longest-match WordPiece with "##" continuations. No special tokens are
added: the SQuAD feature code places [CLS] and [SEP] itself.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from helpers.errors import UserError, read_utf8

UNK = "[UNK]"
# Tokens the feature code looks up by name; a BERT vocabulary always has them.
REQUIRED_TOKENS = ("[UNK]", "[CLS]", "[SEP]")


def read_vocab(path: str | Path) -> list[str]:
    """Read a BERT vocab.txt (one token per line, the line number is the id)."""
    path = Path(path)
    text = read_utf8(path, "vocabulary file", "pass the vocab.txt that came with the checkpoint")
    # Split on "\n" only: str.splitlines() would also break on characters such as
    # U+2028 or U+001C that may sit inside a token. A trailing "\r" is a CRLF copy.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tokens = [line[:-1] if line.endswith("\r") else line for line in lines]
    if not tokens:
        raise UserError(f"vocabulary file {path} is empty: pass BERT's vocab.txt (one token per line)")
    return tokens


def check_vocab(vocab: Sequence[str], vocab_size: int) -> None:
    """Raise UserError unless `vocab` fits a model whose embedding table has `vocab_size` rows."""
    if len(vocab) != vocab_size:
        raise UserError(
            f"the vocabulary has {len(vocab)} tokens but the model expects {vocab_size}: "
            "use the vocab.txt that belongs to this checkpoint (cased and uncased BERT differ)")
    present = set(vocab)
    missing = [t for t in REQUIRED_TOKENS if t not in present]
    if missing:
        raise UserError(f"the vocabulary lacks {', '.join(missing)}: it is not a BERT WordPiece vocab.txt")


# Python's str.lower(), which BERT uses, maps a capital sigma that ends a word to the
# final form "ς" (Unicode's Final_Sigma context); the Rust lowercase maps every Σ to
# "σ". Writing the final form first keeps "ΟΔΟΣ" -> "οδος" as BERT has it. The context
# stops at whitespace, so running it on the whole text equals BERT's per-word lower().
# As in CPython, the nearest character on each side that is not case-ignorable decides.
_CASED = r"[\p{Cased}&&\P{Case_Ignorable}]"
_FINAL_SIGMA = Regex(rf"(?<={_CASED}\p{{Case_Ignorable}}*)\u03a3(?!\p{{Case_Ignorable}}*{_CASED})")


def _normalizer(do_lower_case: bool) -> normalizers.Normalizer:
    # BERT strips accents exactly when it lower-cases (strip_accents=None in transformers).
    if not do_lower_case:
        return normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                          strip_accents=False, lowercase=False)
    # Controls are dropped before lower() in BERT, so the sigma rule runs after cleaning.
    return normalizers.Sequence([
        normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                   strip_accents=False, lowercase=False),
        normalizers.Replace(_FINAL_SIGMA, "\u03c2"),
        normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False,
                                   strip_accents=True, lowercase=True),
    ])


def load_tokenizer(vocab: str | Path | Sequence[str], do_lower_case: bool = True) -> Tokenizer:
    """A BERT WordPiece tokenizer from a vocab.txt path or a list of tokens (index = id)."""
    tokens = read_vocab(vocab) if isinstance(vocab, (str, Path)) else list(vocab)
    if not tokens:
        raise UserError("the vocabulary is empty: pass BERT's vocab.txt (one token per line)")
    # Later duplicates win, as in BERT's load_vocab (a dict filled in file order).
    ids = {tok: i for i, tok in enumerate(tokens)}
    missing = [t for t in REQUIRED_TOKENS if t not in ids]
    if missing:
        raise UserError(f"the vocabulary lacks {', '.join(missing)}: it is not a BERT WordPiece vocab.txt")
    tok = Tokenizer(models.WordPiece(vocab=ids, unk_token=UNK, continuing_subword_prefix="##",
                                     max_input_chars_per_word=100))
    tok.normalizer = _normalizer(do_lower_case)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


@lru_cache(maxsize=2)
def _basic_parts(do_lower_case: bool):
    return _normalizer(do_lower_case), pre_tokenizers.BertPreTokenizer()


def basic_tokenize(text: str, do_lower_case: bool) -> list[str]:
    """BERT's BasicTokenizer (everything before WordPiece): the words it would split."""
    norm, pre = _basic_parts(do_lower_case)
    return [w for w, _ in pre.pre_tokenize_str(norm.normalize_str(text))]


@lru_cache(maxsize=4096)
def dropped_by_bert(ch: str) -> bool:
    """Whether BERT's clean-up leaves nothing of the character ch, so that it is in no token:
    control and format characters (NUL, U+200B zero-width space, a BOM, soft hyphen), U+FFFD,
    whitespace. Asked of the tokenizer itself, cased: an accent stays (it belongs to its letter)."""
    return not basic_tokenize(ch, do_lower_case=False)


def tokenize(tokenizer: Tokenizer, text: str) -> list[str]:
    """WordPiece tokens of one text, without special tokens."""
    return tokenizer.encode(text, add_special_tokens=False).tokens
