"""The ``cpu`` image serves an OPUS-MT bundle (sentencepiece tokenizer) mounted at run time
(``-v``), with the texts the engine gives outside the container."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inference.translator import Translator
from tests.checkpoints import sample_sentences
from tests.deploy.conftest import Image, readable_copy
from tests.deploy.containers import http, run_server

pytestmark = pytest.mark.container


def test_container_serves_a_mounted_sentencepiece_bundle(
        cpu_image: Image, opus_mt_bundle: Path, tmp_path: Path) -> None:
    mounted = readable_copy(opus_mt_bundle, tmp_path)
    name = opus_mt_bundle.name
    container = run_server(cpu_image.tag, name=f"s2s-opus-{os.getpid()}",
                           volumes=(f"{mounted}:/models/{name}:ro",))
    texts = sample_sentences(4)
    try:
        container.wait_ready()
        status, body = http(f"{container.base}/translate",
                            {"text": texts, "model": name, "beam_size": 4})
        assert status == 200, body
        assert body["model"] == name
    finally:
        container.remove()
    local = Translator.load(opus_mt_bundle, threads=1).translate(texts, beam_size=4)
    assert [t["text"] for t in body["translations"]] == [t.text for t in local]
