"""An OPUS-MT bundle (sentencepiece tokenizer) served over HTTP: the texts ``generate`` gives."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from fastapi.testclient import TestClient
from transformers import AutoTokenizer

from service.api.app import create_app
from service.api.settings import Settings
from tests.checkpoints import generate_ids, sample_sentences
from tests.service.api.fakes import copy_bundle, wait_ready


@pytest.fixture(scope="module")
def opus_models(opus_mt_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("opus-served")
    copy_bundle(opus_mt_bundle, root, opus_mt_bundle.name)
    return root


def expected_texts(model_dir: Path, texts: list[str], **options: object) -> list[str]:
    """What ``generate`` (with the checkpoint's generation config) and the tokenizer make."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    ids = generate_ids(model_dir, tokenizer(texts)["input_ids"], **options)
    return list(tokenizer.batch_decode(ids, skip_special_tokens=True))


@pytest.mark.parametrize("batching", ["request", "continuous"])
def test_http_translations_are_generates(opus_models: Path, opus_mt_dir: Path,
                                         batching: Literal["request", "continuous"]) -> None:
    texts = sample_sentences(12)
    settings = Settings(models_dir=opus_models, threads=1, max_wait_ms=5, batching=batching)
    got = {}
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        for limit in (40, 4):  # 4: most outputs are cut, where eos is forced
            reply = client.post("/translate", json={
                "text": texts, "source_lang": "en", "target_lang": "fr", "beam_size": 1,
                "max_length": limit})
            assert reply.status_code == 200, reply.text
            assert reply.json()["model"] == "opus-mt-en-fr"  # languages from the checkpoint
            got[limit] = [t["text"] for t in reply.json()["translations"]]
    for limit, texts_out in got.items():
        assert texts_out == expected_texts(opus_mt_dir, texts, num_beams=1,
                                           max_new_tokens=limit)
