"""Tiny pretrained-layout checkpoints built in the tests: an OPUS-MT MarianMT directory as the
hub downloads it (``source.spm``/``target.spm`` trained with sentencepiece, ``vocab.json``,
``tokenizer_config.json`` naming the languages, ``generation_config.json``), briefly trained on
the synthetic word-for-word pairs so that its outputs depend on its input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sentencepiece
import torch
from transformers import (
    GenerationConfig,
    MarianConfig,
    MarianMTModel,
    MarianTokenizer,
    PreTrainedTokenizerBase,
)

from tests.conftest import synthetic_pairs

SPM_PIECES = 120  # an upper bound: hard_vocab_limit off lets the tiny corpus give fewer
TRAIN_STEPS = 200
OPUS_TARGETS = ("fra", "spa")  # the `>>xxx<<` tokens of a multi-target OPUS-MT vocabulary


def train_spm(texts: list[str], prefix: Path) -> Path:
    """A unigram sentencepiece model of ``texts`` at ``prefix.model``."""
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(prefix), model_type="unigram",
        vocab_size=SPM_PIECES, hard_vocab_limit=False, character_coverage=1.0,
        bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0, minloglevel=2)
    return prefix.with_suffix(".model")


def marian_vocab(spm_files: list[Path], extra: list[str]) -> dict[str, int]:
    """OPUS-MT's shared vocabulary: ``</s>`` 0, ``<unk>`` 1, ``extra`` tokens, every piece of
    both models, ``<pad>`` last."""
    tokens = ["</s>", "<unk>", *extra]
    for path in spm_files:
        model = sentencepiece.SentencePieceProcessor(model_file=str(path))
        tokens += [model.id_to_piece(i) for i in range(model.get_piece_size())
                   if not model.is_unknown(i)]
    ordered = list(dict.fromkeys(tokens))
    return {token: index for index, token in enumerate([*ordered, "<pad>"])}


def opus_mt_tokenizer(directory: Path, *, multi_target: bool) -> MarianTokenizer:
    """Sentencepiece models, ``vocab.json`` and ``tokenizer_config.json`` in ``directory``
    (English to French; a multi-target vocabulary names French ``fra``, as OPUS-MT does)."""
    pairs = synthetic_pairs(400, seed=5)
    work = directory / "spm"
    work.mkdir(parents=True)
    source = train_spm([src for src, _ in pairs], work / "source")
    target = train_spm([tgt for _, tgt in pairs], work / "target")
    extra = [f">>{code}<<" for code in OPUS_TARGETS] if multi_target else []
    (work / "vocab.json").write_text(json.dumps(marian_vocab([source, target], extra)))
    tokenizer = MarianTokenizer(vocab=str(work / "vocab.json"), source_spm=str(source),
                                target_spm=str(target), source_lang="en",
                                target_lang="fra" if multi_target else "fr")
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def opus_mt_model(vocab_size: int, init_std: float = 0.02) -> MarianMTModel:
    """OPUS-MT's config scaled down: pad = decoder start = last id, eos 0, d_model 64,
    2 + 2 layers, shared embeddings."""
    torch.manual_seed(11)
    config = MarianConfig(
        vocab_size=vocab_size, decoder_vocab_size=vocab_size, d_model=64, encoder_layers=2,
        decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=64, dropout=0.0,
        pad_token_id=vocab_size - 1, decoder_start_token_id=vocab_size - 1, eos_token_id=0,
        forced_eos_token_id=0, scale_embedding=True, share_encoder_decoder_embeddings=True,
        init_std=init_std)
    return MarianMTModel(config)


def train_briefly(model: MarianMTModel, tokenizer: MarianTokenizer) -> None:
    """A few hundred AdamW steps on the synthetic pairs."""
    pairs = synthetic_pairs(400, seed=6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(TRAIN_STEPS):
        chunk = [pairs[(step * 16 + i) % len(pairs)] for i in range(16)]
        batch = tokenizer([src for src, _ in chunk], text_target=[t for _, t in chunk],
                          padding=True, return_tensors="pt")
        labels = batch["labels"].masked_fill(batch["labels"] == tokenizer.pad_token_id, -100)
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def generation_config(model: MarianMTModel, *, max_length: int) -> GenerationConfig:
    """OPUS-MT's ``generation_config.json`` (its 512 tokens scaled to ``max_length``)."""
    cfg = model.config
    return GenerationConfig(
        bad_words_ids=[[cfg.pad_token_id]], bos_token_id=0,
        decoder_start_token_id=cfg.decoder_start_token_id, eos_token_id=cfg.eos_token_id,
        forced_eos_token_id=cfg.eos_token_id, max_length=max_length, num_beams=4,
        pad_token_id=cfg.pad_token_id, renormalize_logits=True)


