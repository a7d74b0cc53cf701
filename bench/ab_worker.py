"""One system of ``bench.engines`` loaded in a checkout, timing passes on request: the worker
``bench.commits_ab`` starts in each version's tree (``python -P bench/ab_worker.py``, the
tree's root first on ``PYTHONPATH``, so ``bench.engines`` and the engine are that version's).

Arguments: SYSTEM WORK THREADS [--quick]. Prints ``{"ready": true}`` once loaded; then for each
line ``[beam, batch]`` on stdin, one pass over setting 1's inputs (64 sentences at batch 64, the
first 8 at batch 1; forced to 32 tokens) after a warm-up on the first request of a setting, and
prints ``{"tokens_per_s": ...}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def load(system: str, work: Path, threads: int, quick: bool) -> tuple[Any, list[list[int]]]:
    """This tree's runner of ``system`` on the OPUS-shape model and its source ids, through
    whichever ``bench.engines`` interface the tree has."""
    from bench import engines

    try:
        from bench.random_models import OPUS
    except ImportError:  # a tree whose bench.engines builds the OPUS-shape model itself
        old: Any = engines
        return (old.runner(system, work, threads),
                old.sources(old.opus_shape(quick)["vocab"]))
    vocab = OPUS.sizes(quick)["vocab"]
    return engines.runner(system, work, threads, OPUS, vocab), OPUS.sources(vocab)


def main(argv: list[str]) -> int:
    from bench.engines import FORCED, timed_pass

    system, work, threads, quick = argv[0], Path(argv[1]), int(argv[2]), "--quick" in argv
    translate, data = load(system, work, threads, quick)
    warm: set[tuple[int, int]] = set()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        beam, batch = json.loads(line)
        inputs = data if batch > 1 else data[:8]
        if (beam, batch) not in warm:
            translate(inputs[:2], beam)
            warm.add((beam, batch))
        seconds = timed_pass(translate, inputs, beam, batch)
        print(json.dumps({"tokens_per_s": round(len(inputs) * FORCED / seconds, 1)}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
