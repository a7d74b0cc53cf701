"""One text's result from the results of its parts (sentences, or an HTML document's runs)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from inference.translator import Alternative, Translation

Render = Callable[[Sequence[str]], str]  # the parts' translations -> the whole text


def combine(render: Render, results: Sequence[Translation]) -> Translation:
    """The whole text rendered with each part's translation, their mean score, ``length``
    when a part was cut, token counts summed; alternative ``i`` renders each part's ``i``-th
    hypothesis (its best where it has fewer), scored by their mean. Without parts the text
    comes back as ``render`` gives it, finish reason ``empty`` (as a blank text)."""
    if not results:
        return Translation(render([]), math.nan, "empty")
    count = max(len(result.alternatives) for result in results)
    alternatives = []
    for index in range(count):
        picks = [result.alternatives[index] if index < len(result.alternatives)
                 else Alternative(result.text, result.score) for result in results]
        alternatives.append(Alternative(render([pick.text for pick in picks]),
                                        mean(pick.score for pick in picks)))
    return Translation(
        render([result.text for result in results]),
        mean(result.score for result in results),
        "length" if any(r.finish_reason == "length" for r in results) else "eos",
        alternatives, truncated=any(result.truncated for result in results),
        source_tokens=sum(result.source_tokens for result in results),
        target_tokens=sum(result.target_tokens for result in results))


def mean(values: Iterable[float]) -> float:
    """The arithmetic mean (exactly rounded)."""
    scores = list(values)
    return math.fsum(scores) / len(scores)
