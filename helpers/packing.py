"""Packed (variable sequence length) batches: padded [B, S] arrays <-> packed tokens + cu_seqlens.

A packed batch lays its sequences back to back without padding: token ids [T] and segment ids [T]
of all sequences concatenated, and cu_seqlens [B + 1] with sequence b at tokens
[cu_seqlens[b], cu_seqlens[b + 1]) (cu_seqlens[0] = 0, cu_seqlens[B] = T). Packed engines
(builder_varseqlen.py) run them; the C++ runtime checks the same rules again before any kernel runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helpers.errors import UserError

PAD_LOGIT = -10000.0  # logits returned at padding positions of unpacked outputs


@dataclass(frozen=True)
class PackedBatch:
    input_ids: np.ndarray    # int32 [T]
    segment_ids: np.ndarray  # int32 [T]
    cu_seqlens: np.ndarray   # int32 [B + 1]
    max_seqlen: int          # the longest sequence

    @property
    def tokens(self) -> int:
        return int(self.cu_seqlens[-1])

    @property
    def batch(self) -> int:
        return len(self.cu_seqlens) - 1


def lengths_from_mask(input_mask) -> np.ndarray:
    """Valid tokens per row of a [B, S] prefix mask (ones then zeros, at least one 1); UserError otherwise."""
    return _checked_prefix(np.asarray(input_mask))[0]


def _checked_prefix(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, the mask as bools) of a valid prefix mask, else UserError (lengths_from_mask's rules)."""
    if mask.ndim != 2 or mask.shape[0] < 1 or mask.shape[1] < 1:
        raise UserError(f"input_mask must be a 2-D [batch, seq] array with at least one token, got shape {mask.shape}")
    lengths = np.count_nonzero(mask, axis=1).astype(np.int64)
    prefix = np.arange(mask.shape[1])[None, :] < lengths[:, None]
    # One comparison settles the usual case (every value 0 or 1, ones then zeros): it runs on every
    # engine call, and on [1024, 384] masks the separate checks below cost ~2 ms of the host's time.
    if not np.array_equal(mask, prefix):
        if not np.isin(mask, (0, 1)).all():
            raise UserError("input_mask holds values other than 0 and 1; the mask holds 1 for tokens and 0 for "
                            "padding")
        bad = int(np.nonzero((prefix != mask.astype(bool)).any(axis=1))[0][0])
        raise UserError(f"input_mask row {bad} has a 1 after padding; the mask must be ones then zeros "
                        "(pad at the end)")
    empty = np.nonzero(lengths == 0)[0]
    if empty.size:
        raise UserError(f"input_mask row {int(empty[0])} is all zeros; every sequence needs at least its [CLS] token")
    return lengths, prefix


def cu_seqlens_from_lengths(lengths) -> np.ndarray:
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)


def pack(input_ids, segment_ids, input_mask) -> PackedBatch:
    """Drop the padding of [B, S] arrays (by the prefix mask) and concatenate the sequences."""
    ids, seg = np.asarray(input_ids), np.asarray(segment_ids)
    mask = np.asarray(input_mask)
    if ids.ndim != 2 or ids.shape != seg.shape or ids.shape != mask.shape:
        raise UserError("input_ids, segment_ids and input_mask must be 2-D [batch, seq] arrays of the same shape, "
                        f"got {ids.shape}, {seg.shape} and {mask.shape}")
    lengths, keep = _checked_prefix(mask)
    return PackedBatch(np.ascontiguousarray(ids[keep], dtype=np.int32),
                       np.ascontiguousarray(seg[keep], dtype=np.int32),
                       cu_seqlens_from_lengths(lengths), int(lengths.max()))


def unpack_logits(logits, cu_seqlens, seq: int, fill: float = PAD_LOGIT) -> np.ndarray:
    """Packed logits [T, 2] -> padded [B, seq, 2] float32, `fill` at the padding positions."""
    logits = np.asarray(logits, dtype=np.float32)
    cu = np.asarray(cu_seqlens, dtype=np.int64)
    lengths = np.diff(cu)
    if logits.ndim != 2 or logits.shape[0] != cu[-1] or (lengths > seq).any():
        raise UserError(f"packed logits of shape {logits.shape} do not match cu_seqlens ending at {int(cu[-1])} "
                        f"with sequences of at most {seq} tokens")
    out = np.full((len(lengths), seq, logits.shape[1]), fill, dtype=np.float32)
    if logits.shape[1] == 0:  # nothing to place (and no zero-byte item to view it as)
        return out
    # Each token's logits moved as one opaque item: a boolean scatter of [T, k] float rows is ~20x
    # slower in numpy than of [T] items of k * 4 bytes (5 ms against 0.25 at 1024 x 384 tokens).
    item = np.dtype((np.void, 4 * logits.shape[1]))
    rows = np.ascontiguousarray(logits).view(item).reshape(len(logits))
    out.view(item).reshape(out.shape[:2])[np.arange(seq)[None, :] < lengths[:, None]] = rows
    return out


