"""Tiny exported bundles shared by the export and service tests (~10-20 s per export)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnx
import pytest
import torch
from transformers import MarianConfig, MarianMTModel

from inference.bundle import MANIFEST, read_manifest, sha256_of
from tests.conftest import synthetic_pairs
from training.checkpoint import save_model_dir
from training.export.__main__ import main as export_main
from training.export.head import add_top_k_head, with_top_k
from training.models import ModelConfig, build_model
from training.models.config import Architecture
from training.tokenizer import train_tokenizer

VOCAB = 300


def tiny_tokenizer_dir(directory: Path) -> Path:
    """A 300-token tokenizer saved in ``directory``."""
    texts = [text for pair in synthetic_pairs(200) for text in pair]
    train_tokenizer(texts, vocab_size=VOCAB).save_pretrained(str(directory))
    return directory


def project_model(directory: Path, arch: Architecture) -> Path:
    """A randomly initialised project model directory (weights, config, tokenizer)."""
    torch.manual_seed(3)
    cfg = ModelConfig(arch=arch, vocab_size=VOCAB, d_model=32, layers=2, heads=4, ffn_dim=64,
                      hidden_size=16, max_positions=64, dropout=0.0)
    save_model_dir(build_model(cfg), cfg, directory, {"src_lang": "en", "tgt_lang": "fr"})
    return tiny_tokenizer_dir(directory)


def custom_marian(directory: Path) -> Path:
    """A MarianMT checkpoint unlike the project's: gelu, unscaled and untied embeddings,
    separate decoder vocabulary, non-zero final logits bias, pad (= decoder start) last."""
    torch.manual_seed(4)
    config = MarianConfig(
        vocab_size=VOCAB, decoder_vocab_size=VOCAB, d_model=32, encoder_layers=2,
        decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=4,
        encoder_ffn_dim=48, decoder_ffn_dim=40, activation_function="gelu",
        scale_embedding=False, share_encoder_decoder_embeddings=False, tie_word_embeddings=False,
        pad_token_id=VOCAB - 1, decoder_start_token_id=VOCAB - 1, eos_token_id=1,
        max_position_embeddings=64, dropout=0.0)
    model = MarianMTModel(config)
    with torch.no_grad():
        model.final_logits_bias.normal_(0, 0.5)
    model.save_pretrained(str(directory))
    return tiny_tokenizer_dir(directory)


def export(src: Path, out: Path, *flags: str) -> Path:
    assert export_main([str(src), str(out), *flags]) == 0
    return out


@pytest.fixture(scope="session")
def transformer_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("transformer")
    return export(project_model(root / "model", "transformer"), root / "bundle", "--int8")


@pytest.fixture(scope="session")
def lstm_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lstm")
    return export(project_model(root / "model", "lstm"), root / "bundle")


@pytest.fixture(scope="session")
def gru_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gru")
    return export(project_model(root / "model", "gru"), root / "bundle")


@pytest.fixture(scope="session")
def marian_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("marian")
    return export(custom_marian(root / "model"), root / "bundle", "--src-lang", "en",
                  "--tgt-lang", "de")


@pytest.fixture(scope="session")
def trained_bundle(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Transformer trained briefly on the synthetic word-for-word pairs, exported:
    unlike random weights it ends its outputs at varied lengths, which search tests need."""
    from tests.conftest import tiny_overrides
    from training.config import load_config
    from training.train import Trainer

    root = tmp_path_factory.mktemp("trained")
    overrides = [*tiny_overrides(tiny_data, root / "run"), "max_steps=150", "eval_every=150",
                 "model.d_model=64", "model.ffn_dim=128", "model.dropout=0", "label_smoothing=0"]
    Trainer(load_config(None, overrides)).run()
    return export(root / "run" / "best", root / "bundle", "--int8")


def strip_head(bundle: Path) -> None:
    """Remove the top-k head from ``bundle``'s decoder graph (the manifest is left as is)."""
    manifest = read_manifest(bundle)
    path = bundle / "decoder.onnx"
    model = onnx.load(str(path))
    graph = model.graph
    head = manifest.decoder.top_k
    assert head is not None
    keep_nodes = [n for n in graph.node if n.op_type != "TopK"]
    del graph.node[:]
    graph.node.extend(keep_nodes)
    for items, name in ((graph.output, head.values), (graph.output, head.indices),
                        (graph.input, head.input), (graph.initializer, head.input)):
        found = [i for i, item in enumerate(items) if item.name == name]
        assert found or items is graph.initializer, name  # k has no default when required
        for index in reversed(found):
            del items[index]
    onnx.save(model, str(path))


def force_blocked_head(bundle: Path) -> None:
    """Give ``bundle``'s decoder the blocked top-k head whatever its vocabulary size (the test
    models' vocabularies are below ``BLOCKED_MIN_VOCAB``), checksums updated."""
    manifest = read_manifest(bundle)
    strip_head(bundle)
    add_top_k_head(bundle / "decoder.onnx", manifest.decoder.log_probs, min_vocab=1,
                   required=manifest.decoder.graph_writes)
    files = {**manifest.files, "decoder.onnx": sha256_of(bundle / "decoder.onnx")}
    blocked = replace(manifest, decoder=with_top_k(manifest.decoder), files=files)
    (bundle / MANIFEST).write_text(blocked.to_json(), encoding="utf-8")
