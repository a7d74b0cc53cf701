"""LibreTranslate's ``/frontend/settings``, filled from this server's limits and models."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.api.libre_files import FILE_FORMATS
from service.api.libretranslate import language_name
from service.api.state import AppState

FRONTEND_TIMEOUT_MS = 500  # LibreTranslate's default pause after typing before translating


class FrontendLanguage(BaseModel):
    """A language code and its English name."""

    code: str
    name: str


class FrontendLanguages(BaseModel):
    """The languages a page starts with."""

    source: FrontendLanguage
    target: FrontendLanguage


class FrontendSettings(BaseModel):
    """LibreTranslate's frontend settings."""

    charLimit: int = Field(description="characters in one request (max_total_chars)")
    frontendTimeout: int = Field(description="milliseconds to wait after typing")
    apiKeys: bool = Field(description="API keys are configured")
    keyRequired: bool = Field(description="a request needs an API key")
    suggestions: bool = Field(description="suggestions are accepted (never here)")
    filesTranslation: bool = Field(description="`/translate_file` is available")
    supportedFilesFormat: list[str] = Field(description="file extensions `/translate_file` takes")
    language: FrontendLanguages


def frontend_settings(state: AppState) -> FrontendSettings:
    """The settings of this server: source ``auto``, target the first served target other
    than English (English when it is the only one)."""
    targets = state.registry.routes().targets()
    target = next((code for code in targets if code != "en"), targets[0] if targets else "en")
    keys = state.keys.enabled
    return FrontendSettings(
        charLimit=state.settings.max_total_chars, frontendTimeout=FRONTEND_TIMEOUT_MS,
        apiKeys=keys, keyRequired=keys, suggestions=False, filesTranslation=True,
        supportedFilesFormat=list(FILE_FORMATS),
        language=FrontendLanguages(source=FrontendLanguage(code="auto", name="Auto Detect"),
                                   target=FrontendLanguage(code=target,
                                                           name=language_name(target))))
