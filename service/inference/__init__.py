"""Inference engine: batched greedy and beam search over ONNX Runtime. No web framework here."""

from service.inference.options import DecodeOptions
from service.inference.search import Hypothesis
from service.inference.translator import Alternative, Translation, Translator

__all__ = ["Alternative", "DecodeOptions", "Hypothesis", "Translation", "Translator"]
