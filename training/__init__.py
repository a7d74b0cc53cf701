"""Offline half of the product: corpus -> tokenizer -> training -> evaluation -> export."""
