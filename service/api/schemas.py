"""Request and response bodies of the native API (``/translate``, ``/models``, health)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.api.errors import ErrorDetail
from service.api.settings import MIN_TIMEOUT_S

JSON_TYPES = {str: "a string", bool: "a boolean", int: "a number", float: "a number",
              list: "an array", dict: "an object", type(None): "null"}


def check_texts_type(value: Any, name: str) -> Any:
    """A string or a list of strings; otherwise one clear error naming the bad item."""
    kind = JSON_TYPES.get(type(value), type(value).__name__)
    if isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                item_kind = JSON_TYPES.get(type(item), type(item).__name__)
                raise ValueError(f"{name}[{index}] must be a string, not {item_kind}")
    elif not isinstance(value, str):
        raise ValueError(f"{name} must be a string or a list of strings, not {kind}")
    return value


LANG = Field(default=None, min_length=1, max_length=16, description="language code, e.g. `en`")


class TranslateRequest(BaseModel):
    """``POST /translate``: texts, a route (language pair or model) and decoding options."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": ["The cat eats fish.", "Good morning."], "source_lang": "en",
         "target_lang": "fr", "beam_size": 4}]})

    text: str | list[str] = Field(description="one text or a list of texts")
    source_lang: str | None = Field(default=None, min_length=1, max_length=16,
                                    description="language code, e.g. `en`; omitted or `auto`: "
                                    "detected from the text")
    target_lang: str | None = LANG
    model: str | None = Field(default=None, min_length=1, max_length=200,
                              description="explicit model name (see `GET /models`)")
    beam_size: int | None = Field(default=None, ge=1,
                                  description="1 = greedy; default from settings")
    num_hypotheses: int = Field(default=1, ge=1,
                                description="n-best size returned as `alternatives`")
    length_penalty: float = Field(default=1.0, ge=0, le=10, allow_inf_nan=False)
    max_length: int | None = Field(default=None, ge=1,
                                   description="cap on generated tokens per sentence")
    return_scores: bool = Field(default=True, description="false: scores are null")
    timeout: float | None = Field(default=None, ge=MIN_TIMEOUT_S, allow_inf_nan=False,
                                  description=f"deadline in seconds, at least {MIN_TIMEOUT_S} "
                                  "(capped by the server's)")
    format: Literal["text", "html"] = Field(
        default="text", description="`html`: each text is an HTML document whose text is "
        "translated and whose markup is kept (`/translate` only)")

    @field_validator("text", mode="before")
    @classmethod
    def _text_type(cls, value: Any) -> Any:
        return check_texts_type(value, "text")


class AlternativeOut(BaseModel):
    """One n-best entry."""

    text: str
    score: float | None


class TranslationOut(BaseModel):
    """The translation of one input text."""

    text: str
    score: float | None = Field(description="length-normalised log-probability (null when "
                                "scores are off or the text was empty)")
    finish_reason: str = Field(description="`eos`, `length` (cut by max_length) or `empty`")
    alternatives: list[AlternativeOut] = Field(description="n-best, best first")
    truncated: bool = Field(description="a sentence was cut to the model's maximum length")
    source_tokens: int
    target_tokens: int


class Usage(BaseModel):
    """Token counts of the whole request."""

    texts: int
    source_tokens: int
    target_tokens: int


class DetectedSource(BaseModel):
    """The source language found when the request gave none (or ``auto``)."""

    language: str
    confidence: float = Field(ge=0, le=1, description="probability among the served "
                              "source languages that translate into the target")


class TranslateResponse(BaseModel):
    """One translation per input text, in input order."""

    model: str
    source_lang: str
    target_lang: str
    detected_language: DetectedSource | None = Field(
        default=None, description="present when `source_lang` was omitted or `auto`")
    translations: list[TranslationOut]
    usage: Usage


class StreamStart(BaseModel):
    """``event: start`` of ``POST /translate/stream``: the model and what will follow."""

    model: str
    source_lang: str
    target_lang: str
    sentences: int = Field(description="`sentence` events that follow when all goes well")


class StreamSentence(TranslationOut):
    """``event: sentence``: one sentence's translation, sent in order as soon as it and every
    earlier sentence are done; ``text`` and the alternatives carry the same separators as
    ``source``, so a text's events concatenate to its translation."""

    index: int = Field(description="position among all sentences of the request, from 0")
    text_index: int = Field(description="the input text it belongs to (0 for a string)")
    source: str = Field(description="the source sentence with the separators that follow it "
                        "(line breaks, spaces; the first of a text also with those before "
                        "it): a text's events concatenate to the text")


class StreamDone(BaseModel):
    """``event: done``: the last event of a stream that succeeded."""

    model: str
    source_lang: str
    target_lang: str
    translations: list[str] = Field(description="one per input text: the concatenation of "
                                    "its sentence events' texts, as `/translate` answers")
    sentences: int = Field(description="sentence events sent")
    usage: Usage


class StreamError(BaseModel):
    """``event: error``: the last event of a stream that failed after it started."""

    status: int = Field(description="the HTTP status the error would have had, e.g. 504")
    error: ErrorDetail


class LanguageTargets(BaseModel):
    """A language and the languages it is translated into (as LibreTranslate's
    ``/languages`` lists them)."""

    code: str
    targets: list[str]


class ModelInfo(BaseModel):
    """A discovered bundle."""

    name: str
    status: str = Field(description="`pending`, `loading`, `ready` or `failed`")
    architecture: str | None
    source_lang: str | None = Field(description="the source it was exported for")
    target_lang: str | None = Field(description="the target it was exported for")
    languages: list[LanguageTargets] = Field(
        default_factory=list, description="every pair it serves: each of its languages with "
        "the languages it translates it into (a multilingual bundle: any two of its languages)")
    dtype: str | None
    provider: str | None = Field(description="ONNX Runtime execution provider in use")
    default: bool = Field(description="serves at least one of its language pairs by default")
    error: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict,
                                     description="training and evaluation figures (BLEU...)")


class ModelsResponse(BaseModel):
    """``GET /models``."""

    models: list[ModelInfo]


class Liveness(BaseModel):
    """``GET /health/live``."""

    status: str = "alive"


class ReadinessOut(BaseModel):
    """``GET /health/ready``: 200 when ready, 503 with the reason otherwise."""

    ready: bool
    reason: str
    unavailable: dict[str, str] = Field(description="models that failed, with the reason")
