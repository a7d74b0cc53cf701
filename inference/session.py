"""ONNX Runtime sessions with deliberate options and honest provider reporting."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import onnxruntime as ort

log = logging.getLogger(__name__)
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


class ProviderError(RuntimeError):
    """A GPU was required but is not usable."""


def resolve_providers(requested: list[str] | None) -> list[str]:
    """``None`` means CUDA when this onnxruntime build offers it, else the CPU."""
    if requested:
        return list(requested)
    return [CUDA, CPU] if CUDA in ort.get_available_providers() else [CPU]


def session_options(threads: int | None, spinning: bool = False) -> ort.SessionOptions:
    """All graph optimizations, the memory arena and patterns on, sequential execution;
    intra-op threads spin between calls only with ``spinning``."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = True
    options.log_severity_level = 3
    # Two spinning pools take the cores from each other and from the search and HTTP loop, so
    # the encoder's pool always sleeps; the decoder's alone spinning wins (docs/performance.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def create_session(path: Path, providers: list[str], threads: int | None,
                   require_gpu: bool, model: bytes | None = None, spinning: bool = False
                   ) -> ort.InferenceSession:
    """A session on the first usable provider (over ``model`` bytes when given, else the file
    ``path``); a silent CUDA fallback becomes a warning, or a :class:`ProviderError` with
    ``require_gpu``."""
    session = ort.InferenceSession(model if model is not None else str(path),
                                   session_options(threads, spinning), providers=providers)
    active = session.get_providers()[0]
    wanted_gpu = CUDA in providers or require_gpu
    if wanted_gpu and active != CUDA:
        message = (f"{path.name}: CUDA was requested but ONNX Runtime runs on {active} "
                   f"(available: {ort.get_available_providers()}); install onnxruntime-gpu with "
                   "its CUDA/cuDNN libraries, or ask for the CPU")
        if require_gpu:
            raise ProviderError(message)
        log.warning(message)
    return session


def with_required_input(path: Path, name: str) -> bytes:
    """The model at ``path`` with the initializer ``name`` removed, so that the graph input of
    that name must be fed: IO binding cannot bind an input that has a default."""
    try:
        onnx = importlib.import_module("onnx")
    except ImportError:
        raise ImportError("IO binding of this bundle needs the `onnx` package: install it "
                          "(`pip install onnx`, part of the `gpu` extra)") from None
    model = onnx.load(str(path))
    kept = [init for init in model.graph.initializer if init.name != name]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    data: bytes = model.SerializeToString()
    return data
