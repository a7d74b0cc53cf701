"""Inference engine: batched greedy and beam search over ONNX Runtime. No web framework here."""

from service.inference.search import Hypothesis, SearchOptions
from service.inference.translator import Alternative, Translation, Translator

__all__ = ["Alternative", "Hypothesis", "SearchOptions", "Translation", "Translator"]
