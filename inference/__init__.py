"""Inference engine: batched greedy and beam search over ONNX Runtime. No web framework here."""

from inference.options import DecodeOptions
from inference.search import Hypothesis
from inference.translator import Alternative, Translation, Translator

__all__ = ["Alternative", "DecodeOptions", "Hypothesis", "Translation", "Translator"]
