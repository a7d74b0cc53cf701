"""The randomly initialised models the engine comparison runs on (``bench.engines --model``):
their shapes, where their special and language tokens sit, how to build one, and the source
ids every system translates.

- ``opus``: a Marian of OPUS-MT's shape (vocabulary 32,000; ``</s>`` 0, pad last).
- ``m2m100-256k``: an M2M100 of NLLB-200-distilled-600M's layout scaled to fit (d_model 512,
  6+6 layers, 8 heads, FFN 2048) with its full 256,206-token vocabulary: ``<s> <pad> </s>
  <unk>`` first, the source and target language tokens last; every source starts with the
  source language's token (as NLLB's tokenizer writes it) and every output with the target
  language's (CTranslate2's ``target_prefix``, ``generate``'s ``forced_bos_token_id``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

Shape = dict[str, int]
QUICK: Shape = {"d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "vocab": 500}


@dataclass(frozen=True)
class RandomModel:
    """One bench model: ``leading`` tokens take the first ids, ``trailing`` the last ones,
    plain words ``w<id>`` the ids between."""

    name: str
    arch: str  # folder of the checkpoint in the bench's work directory
    shape: Shape
    leading: tuple[str, ...]
    trailing: tuple[str, ...]
    eos: str
    pad: str
    source_lang: str | None = None  # token put before every source
    target_lang: str | None = None  # token forced as every output's first

    def sizes(self, quick: bool) -> Shape:
        """The model's sizes, or tiny ones that check the harness runs."""
        return QUICK if quick else self.shape

    def tokens(self, vocab: int) -> list[str]:
        """Token strings by id ``(vocab,)``."""
        words = [f"w{i}" for i in range(len(self.leading), vocab - len(self.trailing))]
        return [*self.leading, *words, *self.trailing]

    def token_id(self, token: str, vocab: int) -> int:
        """The id of a special or language token in a vocabulary of ``vocab``."""
        if token in self.leading:
            return self.leading.index(token)
        return vocab - len(self.trailing) + self.trailing.index(token)

    def target_prefix(self, vocab: int) -> list[int]:
        """Tokens every output starts with (forced), empty when none."""
        return [self.token_id(self.target_lang, vocab)] if self.target_lang else []

    def sources(self, vocab: int, count: int = 64) -> list[list[int]]:
        """Deterministic source ids: 10-40 plain words, eos last (after the source language's
        token when the model has one)."""
        rng = np.random.default_rng(0)
        first, end = len(self.leading), vocab - len(self.trailing)
        prefix = [self.token_id(self.source_lang, vocab)] if self.source_lang else []
        eos = self.token_id(self.eos, vocab)
        return [[*prefix, *rng.integers(first, end, int(n)).tolist(), eos]
                for n in rng.integers(10, 41, count)]

    def build(self, directory: Path, quick: bool) -> None:
        """Save the random checkpoint and a word-level tokenizer over :meth:`tokens`."""
        shape = self.sizes(quick)
        (build_marian if self.arch == "marian" else build_m2m100)(directory, shape, self)
        save_tokenizer(directory, self, shape["vocab"])


OPUS = RandomModel("opus", "marian", {"d_model": 512, "layers": 6, "heads": 8, "ffn": 2048,
                                      "vocab": 32000},
                   leading=("</s>", "<unk>"), trailing=("<pad>",), eos="</s>", pad="<pad>")
M2M100_256K = RandomModel(
    "m2m100-256k", "m2m100",
    {"d_model": 512, "layers": 6, "heads": 8, "ffn": 2048, "vocab": 256_206},
    leading=("<s>", "<pad>", "</s>", "<unk>"), trailing=("eng_Latn", "fra_Latn"),
    eos="</s>", pad="<pad>", source_lang="eng_Latn", target_lang="fra_Latn")
MODELS = {model.name: model for model in (OPUS, M2M100_256K)}


def build_marian(directory: Path, shape: Shape, model: RandomModel) -> None:
    """Random Marian; pad is the last id with a zero embedding, as in OPUS-MT."""
    import torch
    from transformers import MarianConfig, MarianMTModel

    vocab = shape["vocab"]
    pad = model.token_id(model.pad, vocab)
    config = MarianConfig(
        vocab_size=vocab, decoder_vocab_size=vocab, d_model=shape["d_model"],
        encoder_layers=shape["layers"], decoder_layers=shape["layers"],
        encoder_attention_heads=shape["heads"], decoder_attention_heads=shape["heads"],
        encoder_ffn_dim=shape["ffn"], decoder_ffn_dim=shape["ffn"], pad_token_id=pad,
        decoder_start_token_id=pad, eos_token_id=model.token_id(model.eos, vocab),
        max_position_embeddings=512)
    torch.manual_seed(0)
    marian = MarianMTModel(config).eval()
    with torch.no_grad():
        marian.model.shared.weight[pad].zero_()
    marian.save_pretrained(str(directory))


def build_m2m100(directory: Path, shape: Shape, model: RandomModel) -> None:
    """Random M2M100 with NLLB-200's settings (ReLU, scaled embeddings, 1,024 positions,
    decoder start = eos); no forced eos, so that every system runs the same steps."""
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration

    vocab = shape["vocab"]
    eos = model.token_id(model.eos, vocab)
    config = M2M100Config(
        vocab_size=vocab, d_model=shape["d_model"], encoder_layers=shape["layers"],
        decoder_layers=shape["layers"], encoder_attention_heads=shape["heads"],
        decoder_attention_heads=shape["heads"], encoder_ffn_dim=shape["ffn"],
        decoder_ffn_dim=shape["ffn"], max_position_embeddings=1024, scale_embedding=True,
        activation_function="relu", pad_token_id=model.token_id(model.pad, vocab),
        bos_token_id=model.token_id("<s>", vocab), eos_token_id=eos,
        decoder_start_token_id=eos)
    torch.manual_seed(0)
    M2M100ForConditionalGeneration(config).eval().save_pretrained(str(directory))


def save_tokenizer(directory: Path, model: RandomModel, vocab: int) -> None:
    """A word-level tokenizer over ``model.tokens(vocab)`` (the systems are fed ids, or
    CTranslate2 these tokens; the exporter and CTranslate2's converter read its vocabulary)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    words = {token: index for index, token in enumerate(model.tokens(vocab))}
    tokenizer = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    specials = {"eos_token": model.eos, "unk_token": "<unk>", "pad_token": model.pad}
    if "<s>" in model.leading:
        specials["bos_token"] = "<s>"
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, **specials).save_pretrained(
        str(directory))
