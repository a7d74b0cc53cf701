"""The decoder's top-k head as exported: the blocked form gives exactly the plain TopK's
candidates (ties to the lower id, a partial last block, ``k`` above the block count), and small
vocabularies keep the plain form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from inference.search import top_k
from training.errors import UserError
from training.export.head import HEAD, add_top_k_head, block_size, sort_nodes


def head_session(tmp_path: Path, vocab: int, min_vocab: int) -> ort.InferenceSession:
    """A graph that passes ``(rows, vocab)`` log-probs through, with the head appended."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["scores"], ["log_probs"])], "head",
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", vocab])],
        [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["batch", vocab])])
    path = tmp_path / f"head-{vocab}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))
    add_top_k_head(path, "log_probs", min_vocab=min_vocab)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def tied_log_probs(rows: int, vocab: int) -> np.ndarray:
    """Log-probs rounded to one decimal (many ties), one row mostly ``-inf``."""
    rng = np.random.default_rng(vocab)
    values = np.round(rng.normal(-8, 2, size=(rows, vocab)), 1).astype(np.float32)
    values[-1, :] = -np.inf
    values[-1, [3, vocab - 1]] = [-1.0, -2.0]
    return values


# blocks of 125; 1009 is prime: a partial last block (pooled, never padded)
@pytest.mark.parametrize("vocab", [1000, 1009])
def test_blocked_head_equals_the_plain_top_k(tmp_path: Path, vocab: int) -> None:
    session = head_session(tmp_path, vocab, min_vocab=1)
    ops = [node.op_type for node in onnx.load(str(tmp_path / f"head-{vocab}.onnx")).graph.node]
    partial = vocab % block_size(vocab) != 0
    assert (ops.count("MaxPool"), ops.count("ReduceMax")) == ((1, 0) if partial else (0, 1))
    assert "Pad" not in ops
    log_probs = tied_log_probs(7, vocab)
    blocks = -(-vocab // block_size(vocab))
    for k in (1, 2, 5, blocks, blocks + 1, 40):
        values, ids = session.run([HEAD.values, HEAD.indices],
                                  {"scores": log_probs, HEAD.input: np.array([k], np.int64)})
        expected = top_k(log_probs, k)
        assert ids.tolist() == expected.ids.tolist(), k
        assert values.tolist() == expected.values.tolist(), k
        assert int(ids.max()) < vocab
    empty = session.run([HEAD.indices], {"scores": log_probs[:0], HEAD.input: np.array([3])})
    assert empty[0].shape == (0, 3)


def test_small_vocabularies_keep_the_plain_head(tmp_path: Path) -> None:
    head_session(tmp_path, 1000, min_vocab=1001)
    ops = [node.op_type for node in onnx.load(str(tmp_path / "head-1000.onnx")).graph.node]
    assert ops == ["Identity", "TopK"]


@pytest.mark.parametrize(("vocab", "size"), [(32000, 128), (8000, 125), (59514, 109),
                                             (58101, 107), (1009, 128)])
def test_block_size_divides_the_vocabulary_when_it_can(vocab: int, size: int) -> None:
    assert block_size(vocab) == size


def test_nodes_are_put_after_their_producers() -> None:
    # the fp16 converter appends its input casts after the nodes that read them
    nodes = [helper.make_node("Identity", ["b"], ["c"], name="second"),
             helper.make_node("Identity", ["a"], ["b"], name="first"),
             helper.make_node("Identity", ["c"], ["d"], name="third")]
    graph = helper.make_graph(
        nodes, "unsorted", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, [1])])
    sort_nodes(graph)
    assert [node.name for node in graph.node] == ["first", "second", "third"]
    onnx.checker.check_model(helper.make_model(graph))
    orphan = helper.make_graph(
        [helper.make_node("Identity", ["missing"], ["d"])], "orphan",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, [1])])
    with pytest.raises(UserError, match="nothing produces"):
        sort_nodes(orphan)
