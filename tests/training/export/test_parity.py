"""Exported graphs agree with PyTorch (measured here: log-probs within 1e-4, greedy ids
identical), the writer refuses graphs that do not, and int8 translates like fp32."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from transformers import AutoTokenizer, MarianMTModel

from inference.bundle import read_manifest
from tests.conftest import synthetic_pairs
from training.checkpoint import load_model_dir
from training.decode import greedy_decode
from training.errors import run_cli
from training.export import bundle_writer
from training.export.__main__ import main as export_main
from training.export.graphs import DEFAULT_OPSET, GraphPlan, export_graphs, plan_for, rnn_plan
from training.export.parity import onnx_greedy, sessions, torch_log_probs
from training.export.sources import load_source
from training.metrics import corpus_scores
from training.models import ModelConfig, build_model

MAX_LEN = 12


def padded_batch(lengths: list[int], vocab: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random ids (eos-free) right-padded with id 0 to the longest length, and the mask."""
    rng = np.random.default_rng(seed)
    width = max(lengths)
    ids = np.zeros((len(lengths), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(4, vocab - 1, length)
        mask[row, :length] = 1
    return ids, mask


def bundle_greedy(bundle: Path, ids: np.ndarray, mask: np.ndarray) -> list[list[int]]:
    manifest = read_manifest(bundle)
    encoder, decoder = sessions(bundle)
    tokens = manifest.special_tokens
    out, _ = onnx_greedy(encoder, decoder, manifest.decoder, ids, mask,
                         start_id=tokens["decoder_start"], eos_id=tokens["eos"], max_len=MAX_LEN)
    return out


def generate_greedy(model_dir: Path, ids: np.ndarray, mask: np.ndarray) -> list[list[int]]:
    """transformers' own greedy ``generate`` (start token and eos stripped)."""
    model = MarianMTModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    with torch.no_grad():
        out = model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                             num_beams=1, do_sample=False, max_new_tokens=MAX_LEN,
                             forced_eos_token_id=None, min_length=0)
    eos = model.config.eos_token_id
    result = []
    for row in out[:, 1:].tolist():
        result.append(row[: row.index(eos)] if eos in row else row)
    return result


BATCHES = [[7, 3, 5, 1], [4]]  # mixed lengths with padding, and batch size 1


def measured_parity(bundle: Path, ids: np.ndarray, mask: np.ndarray, steps: int = 8
                    ) -> dict[str, float]:
    """Largest |ONNX - PyTorch| of the encoder outputs, and of ``steps`` decoder steps'
    log-probs against the original model's teacher-forced log-probs on the ONNX greedy path."""
    source = load_source(bundle.parent / "model")
    manifest = read_manifest(bundle)
    encoder, decoder = sessions(bundle)
    with torch.no_grad():
        expected = plan_for(source).encoder(torch.from_numpy(ids), torch.from_numpy(mask))
    got = encoder.run(None, {"input_ids": ids, "attention_mask": mask})
    encoded = max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected, strict=True))
    start = manifest.special_tokens["decoder_start"]
    _, log_probs = onnx_greedy(encoder, decoder, manifest.decoder, ids, mask, start_id=start,
                               eos_id=-1, max_len=steps)
    fed = np.stack([np.full(len(ids), start), *(s.argmax(-1) for s in log_probs[:-1])], axis=1)
    reference = torch_log_probs(source, torch.from_numpy(ids), torch.from_numpy(mask),
                                torch.from_numpy(fed)).numpy()
    stepped = max(float(np.abs(log_probs[t] - reference[:, t]).max()) for t in range(steps))
    return {"encoder": encoded, "decoder_steps": stepped}


@pytest.mark.parametrize("bundle_name", ["transformer_bundle", "lstm_bundle", "gru_bundle",
                                         "marian_bundle"])
def test_graphs_agree_with_pytorch_within_tolerance(bundle_name: str,
                                                    request: pytest.FixtureRequest) -> None:
    """Measured here on a padded batch of mixed lengths, 8 steps (the writer checks 4 on its
    own batch): encoder outputs and step log-probs within 1e-4 of PyTorch."""
    bundle: Path = request.getfixturevalue(bundle_name)
    vocab = read_manifest(bundle).vocab_size
    ids, mask = padded_batch([7, 3, 5, 1], vocab - 1, seed=3)
    ids[mask == 0] = read_manifest(bundle).special_tokens["pad"]
    diffs = measured_parity(bundle, ids, mask)
    assert diffs["encoder"] <= 1e-4 and diffs["decoder_steps"] <= 1e-4, diffs


