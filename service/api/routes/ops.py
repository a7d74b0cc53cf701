"""``GET /models``, ``/health/live``, ``/health/ready`` and ``/metrics``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from inference.languages import Languages
from service.api.errors import responses
from service.api.metrics import CONTENT_TYPE
from service.api.registry import ModelEntry
from service.api.schemas import (
    LanguageTargets,
    Liveness,
    ModelInfo,
    ModelsResponse,
    ReadinessOut,
)
from service.api.security import require_key, require_key_for_ops
from service.api.state import AppState, get_state

router = APIRouter()
ops = [Depends(require_key_for_ops)]
State = Annotated[AppState, Depends(get_state)]


def model_info(entry: ModelEntry, default: bool) -> ModelInfo:
    """What ``/models`` says about one bundle."""
    manifest, engine = entry.manifest, entry.engine
    return ModelInfo(
        name=entry.name, status=entry.status, error=entry.error, default=default,
        architecture=manifest.architecture if manifest else None,
        source_lang=manifest.source_lang if manifest else None,
        target_lang=manifest.target_lang if manifest else None,
        languages=language_targets(entry.languages) if manifest else [],
        dtype=manifest.dtype if manifest else None,
        provider=engine.provider if engine else None,
        metadata=dict(manifest.metadata) if manifest else {})


def language_targets(languages: Languages) -> list[LanguageTargets]:
    """Each language of a bundle with the languages it translates it into."""
    codes = sorted({*languages.sources, *languages.targets})
    return [LanguageTargets(code=code, targets=languages.targets_of(code)) for code in codes]


@router.get("/models", response_model=ModelsResponse, tags=["models"],
            dependencies=[Depends(require_key)], responses=responses(401))
async def list_models(state: State) -> ModelsResponse:
    """Every discovered bundle: languages, dtype, provider, quality figures and status."""
    defaults = state.registry.routes().defaults()
    return ModelsResponse(models=[model_info(entry, entry.name in defaults)
                                  for entry in state.registry.entries.values()])


@router.get("/health/live", response_model=Liveness, tags=["health"], dependencies=ops,
            responses=responses(401))
async def live() -> Liveness:
    """The process is up and answering."""
    return Liveness()


@router.get("/health/ready", response_model=ReadinessOut, tags=["health"], dependencies=ops,
            responses={503: {"model": ReadinessOut, "description": "not ready, with the reason"},
                       **responses(401)})
async def ready(state: State) -> JSONResponse:
    """200 once every required model is loaded and warmed up; 503 with the reason while
    loading, when a required model failed, and during shutdown."""
    answer = state.lifecycle.readiness(state.registry, state.settings)
    state.metrics.ready.set(1 if answer.ready else 0)
    body = ReadinessOut(ready=answer.ready, reason=answer.reason,
                        unavailable=answer.unavailable)
    return JSONResponse(body.model_dump(), status_code=200 if answer.ready else 503)


@router.get("/metrics", tags=["health"], dependencies=ops, response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text"},
                       **responses(401)})
async def metrics(state: State) -> Response:
    """Prometheus metrics."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
