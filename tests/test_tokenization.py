"""helpers/tokenization.py against BERT's original tokenization.

The reference is transformers' pure-Python BERT tokenizer (a port of Google's
tokenization.py): its BasicTokenizer followed by its WordpieceTokenizer, which is
Google's FullTokenizer. We call those two parts directly because the transformers
class keeps "[CLS]"-like strings whole, which Google's code does not.
"""
from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from helpers.errors import UserError
from helpers.tokenization import basic_tokenize, check_vocab, load_tokenizer, read_vocab

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VOCAB_DIR = SHARED / "vocab"
DEV = SHARED / "squad" / "dev-v1.1.json"
CASINGS = {"uncased": True, "cased": False}

needs_data = pytest.mark.skipif(not (VOCAB_DIR / "bert-base-uncased-vocab.txt").is_file() or not DEV.is_file(),
                                reason=f"shared data (vocabularies, SQuAD dev) not found at {SHARED}")


def vocab_path(casing: str) -> Path:
    return VOCAB_DIR / f"bert-base-{casing}-vocab.txt"


def _slow_tokenizer(path: Path, lower: bool):
    try:  # transformers 5 moved the Python tokenizer here; BertTokenizer is the Rust one
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as Slow
    except ImportError:  # transformers 4: BertTokenizer is the Python one
        from transformers import BertTokenizer as Slow
    # vocab_file= is the slow class's argument (transformers 5's fast class would ignore it).
    ref = Slow(vocab_file=str(path), do_lower_case=lower, tokenize_chinese_chars=True, strip_accents=None)
    assert len(ref.vocab) == len(read_vocab(path)), "the reference did not load the vocabulary"
    return ref


@pytest.fixture(scope="module", params=list(CASINGS))
def pair(request):
    """(casing, our tokenizer, reference function text -> WordPiece tokens)."""
    if not vocab_path(request.param).is_file():
        pytest.skip(f"shared data not found at {SHARED}")
    lower = CASINGS[request.param]
    ref = _slow_tokenizer(vocab_path(request.param), lower)

    def reference(text: str) -> list[str]:
        return [p for w in ref.basic_tokenizer.tokenize(text) for p in ref.wordpiece_tokenizer.tokenize(w)]

    # The reference must really tokenize: a vocabulary it failed to load gives all [UNK].
    assert reference("The quick brown fox jumps") == (
        ["the", "quick", "brown", "fox", "jumps"] if lower else ["The", "quick", "brown", "fox", "jumps"])
    return request.param, load_tokenizer(vocab_path(request.param), lower), reference, ref


@needs_data
def test_every_dev_passage_and_question_matches_reference(pair):
    casing, tok, reference, _ = pair
    data = json.loads(DEV.read_text(encoding="utf-8"))["data"]
    texts = []
    for article in data:
        for para in article["paragraphs"]:
            texts.append(para["context"])
            texts.extend(qa["question"] for qa in para["qas"])
    assert len(texts) == 2067 + 10570
    ours = [e.tokens for e in tok.encode_batch(texts, add_special_tokens=False)]
    mismatches = []
    n_tokens = n_unk = 0
    for text, got in zip(texts, ours):
        want = reference(text)
        n_tokens += len(want)
        n_unk += want.count("[UNK]")
        if got != want:
            mismatches.append((text[:80], got[:20], want[:20]))
    assert not mismatches, f"{len(mismatches)} texts differ ({casing}), first: {mismatches[:3]}"
    assert n_tokens > 400_000 and n_unk < 0.001 * n_tokens  # real tokens, not a failed vocabulary