def perturb_largest_weight(graph: Path) -> None:
    """Add 1e-2 to every value of the graph's largest float initializer."""
    model = onnx.load(str(graph))
    floats = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    init = max(floats, key=lambda i: int(np.prod(i.dims)))
    value = numpy_helper.to_array(init) + np.float32(1e-2)
    init.CopyFrom(numpy_helper.from_array(value, init.name))
    onnx.save(model, str(graph))


def test_export_refuses_graphs_that_disagree_with_pytorch(
        transformer_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A decoder graph whose weights drifted from the model's: no bundle, a one-line reason."""
    def drifting_export(plan: GraphPlan, out: Path, **options: Any) -> None:
        export_graphs(plan, out, **options)
        perturb_largest_weight(out / "decoder.onnx")

    monkeypatch.setattr(bundle_writer, "export_graphs", drifting_export)
    out = tmp_path / "bundle"
    assert run_cli(export_main, [str(transformer_bundle.parent / "model"), str(out)]) == 2
    assert "disagree with PyTorch" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("lengths", BATCHES)
@pytest.mark.parametrize("bundle_name", ["transformer_bundle", "lstm_bundle", "gru_bundle"])
def test_project_model_greedy_matches_torch_decoding(bundle_name: str, lengths: list[int],
                                                     request: pytest.FixtureRequest) -> None:
    bundle: Path = request.getfixturevalue(bundle_name)
    ids, mask = padded_batch(lengths, 300, seed=len(lengths))
    model, cfg = load_model_dir(bundle.parent / "model")
    expected = greedy_decode(model, torch.from_numpy(ids), torch.from_numpy(mask),
                             start_id=cfg.decoder_start_id, eos_id=cfg.eos_id, max_len=MAX_LEN)
    assert bundle_greedy(bundle, ids, mask) == expected


@pytest.mark.parametrize("lengths", BATCHES)
def test_custom_marian_greedy_matches_generate(marian_bundle: Path, lengths: list[int]) -> None:
    ids, mask = padded_batch(lengths, 299, seed=10 + len(lengths))
    ids[mask == 0] = 299  # this checkpoint pads with its last id
    assert bundle_greedy(marian_bundle, ids, mask) == generate_greedy(
        marian_bundle.parent / "model", ids, mask)


def test_custom_marian_manifest_honours_its_config(marian_bundle: Path) -> None:
    manifest = read_manifest(marian_bundle)
    assert manifest.special_tokens == {"pad": 299, "eos": 1, "decoder_start": 299, "unk": 2}
    assert (manifest.source_lang, manifest.target_lang) == ("en", "de")
    # one layer: past key and value, the cache mask and the position; cross key and value
    assert len(manifest.decoder.state) == 4 and len(manifest.decoder.static) == 2
    assert manifest.decoder.cache_mask == "past_mask" and manifest.decoder.joinable
    assert manifest.decoder.state[0].shape == ["batch", 4, "cache_len", 8]  # in place
    assert manifest.decoder.in_place and manifest.decoder.state[0].output == "present_key_0"
    # the graph writes the key/value buffers (GroupQueryAttention); the host writes the mask
    assert [spec.graph_writes for spec in manifest.decoder.state] == [True, True, False, False]
    graph = onnx.load(str(marian_bundle / "decoder.onnx")).graph
    ops = Counter(node.op_type for node in graph.node)
    assert ops["GroupQueryAttention"] == 1, ops


def test_gelu_is_one_onnx_node_in_both_graphs(marian_bundle: Path) -> None:
    # At opset 18 torch writes erf-GELU as Div, Erf, Add, Mul, Mul, which ONNX Runtime does
    # not fuse back; opset 20's Gelu is one kernel (graphs.DEFAULT_OPSET).
    for name in ("encoder.onnx", "decoder.onnx"):
        ops = Counter(node.op_type for node in onnx.load(str(marian_bundle / name)).graph.node)
        layers = 2 if name == "encoder.onnx" else 1
        assert ops["Gelu"] == layers and ops["Erf"] == 0, (name, ops)


def gemm_weight_shapes(graph_path: Path) -> Counter[tuple[int, ...]]:
    """How many ``Gemm`` nodes the graph has per shape of their weight."""
    graph = onnx.load(str(graph_path)).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    return Counter(shapes[node.input[1]] for node in graph.node if node.op_type == "Gemm")


def test_projections_of_one_input_are_one_gemm(marian_bundle: Path) -> None:
    # Each self-attention's q, k, v projections are one GEMM (3 D wide), and the encoder
    # computes every decoder layer's cross-attention keys and values in one (2 D per layer).
    manifest = read_manifest(marian_bundle)
    _, heads, _, head_dim = manifest.encoder_outputs[0].shape
    dim = int(heads) * int(head_dim)
    layers = len(manifest.encoder_outputs) // 2  # decoder layers (custom_marian: 2 encoder)
    encoder = gemm_weight_shapes(marian_bundle / "encoder.onnx")
    decoder = gemm_weight_shapes(marian_bundle / "decoder.onnx")
    assert encoder[(2 * layers * dim, dim)] == 1, encoder
    assert encoder[(3 * dim, dim)] == 2 and decoder[(3 * dim, dim)] == layers, (encoder, decoder)


def test_bundle_contents(transformer_bundle: Path) -> None:
    raw = json.loads((transformer_bundle / "model.json").read_text())
    assert raw["format_version"] == 2 and raw["architecture"] == "transformer"
    assert raw["dtype"] == "float32" and raw["opset"] == DEFAULT_OPSET
    assert set(raw["versions"]) == {"torch", "transformers", "onnx", "onnxruntime"}
    assert {"encoder.onnx", "decoder.onnx", "tokenizer.json"} <= set(raw["files"])
    assert all(len(digest) == 64 for digest in raw["files"].values())
    tokenizer = AutoTokenizer.from_pretrained(str(transformer_bundle))
    assert tokenizer.decode(tokenizer("the cat.")["input_ids"], skip_special_tokens=True) == (
        "the cat.")


def tokenized_batch(bundle: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``texts`` through the bundle's tokenizer, right-padded with its pad id, and the mask."""
    tokenizer = AutoTokenizer.from_pretrained(str(bundle))
    rows = [tokenizer(text)["input_ids"] for text in texts]
    ids = np.full((len(rows), max(map(len, rows))), read_manifest(bundle).special_tokens["pad"])
    mask = np.zeros_like(ids)
    for row, tokens in enumerate(rows):
        ids[row, : len(tokens)], mask[row, : len(tokens)] = tokens, 1
    return ids, mask


def test_int8_variant_is_smaller_and_translates_like_fp32(trained_bundle: Path) -> None:
    """Dynamic int8 of the trained model: smaller graphs, and on 32 sentences greedy ids that
    read like fp32's (BLEU over ids, fp32 as the reference: 89 measured; quantisation moves a
    near-tie argmax now and then, a broken one changes everything)."""
    int8 = trained_bundle / "int8"
    assert read_manifest(int8).dtype == "int8"
    for name in ("encoder.onnx", "decoder.onnx"):
        assert (int8 / name).stat().st_size < (trained_bundle / name).stat().st_size / 2, name
    ids, mask = tokenized_batch(trained_bundle, [src for src, _ in synthetic_pairs(32, seed=9)])
    as_text = lambda rows: [" ".join(map(str, row)) for row in rows]  # noqa: E731
    fp32, quantized = bundle_greedy(trained_bundle, ids, mask), bundle_greedy(int8, ids, mask)
    agreement = corpus_scores(as_text(quantized), [as_text(fp32)])["bleu"]
    print(f"\nint8: greedy ids against fp32's: BLEU {agreement}")
    assert agreement >= 60


def vocab_vectors(bundle: Path) -> list[str]:
    """Names of the decoder's float initializers shaped like a logits bias."""
    import onnx

    vocab = read_manifest(bundle).vocab_size
    return [init.name for init in onnx.load(str(bundle / "decoder.onnx")).graph.initializer
            if tuple(init.dims) in {(vocab,), (1, vocab)}]


def test_a_zero_final_logits_bias_is_not_added_at_every_step(transformer_bundle: Path,
                                                             marian_bundle: Path) -> None:
    # a zero bias would cost a pass over the (rows, vocab) logits per step for nothing
    assert vocab_vectors(transformer_bundle) == []
    assert vocab_vectors(marian_bundle)  # a trained, non-zero bias stays (parity above)


def test_one_rnn_exported_twice_in_a_process_keeps_both_lengths_dynamic(tmp_path: Path) -> None:
    """The second export of a GRU in one process still reads sources of any length."""
    torch.manual_seed(5)
    cfg = ModelConfig(arch="gru", vocab_size=50, d_model=16, layers=1, hidden_size=8,
                      max_positions=32, dropout=0.0)
    model = build_model(cfg).eval()
    for attempt in ("first", "second"):
        out = tmp_path / attempt
        out.mkdir()
        export_graphs(rnn_plan(model), out, opset=DEFAULT_OPSET, max_positions=32)
        graph = onnx.load(str(out / "encoder.onnx")).graph
        dims = [[d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim]
                for x in graph.input]
        assert dims == [["batch", "src_len"]] * 2, attempt
        encoder, _ = sessions(out)
        ids, mask = padded_batch([9, 4], 50, seed=1)
        memory = encoder.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        assert memory.shape[:2] == (2, 9)