def check_packed(input_ids, segment_ids, cu_seqlens, *, vocab_size: int, type_vocab_size: int = 2,
                 max_batch: int, max_seq: int, token_capacity: int) -> None:
    """UserError unless the packed batch fits an engine (the same rules as the C++ runtime's)."""
    ids, seg, cu = (np.asarray(a) for a in (input_ids, segment_ids, cu_seqlens))
    if ids.ndim != 1 or seg.ndim != 1 or cu.ndim != 1:
        raise UserError("packed input_ids, segment_ids and cu_seqlens must be 1-D arrays")
    if ids.shape != seg.shape:
        raise UserError(f"packed input_ids and segment_ids must have the same length, got {ids.size} and {seg.size}")
    batch, tokens = cu.size - 1, ids.size
    if batch < 1:
        raise UserError(f"cu_seqlens must hold at least 2 entries (one sequence), got {cu.size}")
    if batch > max_batch:
        raise UserError(f"batch of {batch} sequences is over this engine's maximum batch {max_batch}; "
                        "split it or rebuild with builder_varseqlen.py -b")
    if tokens < 1:
        raise UserError("no tokens given; every sequence needs at least its [CLS] token")
    if tokens > token_capacity:
        raise UserError(f"total token count {tokens} is over this engine's token capacity {token_capacity} "
                        f"(max batch {max_batch} x max sequence length {max_seq}); split the batch")
    if cu[0] != 0:
        raise UserError(f"cu_seqlens must start at 0, got cu_seqlens[0] = {int(cu[0])}")
    lengths = np.diff(cu.astype(np.int64))
    if (lengths < 0).any():
        b = int(np.nonzero(lengths < 0)[0][0])
        raise UserError(f"cu_seqlens must be non-decreasing, but cu_seqlens[{b + 1}] = {int(cu[b + 1])} < "
                        f"cu_seqlens[{b}] = {int(cu[b])}")
    if (lengths == 0).any():
        b = int(np.nonzero(lengths == 0)[0][0])
        raise UserError(f"sequence {b} is empty (cu_seqlens repeats a value); every sequence needs at least "
                        "its [CLS] token")
    if (lengths > max_seq).any():
        b = int(np.nonzero(lengths > max_seq)[0][0])
        raise UserError(f"sequence {b} has {int(lengths[b])} tokens, longer than this engine's maximum sequence "
                        f"length {max_seq}")
    if cu[-1] != tokens:
        raise UserError(f"cu_seqlens must end at the token count {tokens}, got cu_seqlens[{batch}] = {int(cu[-1])}")
    for name, a, hi, what in (("input_ids", ids, vocab_size, "; tokenize with the engine's own vocabulary"),
                              ("segment_ids", seg, type_vocab_size, " (0 for the question, 1 for the passage)")):
        bad = np.nonzero((a < 0) | (a >= hi))[0]
        if bad.size:
            t = int(bad[0])
            raise UserError(f"{name}[{t}] = {int(a[t])} is outside [0, {hi}){what}")


def plan_batches(lengths, max_batch: int, token_capacity: int) -> list[np.ndarray]:
    """Indices of the rows for each engine call: rows sorted by length (longest first), each batch
    filled with up to max_batch rows and token_capacity tokens."""
    given = np.asarray(lengths)
    if given.ndim != 1 or (given.size and not np.issubdtype(given.dtype, np.integer)) or (given < 0).any():
        raise ValueError(f"lengths must be a 1-D sequence of token counts (integers >= 0), got {given!r:.80}")
    for name, value in (("max_batch", max_batch), ("token_capacity", token_capacity)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    lengths = given.astype(np.int64)
    if (lengths > token_capacity).any():
        raise UserError(f"a sequence of {int(lengths.max())} tokens is over the token capacity {token_capacity}")
    order = np.argsort(-lengths, kind="stable")
    batches, cur, used = [], [], 0
    for i in order.tolist():
        n = int(lengths[i])
        if cur and (len(cur) == max_batch or used + n > token_capacity):
            batches.append(np.asarray(cur, dtype=np.int64))
            cur, used = [], 0
        cur.append(i)
        used += n
    if cur:
        batches.append(np.asarray(cur, dtype=np.int64))
    return batches