HARD = [
    "Héllo WORLD, naïve café résumé Ångström Øresund İstanbul Straße",
    "中文字符abc 日本語のテキスト 한국어 \u4e00\u9fff \U00020000x",
    "a\x00b\ufffdc\x7fd\x0be\x0cf\u200bg\u00adh",           # NUL, replacement char, controls, Cf
    "tab\there\nnew\rline\u00a0nbsp\u3000ideo\u2009thin\u2028ls\u2029ps",
    "don't \"quote\" (paren) [x] {y} $5 ^ ` ~ 50% a&b @c #d *e +f =g <h> |i \\j /k",
    "¿Qué? ¡Sí! …—– «guillemets» „quotes“ ‘single’ •bullet §7 ¶ © ® ™ ° ± ×",
    "a" * 100, "a" * 101, "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
    "emoji 😀 👍🏽 🇫🇷", "ΟΔΟΣ ΣΑΣ. ΑΣ'Β ὈΔΥΣΣΕΎΣ Σ", "Ǆemal ǅemal ǆ ﬁne ﬃ Ⅻ ①",
    "[CLS] [SEP] [MASK] [UNK] ##ing", "", "   ", "\u0301start", "x\u0338y",
    "1,000,000.50 3.14e-10 10:30pm 1990s", "ÀÉÎÕÜ àéîõü ÇçÑñ ŁłŚśŹź ĞğŞş",
]


@needs_data
@pytest.mark.parametrize("text", HARD)
def test_hard_strings_match_reference(pair, text):
    _, tok, reference, _ = pair
    # transformers' Python BasicTokenizer NFC-composes first; Google's BERT and the Rust
    # normalizer do not, so keep to text that NFC leaves alone (see the test below).
    assert unicodedata.normalize("NFC", text) == text
    assert tok.encode(text, add_special_tokens=False).tokens == reference(text)


@needs_data
def test_decomposed_text_is_not_composed():
    """Google's BERT never NFC-normalizes: a decomposed "é" stays "e" + U+0301 when cased.

    transformers' Python tokenizer composes it first (a later change of theirs), so the
    expected tokens here are written out instead of taken from it.
    """
    cased = load_tokenizer(vocab_path("cased"), do_lower_case=False)
    assert cased.encode("e\u0301cole", add_special_tokens=False).tokens == ["e", "##\u0301", "##co", "##le"]
    assert cased.encode("\u212b", add_special_tokens=False).tokens == ["[UNK]"]  # ANGSTROM SIGN, not Å
    # Uncased: accents are stripped after NFD, so composed and decomposed agree.
    uncased = load_tokenizer(vocab_path("uncased"), do_lower_case=True)
    assert (uncased.encode("e\u0301cole", add_special_tokens=False).tokens
            == uncased.encode("\u00e9cole", add_special_tokens=False).tokens == ["ecole"])


def test_final_sigma_as_python_lower():
    # BERT lower-cases with Python's str.lower(), which knows the word-final sigma.
    words = "ΟΔΟΣ ΣΑΣ. ΑΣ'Β ʰʰΣ Α\u0301Σ Σ"
    assert basic_tokenize(words, do_lower_case=True) == ["οδος", "σας", ".", "ασ", "'", "β", "ʰʰσ", "ας", "σ"]
    assert [w.lower() for w in words.split()][:2] == ["οδος", "σας."]
    assert basic_tokenize(words, do_lower_case=False)[:2] == ["ΟΔΟΣ", "ΣΑΣ"]


@needs_data
def test_unicode_sweep_basic_tokenization(pair):
    """Every long-assigned code point, in a word, cleaned/split/cased as the reference does.

    Code points added or re-categorized after Unicode 3.2 are left out: there the
    answer depends on which Unicode version the Python or Rust tables carry.
    """
    casing, _, _, ref = pair
    lower = CASINGS[casing]
    old = unicodedata.ucd_3_2_0
    # The whole BMP, and every 7th code point above it (most are CJK and private use).
    cps = [cp for cp in range(0x110000) if cp < 0x10000 or cp % 7 == 0]
    chars = [chr(cp) for cp in cps if old.category(chr(cp)) not in ("Cn", "Cs")
             and old.category(chr(cp)) == unicodedata.category(chr(cp))]
    texts = [t for t in (f"xA{c}Σ b{c}{c}Σ" for c in chars) if unicodedata.normalize("NFC", t) == t]
    assert len(texts) > 50_000
    bad = [(hex(ord(t[2])), ref.basic_tokenizer.tokenize(t), basic_tokenize(t, lower))
           for t in texts if ref.basic_tokenizer.tokenize(t) != basic_tokenize(t, lower)]
    assert not bad, f"{len(bad)} code points differ ({casing}), first: {bad[:5]}"


