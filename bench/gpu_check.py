"""``python -m bench.gpu_check --out DIR``: everything a session with a GPU must verify, in one run.

For each bundle: load it on CUDA with ``require_gpu`` (so a silent CPU fallback is an error),
report the provider, compare its translations with the CPU's (greedy and beam 4), and time
batch 64 and batch 1 with the decoder state on the device (IO binding) and without it (host
round trip of the cache every step), median of ``--repeats``; with ``--continuous``,
saturated continuous batching against request-level batches, the loop's state on the device
and on the host (:func:`check_continuous`). Rows go to stdout and to
``DIR/gpu_check.jsonl``. ``--allow-cpu`` runs the same code on the CPU (a dry run for machines
without a GPU; the tests use it). See ``../shared/gpu/README.md`` for bringing
``onnxruntime-gpu`` to the device machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import onnxruntime as ort

from bench.engines import timed_pass
from bench.saturation import run_loop
from inference import Translator
from inference.session import CPU, CUDA

SENTENCES = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep.",
    "And God said, Let there be light: and there was light.",
    "Blessed are the meek: for they shall inherit the earth.",
    "The LORD is my shepherd; I shall not want.",
    "And he said unto them, Go ye into all the world.",
    "For God so loved the world, that he gave his only begotten Son.",
    "Jesus wept.",
    "And the men of the city went out, and all the people of the land with them.",
    "Thy word is a lamp unto my feet, and a light unto my path.",
    "And it came to pass in those days, that there went out a decree from Caesar Augustus.",
    "Honour thy father and thy mother.",
    "And Moses went up unto God, and the LORD called unto him out of the mountain.",
    "The heavens declare the glory of God; and the firmament sheweth his handywork.",
    "And they went forth, and preached every where.",
    "Let not your heart be troubled: ye believe in God, believe also in me.",
]


def median_seconds(run: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``run`` over ``repeats`` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def load_modes(bundle: Path, providers: list[str]) -> dict[str, Translator]:
    """The bundle on ``providers`` (``require_gpu`` with CUDA): ``"bound"`` with the state on
    the device (IO binding), then ``"unbound"`` with it in host memory."""
    load = partial(Translator.load, bundle, providers=providers, require_gpu=CUDA in providers)
    return {"bound": load(io_binding=True), "unbound": load(io_binding=False)}


def check_bundle(bundle: Path, modes: dict[str, Translator], repeats: int
                 ) -> list[dict[str, Any]]:
    """Provider, agreement with the CPU and timings of one bundle loaded in ``modes``
    (:func:`load_modes`): with the state on the device and without it."""
    on_cpu = Translator.load(bundle, providers=[CPU])
    first = next(iter(modes.values()))
    texts = SENTENCES * 4
    rows = []
    for beam in (1, 4):
        want = [t.text for t in on_cpu.translate(texts, beam_size=beam)]
        got = [t.text for t in first.translate(texts, beam_size=beam)]
        row: dict[str, Any] = {
            "bundle": str(bundle), "provider": first.provider, "beam": beam,
            "same_as_cpu": sum(a == b for a, b in zip(got, want, strict=True)) / len(texts)}
        for batch in (64, 1):
            part = texts[:batch]
            for name, translator in modes.items():
                seconds = median_seconds(partial(translator.translate, part, beam_size=beam),
                                         repeats)
                row[f"{name}_b{batch}_ms"] = round(1000 * seconds, 1)
            if "bound" in modes:
                row[f"bound_speedup_b{batch}"] = round(
                    row[f"unbound_b{batch}_ms"] / row[f"bound_b{batch}_ms"], 2)
        rows.append(row)
    return rows


def check_continuous(bundle: Path, loaded: dict[str, Translator], repeats: int
                     ) -> dict[str, Any]:
    """Saturated continuous batching (``bench.saturation.run_loop``: beam 4, 48 requests in
    flight, encoding during the step) against request-level batches of 48, with the bundle
    ``loaded`` by :func:`load_modes`: the loop with its state on the host and, when the bundle
    allows it, on the device, each with the share of translations equal to request-level's."""
    modes = {"host": loaded["unbound"],
             **({"bound": loaded["bound"]} if "bound" in loaded else {})}
    texts = SENTENCES * 6
    request = modes["host"]
    want = [t.text for t in request.translate(texts, beam_size=4)]
    seconds = median_seconds(partial(timed_pass, lambda batch, beam: request.translate(
        batch, beam_size=beam), texts, 4, 48), repeats)
    row: dict[str, Any] = {"bundle": str(bundle), "check": "continuous",
                           "provider": request.provider, "request_ms": round(1000 * seconds, 1)}
    with ThreadPoolExecutor(1) as encoder:
        for name, translator in modes.items():
            outputs: dict[int, str] = {}
            seconds = median_seconds(
                partial(run_loop, translator, texts, 48, 4, encoder, outputs), repeats)
            row[f"continuous_{name}_ms"] = round(1000 * seconds, 1)
            row[f"{name}_over_request_throughput"] = round(
                row["request_ms"] / row[f"continuous_{name}_ms"], 2)
            row[f"{name}_same_as_request"] = sum(
                outputs.get(i) == text for i, text in enumerate(want)) / len(want)
    return row


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__)
    cli.add_argument("--bundles", default="models/transformer-en-fr,"
                     "models/transformer-en-fr/int8,models/lstm-en-fr")
    cli.add_argument("--out", type=Path, default=Path("runs"))
    cli.add_argument("--repeats", type=int, default=3)
    cli.add_argument("--allow-cpu", action="store_true", help="dry run on the CPU")
    cli.add_argument("--continuous", action="store_true",
                     help="also time saturated continuous batching against request-level")
    args = cli.parse_args(argv)
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        preload()  # CUDA and cuDNN from the machine's pip packages (onnxruntime-gpu >= 1.21)
    available = ort.get_available_providers()
    header = {"onnxruntime": ort.__version__, "available": available}
    print(json.dumps(header), flush=True)
    if CUDA not in available and not args.allow_cpu:
        print(f"error: {CUDA} is not available in this onnxruntime build; install "
              "onnxruntime-gpu (../shared/gpu/README.md) or pass --allow-cpu", file=sys.stderr)
        return 2
    providers = [CUDA, CPU] if CUDA in available else [CPU]
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "gpu_check.jsonl").open("w") as out:
        out.write(json.dumps(header) + "\n")
        for bundle in args.bundles.split(","):
            modes = load_modes(Path(bundle), providers)
            rows = check_bundle(Path(bundle), modes, args.repeats)
            if args.continuous:
                rows.append(check_continuous(Path(bundle), modes, args.repeats))
            for row in rows:
                print(json.dumps(row), flush=True)
                out.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
