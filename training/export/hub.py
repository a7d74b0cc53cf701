"""SRC given as a Hugging Face hub id (``Helsinki-NLP/opus-mt-en-fr``): the checkpoint's
files from the local hub cache, downloaded into it first where the network allows."""

from __future__ import annotations

import re
from pathlib import Path

from training.errors import UserError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name
# Weights of other frameworks that some hub repositories also hold: never needed here
OTHER_FRAMEWORKS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "*.tflite", "*.mlmodel"]


def resolve_source(text: str) -> Path:
    """A local path as given; an ``owner/name`` that is no local path from the hub."""
    path = Path(text)
    if path.exists() or not HUB_ID.match(text):
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id=text, ignore_patterns=OTHER_FRAMEWORKS))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{text} is no local directory and the Hugging Face hub cannot give it "
                        f"({reason}); download it where the network allows and pass its "
                        "directory") from None