@needs_data
def test_words_longer_than_100_chars_are_unk():
    tok = load_tokenizer(vocab_path("uncased"), do_lower_case=True)
    assert tok.encode("a" * 101, add_special_tokens=False).tokens == ["[UNK]"]
    assert "[UNK]" not in tok.encode("a" * 100, add_special_tokens=False).tokens
    # The limit is per word: punctuation splits words before it applies.
    assert tok.encode("a" * 60 + "-" + "a" * 60, add_special_tokens=False).tokens.count("[UNK]") == 0


@needs_data
def test_no_special_tokens_are_added_and_ids_are_line_numbers():
    tokens = read_vocab(vocab_path("uncased"))
    tok = load_tokenizer(vocab_path("uncased"), do_lower_case=True)
    enc = tok.encode("Hello world")
    assert enc.tokens == ["hello", "world"]
    assert enc.ids == [tokens.index("hello"), tokens.index("world")]
    assert tok.token_to_id("[CLS]") == tokens.index("[CLS]") == 101


@needs_data
def test_vocab_list_gives_the_same_tokenizer_as_the_file():
    tokens = read_vocab(vocab_path("cased"))
    assert len(tokens) == 28996
    a = load_tokenizer(vocab_path("cased"), do_lower_case=False)
    b = load_tokenizer(tokens, do_lower_case=False)
    text = "The Eiffel Tower, built in 1889, is 330 m tall. Ünïcödé!"
    assert a.encode(text).ids == b.encode(text).ids
    assert a.get_vocab_size() == b.get_vocab_size() == 28996


def test_read_vocab_crlf_and_trailing_newline(tmp_path):
    p = tmp_path / "vocab.txt"
    p.write_bytes(b"[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhello\r\n")
    assert read_vocab(p) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello"]
    p.write_bytes("[PAD]\n[UNK]\n[CLS]\n[SEP]\nx\u2028y\n".encode())  # U+2028 is not a line break here
    assert read_vocab(p)[-1] == "x\u2028y"


def test_read_vocab_errors(tmp_path):
    with pytest.raises(UserError, match="no vocabulary file"):
        read_vocab(tmp_path / "missing.txt")
    with pytest.raises(UserError, match="directory"):
        read_vocab(tmp_path)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("[PAD]\n[UNK]\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        read_vocab(bad)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        read_vocab(empty)


def test_check_vocab():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]
    check_vocab(vocab, 6)
    with pytest.raises(UserError, match="6 tokens but the model expects 30522"):
        check_vocab(vocab, 30522)
    with pytest.raises(UserError, match=r"lacks \[CLS\]"):
        check_vocab(["[PAD]", "[UNK]", "[SEP]"], 3)


@needs_data
def test_cased_vocab_does_not_fit_uncased_model():
    with pytest.raises(UserError, match="28996 tokens but the model expects 30522"):
        check_vocab(read_vocab(vocab_path("cased")), 30522)


def test_load_tokenizer_rejects_non_bert_vocab():
    with pytest.raises(UserError, match=r"lacks \[UNK\]"):
        load_tokenizer(["a", "b", "[CLS]", "[SEP]"])
    with pytest.raises(UserError, match="empty"):
        load_tokenizer([])


@pytest.mark.skipif(not vocab_path("cased").is_file(), reason=f"shared data not found at {SHARED}")
def test_dropped_by_bert_matches_the_reference_clean_up():
    """The characters trimmed from answers' ends are those BERT's BasicTokenizer leaves nothing of."""
    from helpers.tokenization import dropped_by_bert

    ref = _slow_tokenizer(vocab_path("cased"), False).basic_tokenizer
    # Controls, format characters (zero-width, BOM, LRM, soft hyphen), U+FFFD, private use, whitespace;
    # then characters that stay: letters, punctuation, a combining accent (it belongs to its letter).
    dropped = "\x00\x01\x7f\x85\u200b\u200e\ufeff\u00ad\ufffd\ue000\u00a0\u3000\t\n "
    kept = "a.\u0301é中\u2019Σ1"
    for ch in dropped + kept:
        assert dropped_by_bert(ch) == (ref.tokenize(ch) == []) == (ch in dropped), repr(ch)
