"""A request without ``beam_size`` gets the checkpoint's ``num_beams`` (recorded at export),
on the native and the LibreTranslate routes, unless the operator set
``TRANSLATE_DEFAULT_BEAM_SIZE``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.service.api.fakes import FakeLoader, MakeClient, write_manifest

BODY = {"text": "hello", "source_lang": "en", "target_lang": "it"}


def with_generation(directory: Path, generation: dict[str, object]) -> None:
    path = write_manifest(directory, tgt="it") / "model.json"
    raw = json.loads(path.read_text())
    raw["metadata"]["generation"] = generation
    path.write_text(json.dumps(raw))


def test_checkpoint_num_beams_is_the_default_and_requests_override(
        make_client: MakeClient, models_dir: Path) -> None:
    with_generation(models_dir / "opus-en-it", {"num_beams": 3, "max_new_tokens": 511})
    loader = FakeLoader()
    client = make_client(loader=loader)
    assert client.post("/translate", json=BODY).status_code == 200
    assert client.post("/translate", json={**BODY, "beam_size": 1}).status_code == 200
    libre = client.post("/libretranslate/translate", json={"q": "good day", "source": "en",
                                                           "target": "it"})
    assert libre.status_code == 200, libre.text
    engine = loader.engines[models_dir / "opus-en-it"]
    assert [options.beam_size for _, options in engine.calls[-3:]] == [3, 1, 3]
    operator = FakeLoader()
    make_client(loader=operator, default_beam_size=2).post("/translate", json=BODY)
    assert operator.engines[models_dir / "opus-en-it"].calls[-1][1].beam_size == 2
