"""helpers/tf_checkpoint.py against TensorFlow's own writer and reader (tensorflow is a test
requirement; the reader never imports it), and its refusals of broken checkpoints."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from helpers.errors import CheckpointError
from helpers.tf_checkpoint import Bundle

tf = pytest.importorskip("tensorflow", reason="tensorflow (a test requirement) writes the checkpoints")


def _save(prefix, tensors: dict) -> None:
    names = list(tensors)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tensors[n] for n in names])


def _random_tensors(rng, n_filler: int) -> dict:
    """Every numeric dtype a checkpoint may hold, odd shapes, a scalar, an empty tensor, a string
    tensor; and n_filler more, with long names: enough of them spread the index over several data
    blocks (TensorFlow cuts them at 256 KB)."""
    f32 = rng.standard_normal((3, 5)).astype(np.float32)
    out = {
        "bert/embeddings/word_embeddings": tf.constant(f32),
        "half": tf.constant(rng.standard_normal((4, 7)).astype(np.float16)),
        "bf16": tf.cast(tf.constant(rng.standard_normal((2, 3, 4)).astype(np.float32)), tf.bfloat16),
        "f64": tf.constant(rng.standard_normal(6)),
        "i32": tf.constant(rng.integers(-1000, 1000, (2, 2), dtype=np.int32)),
        "i64": tf.constant(rng.integers(-(1 << 40), 1 << 40, 3, dtype=np.int64)),
        "u8": tf.constant(rng.integers(0, 255, 9, dtype=np.uint8)),
        "i8": tf.constant(rng.integers(-128, 127, 9, dtype=np.int8)),
        "flag": tf.constant(rng.random(5) > 0.5),
        "global_step": tf.constant(np.int64(rng.integers(1, 1 << 20))),
        "empty": tf.constant(np.zeros((0, 4), np.float32)),
        "names": tf.constant(["é", "bert", ""]),
        "ünïcode/name": tf.constant(rng.standard_normal(2).astype(np.float32)),
    }
    for i in range(n_filler):
        out[f"bert/encoder/layer_{i}/{'attention' * 20}/kernel"] = tf.constant(
            rng.standard_normal((2, 3)).astype(np.float32))
    return out


def _tf_reads(prefix) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(prefix))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}


def _assert_equal_to_tf(bundle: Bundle, expected: dict[str, np.ndarray]) -> None:
    assert sorted(bundle.entries) == sorted(expected)
    for name, want in expected.items():
        if name == "names":
            continue
        got = bundle.tensor(name)
        want = np.asarray(want)
        if want.dtype.name == "bfloat16":  # ml_dtypes' bfloat16: compared as float32, widened exactly
            want = want.astype(np.float32)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_every_dtype_and_many_blocks_read_as_tensorflow_reads_them(tmp_path, monkeypatch):
    rng = np.random.default_rng(11)
    _save(tmp_path / "m.ckpt", _random_tensors(rng, 2000))
    assert (tmp_path / "m.ckpt.index").stat().st_size > 262144  # two data blocks or more
    expected = _tf_reads(tmp_path / "m.ckpt")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # the reader must not need it
    bundle = Bundle(tmp_path / "m.ckpt")
    assert bundle.num_shards == 1
    _assert_equal_to_tf(bundle, expected)
    with pytest.raises(CheckpointError, match=r"m\.ckpt: names holds string values, not numbers"):
        bundle.tensor("names")


def test_sharded_checkpoint(tmp_path):
    """Two shards merged into one index (what a sharded tf.train.Saver writes)."""
    rng = np.random.default_rng(12)
    tensors = _random_tensors(rng, 40)
    names = list(tensors)
    _save(tmp_path / "part0", {n: tensors[n] for n in names[::2]})
    _save(tmp_path / "part1", {n: tensors[n] for n in names[1::2]})
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=[str(tmp_path / "part0"), str(tmp_path / "part1")],
                                  destination_prefix=str(tmp_path / "m.ckpt"))
    assert sorted(p.name for p in tmp_path.glob("m.ckpt.data-*")) == ["m.ckpt.data-00000-of-00002",
                                                                      "m.ckpt.data-00001-of-00002"]
    bundle = Bundle(tmp_path / "m.ckpt")
    assert bundle.num_shards == 2 and {e.shard for e in bundle.entries.values()} == {0, 1}
    _assert_equal_to_tf(bundle, _tf_reads(tmp_path / "m.ckpt"))


def test_partitioned_variable_is_listed_and_refused(tmp_path):
    """A variable saved as two slices (a partitioned variable): named, and refused when read."""
    ones = np.ones((2, 2), np.float32)
    tf.raw_ops.SaveV2(prefix=str(tmp_path / "p0"), tensor_names=["p", "q"], shape_and_slices=["4 2 0,2:-", ""],
                      tensors=[tf.constant(ones), tf.constant(np.arange(3, dtype=np.float32))])
    tf.raw_ops.SaveV2(prefix=str(tmp_path / "p1"), tensor_names=["p"], shape_and_slices=["4 2 2,2:-"],
                      tensors=[tf.constant(2 * ones)])
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=[str(tmp_path / "p0"), str(tmp_path / "p1")],
                                  destination_prefix=str(tmp_path / "m.ckpt"))
    bundle = Bundle(tmp_path / "m.ckpt")
    assert sorted(bundle.entries) == ["p", "q"] and bundle.entries["p"].shape == (4, 2)
    np.testing.assert_array_equal(bundle.tensor("q"), np.arange(3, dtype=np.float32))
    with pytest.raises(CheckpointError, match=r"m\.ckpt: p is a partitioned variable, which this reader does "
                                              r"not join: re-save the checkpoint unpartitioned"):
        bundle.tensor("p")


@pytest.fixture
def small_ckpt(tmp_path):
    rng = np.random.default_rng(13)
    _save(tmp_path / "m.ckpt", {"a": tf.constant(rng.standard_normal((64, 8)).astype(np.float32)),
                                "b": tf.constant(rng.standard_normal(16).astype(np.float32))})
    return tmp_path / "m.ckpt"


def _index_error(prefix, what: str) -> str:
    return (rf"{prefix}\.index is not a TensorFlow checkpoint index \({what}\): pass the prefix of a "
            r"TensorFlow V2 checkpoint \(model\.ckpt for model\.ckpt\.index\)")


@pytest.mark.parametrize("damage, what", [
    (lambda b: b[:-1], "no table footer"),                                   # truncated
    (lambda b: np.random.default_rng(14).bytes(len(b)), "no table footer"),  # a foreign file
    (lambda b: b"", "no table footer"),
    (lambda b: b[:-48] + bytes([0xFF] * 40) + b[-8:], "a varint of the footer runs past its end"),
])
def test_broken_index_is_refused_in_one_line(small_ckpt, damage, what):
    index = small_ckpt.with_name("m.ckpt.index")
    index.write_bytes(damage(index.read_bytes()))
    with pytest.raises(CheckpointError, match=_index_error(small_ckpt, what)):
        Bundle(small_ckpt)


def test_index_block_beyond_the_file_is_refused(small_ckpt):
    index = small_ckpt.with_name("m.ckpt.index")
    data = index.read_bytes()
    footer = bytes([0, 0, 0xE8, 0x07, 0x10]) + bytes(35)  # meta (0, 0), index at 1000, 16 bytes
    index.write_bytes(data[:-48] + footer + data[-8:])
    with pytest.raises(CheckpointError, match=_index_error(
            small_ckpt, r"the index block \(bytes 1000-1016\) runs past the end of the file")):
        Bundle(small_ckpt)


def test_truncated_or_missing_data_is_refused(small_ckpt):
    data = small_ckpt.with_name("m.ckpt.data-00000-of-00001")
    whole = data.read_bytes()
    bundle = Bundle(small_ckpt)
    last = max(bundle.entries, key=lambda n: bundle.entries[n].offset)
    e = bundle.entries[last]
    data.write_bytes(whole[:-1])
    with pytest.raises(CheckpointError, match=rf"{data} is truncated: {last} needs bytes {e.offset}-"
                                              rf"{e.offset + e.size}, the file ends before"):
        bundle.tensor(last)
    data.unlink()
    with pytest.raises(CheckpointError, match=rf"cannot read {data}, the data of {last}: No such file or "
                                              r"directory \(a checkpoint is its \.index and all its \.data-\* "
                                              r"files\)"):
        bundle.tensor(last)