def opus_mt_checkpoint(directory: Path, *, multi_target: bool = False) -> Path:
    """An OPUS-MT-layout checkpoint saved in ``directory``: briefly trained, or with random
    weights for ``multi_target`` (its tests compare ids with ``generate`` only; init_std 0.5
    makes the output depend on the input and the target token)."""
    tokenizer = opus_mt_tokenizer(directory, multi_target=multi_target)
    model = opus_mt_model(len(tokenizer.get_vocab()), init_std=0.5 if multi_target else 0.02)
    if not multi_target:
        train_briefly(model, tokenizer)
    model.generation_config = generation_config(model, max_length=48)
    model.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="session")
def opus_mt_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An OPUS-MT-layout English-French checkpoint directory (read-only use)."""
    yield opus_mt_checkpoint(tmp_path_factory.mktemp("opus-mt") / "opus-mt-en-fr")


@pytest.fixture(scope="session")
def opus_mt_multi_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A multi-target OPUS-MT-layout checkpoint (``>>fra<<``/``>>spa<<`` in its vocabulary,
    ``target_lang`` ``fra``), random weights."""
    yield opus_mt_checkpoint(tmp_path_factory.mktemp("opus-mt-multi") / "opus-mt-en-roa",
                             multi_target=True)


@pytest.fixture(scope="session")
def opus_mt_bundle(opus_mt_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``opus_mt_dir`` exported as a bundle named ``opus-mt-en-fr``."""
    from tests.export_fixtures import export

    return export(opus_mt_dir, tmp_path_factory.mktemp("opus-mt-bundle") / "opus-mt-en-fr")


@pytest.fixture(scope="session")
def opus_mt_multi_bundle(opus_mt_multi_dir: Path, tmp_path_factory: pytest.TempPathFactory
                         ) -> Path:
    """``opus_mt_multi_dir`` exported (for en -> fr) as a bundle named ``opus-mt-en-roa``."""
    from tests.export_fixtures import export

    return export(opus_mt_multi_dir, tmp_path_factory.mktemp("multi") / "opus-mt-en-roa")


def sample_sentences(count: int = 60) -> list[str]:
    """Sources unseen in training (another seed), and a few unlike the training pairs."""
    odd = ["fish fish fish fish fish fish fish fish.", "red.", "the cat the dog the fish sees",
           "bread", "the small red big small red big dog eats the small red big fish."]
    return [src for src, _ in synthetic_pairs(count - len(odd), seed=9)] + odd


def generate_ids(model_dir: Path, sources: list[list[int]], **options: object
                 ) -> list[list[int]]:
    """``generate`` of the checkpoint on token-id inputs (its generation config, ``options``
    overriding it): output ids per input without the start token, and cut at eos."""
    model = MarianMTModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    pad, eos = model.config.pad_token_id, model.config.eos_token_id
    width = max(map(len, sources))
    ids = torch.tensor([row + [pad] * (width - len(row)) for row in sources])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in sources])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, **options)
    return [row[: row.index(eos)] if eos in row else row for row in out[:, 1:].tolist()]


def save_tiny_m2m100(directory: Path, *, vocab_size: int, seed: int) -> Path:
    """A randomly initialised 2+2-layer M2M100 (d_model 32, ReLU, scaled embeddings) saved in
    ``directory`` beside its tokenizer; its outputs depend on the text and on both language
    tokens."""
    from transformers import M2M100Config, M2M100ForConditionalGeneration

    torch.manual_seed(seed)
    config = M2M100Config(
        vocab_size=vocab_size, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=64, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        decoder_start_token_id=2, scale_embedding=True, activation_function="relu",
        init_std=0.5)  # the default 0.02 gives one output for every input and source language
    M2M100ForConditionalGeneration(config).save_pretrained(str(directory))
    return directory


def m2m100_checkpoint(directory: Path) -> Path:
    """A random-weight M2M100 checkpoint (d_model 32, 2 + 2 layers) with an
    ``M2M100Tokenizer`` over a tiny sentencepiece model, saved in ``directory``."""
    from transformers import M2M100Tokenizer

    pairs = synthetic_pairs(400, seed=7)
    work = directory / "spm"
    work.mkdir(parents=True)
    spm = train_spm([text for pair in pairs for text in pair], work / "shared")
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(spm))
    tokens = ["<s>", "<pad>", "</s>", "<unk>",
              *(pieces.id_to_piece(i) for i in range(pieces.get_piece_size())
                if not pieces.is_unknown(i))]
    (work / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    tokenizer = M2M100Tokenizer(vocab_file=str(work / "vocab.json"), spm_file=str(spm),
                                src_lang="en", tgt_lang="fr")
    tokenizer.save_pretrained(str(directory))
    # the language tokens and 8 made-up words follow the vocabulary
    vocab = max(tokenizer.lang_code_to_id.values()) + 1 + tokenizer.num_madeup_words
    return save_tiny_m2m100(directory, vocab_size=vocab, seed=12)


@pytest.fixture(scope="session")
def m2m100_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny M2M100 checkpoint directory (read-only use)."""
    yield m2m100_checkpoint(tmp_path_factory.mktemp("m2m100") / "m2m100-tiny")


@pytest.fixture(scope="session")
def m2m100_bundle(m2m100_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``m2m100_dir`` exported for English to French as ``m2m100-en-fr``."""
    from tests.export_fixtures import export

    return export(m2m100_dir, tmp_path_factory.mktemp("m2m100-bundle") / "m2m100-en-fr",
                  "--src-lang", "en", "--tgt-lang", "fr")


def nllb_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    """NLLB-200's tokenizer (tokenizers-backed ``NllbTokenizer``: BPE with the ``fra_Latn``
    language tokens) from a tiny sentencepiece BPE model, saved in ``directory``."""
    from tokenizers.models import BPE
    from transformers import NllbTokenizer
    from transformers.convert_slow_tokenizer import SentencePieceExtractor

    pairs = synthetic_pairs(400, seed=8)
    work = directory / "spm"
    work.mkdir(parents=True)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([text for pair in pairs for text in pair]),
        model_prefix=str(work / "bpe"), model_type="bpe", vocab_size=SPM_PIECES,
        hard_vocab_limit=False, character_coverage=1.0, bos_id=-1, eos_id=-1, pad_id=-1,
        unk_id=0, minloglevel=2)
    extracted: Any = SentencePieceExtractor(str(work / "bpe.model")).extract(BPE)
    pieces = sorted(extracted["vocab"].items(), key=lambda item: item[1])
    tokens = dict.fromkeys(["<s>", "<pad>", "</s>", "<unk>", *(p for p, _ in pieces)])
    tokenizer = NllbTokenizer(vocab={t: i for i, t in enumerate(tokens)},
                              merges=extracted["merges"], src_lang="eng_Latn",
                              tgt_lang="fra_Latn")
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def nllb_checkpoint(directory: Path) -> Path:
    """A random-weight NLLB-layout checkpoint (``M2M100ForConditionalGeneration``, d_model 32,
    2 + 2 layers) with NLLB's tokenizer, saved in ``directory``."""
    tokenizer = nllb_tokenizer(directory)
    return save_tiny_m2m100(directory, vocab_size=len(tokenizer), seed=13)


@pytest.fixture(scope="session")
def nllb_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny NLLB-layout checkpoint directory (read-only use)."""
    yield nllb_checkpoint(tmp_path_factory.mktemp("nllb") / "nllb-tiny")


@pytest.fixture(scope="session")
def nllb_bundle(nllb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``nllb_dir`` exported for English to French, the codes given both ways."""
    from tests.export_fixtures import export

    return export(nllb_dir, tmp_path_factory.mktemp("nllb-bundle") / "nllb-en-fr",
                  "--src-lang", "eng_Latn", "--tgt-lang", "fr")


def generate_forced(model_dir: Path, sources: list[list[int]], forced: list[int], *, beams: int,
                    limit: int) -> list[list[int]]:
    """transformers ``generate`` of the M2M100-family checkpoint at ``model_dir``, row ``i``
    forced to start with token ``forced[i]`` (``forced_bos_token_id``, one call per distinct
    token); rows in order, the forced token and eos stripped."""
    from transformers import M2M100ForConditionalGeneration

    model = M2M100ForConditionalGeneration.from_pretrained(
        str(model_dir), attn_implementation="eager").eval()
    pad, eos = model.config.pad_token_id, model.config.eos_token_id
    out: list[list[int]] = [[] for _ in sources]
    for token in sorted(set(forced)):
        rows = [i for i, t in enumerate(forced) if t == token]
        width = max(len(sources[i]) for i in rows)
        ids = torch.tensor([sources[i] + [pad] * (width - len(sources[i])) for i in rows])
        with torch.no_grad():
            got = model.generate(input_ids=ids, attention_mask=(ids != pad).long(),
                                 num_beams=beams, do_sample=False, max_new_tokens=limit,
                                 forced_bos_token_id=token)
        for i, row in zip(rows, got[:, 2:].tolist(), strict=True):
            out[i] = row[: row.index(eos)] if eos in row else row
    return out
