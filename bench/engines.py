"""``python -m bench.engines``: this engine vs transformers ``generate`` vs CTranslate2,
side by side on the same weights (issue 4's harness).

Setting 1 ("forced"): a randomly initialised model (``--model``: a Marian of OPUS-MT shape, or
an M2M100 with NLLB-200's 256k vocabulary, :mod:`bench.random_models`), 64 source sentences of
10-40 tokens, every system forced to emit exactly 32 tokens (an M2M100's target language token
first among them); greedy/beam 4 x batch 64/batch 1.
Each system runs in its own subprocess (same thread count) so peak memory is its own.
Prints JSON lines and writes them to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench.random_models import MODELS, OPUS, RandomModel
from inference.bundle import BundleError, read_manifest

Item = TypeVar("Item")  # one input to translate: token ids or a text
T = TypeVar("T")
# A system as a function (batch of source ids, beam) -> each output's length in tokens, its
# forced target prefix included
Runner = Callable[[list[list[int]], int], list[int]]

SYSTEMS = ["engine-fp32", "engine-int8", "generate", "ct2-float32", "ct2-int8"]
# also accepted by --systems: engine-fp32-bound, engine-int8-bound (IO binding over CPU
# OrtValues), engine-fp32-nospin, engine-int8-nospin (the decoder's threads sleep between
# steps; every other engine system lets them spin, the default)
# the M2M100 comparison is against CTranslate2; generate, 20x slower on the quick model, is opt-in
DEFAULT_SYSTEMS = {"opus": SYSTEMS, "m2m100-256k": [s for s in SYSTEMS if s != "generate"]}
SETTINGS = "1x64,1x1,4x64,4x1"  # BEAMxBATCH: greedy/beam 4 x batch 64/1
FORCED = 32


def prepare(work: Path, model: RandomModel, quick: bool) -> None:
    """Model, our fp32/int8 bundles and the CTranslate2 conversion (cached in ``work``)."""
    model_dir, ct2 = work / model.arch, work / "ct2"
    if not model_dir.exists():
        model.build(model_dir, quick)
    bundle = work / "bundle"
    if not bundle.exists() or stale(bundle):
        from training.export.__main__ import main as export

        export([str(model_dir), str(bundle), "--int8", "--src-lang", "xx", "--tgt-lang", "yy",
                "--force"])
    if not ct2.exists():
        import ctranslate2

        ctranslate2.converters.TransformersConverter(str(model_dir)).convert(str(ct2))


def stale(bundle: Path) -> bool:
    """Whether a cached bench bundle was exported differently from what the exporter writes
    now (bundle format, opset, form of the graphs)."""
    from training.export.graphs import DEFAULT_OPSET, EXPORT_REVISION

    try:
        manifest = read_manifest(bundle)
    except BundleError:
        return True
    return (manifest.opset != DEFAULT_OPSET
            or manifest.metadata.get("export_revision") != EXPORT_REVISION)



def print_rows(rows: list[dict], out: Path | None) -> None:
    """Print ``rows`` as JSON lines, and write them to ``out`` where given."""
    lines = [json.dumps(row) for row in rows]
    print("\n".join(lines))
    if out:
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")

def runner(system: str, work: Path, threads: int, model: RandomModel, vocab: int) -> Runner:
    """``system`` over the model in ``work``, forced to FORCED tokens."""
    prefix = model.target_prefix(vocab)
    if system.startswith("engine"):
        from inference import Translator

        path = work / "bundle" / ("int8" if "int8" in system else "")
        return forced_ids(Translator.load(path, threads=threads, max_batch_tokens=1 << 20,
                                          io_binding=system.endswith("-bound"),
                                          decoder_spinning=not system.endswith("-nospin")),
                          prefix)
    if system == "generate":
        import torch
        from transformers import AutoModelForSeq2SeqLM

        torch.set_num_threads(threads)
        checkpoint = AutoModelForSeq2SeqLM.from_pretrained(str(work / model.arch)).eval()
        return lambda batch, beam: _generate(checkpoint, batch, beam, prefix)
    return _ct2_runner(system, work, threads, model.tokens(vocab), prefix)


def _ct2_runner(system: str, work: Path, threads: int, tokens: list[str], prefix: list[int]
                ) -> Runner:
    import ctranslate2

    compute = system.split("-", 1)[1]
    translator = ctranslate2.Translator(str(work / "ct2"), device="cpu", compute_type=compute,
                                        intra_threads=threads, inter_threads=1)
    target = [tokens[t] for t in prefix]

    def translate(batch: list[list[int]], beam: int) -> list[int]:
        results = translator.translate_batch(
            [[tokens[t] for t in ids] for ids in batch], beam_size=beam,
            target_prefix=[target] * len(batch) if target else None,
            min_decoding_length=FORCED, max_decoding_length=FORCED, max_batch_size=len(batch))
        return [len(result.hypotheses[0]) for result in results]

    return translate


def forced_ids(translator: Any, prefix: list[int] | None = None) -> Runner:
    """This engine's ``Translator`` forced to FORCED tokens, ``prefix`` (the target language
    token of an M2M100) forced first in every row."""
    first = list(prefix or [])

    def translate(batch: list[list[int]], beam: int) -> list[int]:
        outputs = translator.translate_ids(batch, beam_size=beam, min_length=FORCED,
                                           max_length=FORCED,
                                           target_prefix=[first] * len(batch) if first else None)
        return [len(first) + len(tokens) for tokens in outputs]

    return translate


def parse_settings(text: str) -> list[tuple[int, int]]:
    """``"4x64,1x1"`` -> ``[(beam 4, batch 64), (beam 1, batch 1)]``."""
    settings = []
    for part in text.split(","):
        beam, _, batch = part.partition("x")
        if not (beam.isdigit() and batch.isdigit() and int(beam) > 0 and int(batch) > 0):
            raise SystemExit(f"--settings: {part!r} is not BEAMxBATCH (e.g. 4x64)")
        settings.append((int(beam), int(batch)))
    return settings


def setting_name(beam: int, batch: int) -> str:
    """``greedy b64``, ``beam4 b1``: how result rows name a setting."""
    return f"{'greedy' if beam == 1 else f'beam{beam}'} b{batch}"


def rotated(items: list[T], turn: int) -> list[T]:
    """``items`` starting at ``turn`` (mod their count): each one runs first in its turn,
    so no system always runs right after the same other one."""
    start = turn % len(items)
    return items[start:] + items[:start]


def timed_pass(translate: Callable[[list[Item], int], Any], inputs: list[Item],
               beam: int, batch_size: int) -> float:
    """Seconds to translate ``inputs`` in batches of ``batch_size``."""
    started = time.perf_counter()
    for start in range(0, len(inputs), batch_size):
        translate(inputs[start : start + batch_size], beam)
    return time.perf_counter() - started


def _generate(model: Any, batch: list[list[int]], beam: int, prefix: list[int]) -> list[int]:
    """``generate`` on right-padded ids; each output's length after the decoder start."""
    import torch

    width = max(map(len, batch))
    pad = model.config.pad_token_id
    ids = torch.full((len(batch), width), pad)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq)
    forced = {"forced_bos_token_id": prefix[0]} if prefix else {}
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=(ids != pad).long(), num_beams=beam,
                             min_new_tokens=FORCED, max_new_tokens=FORCED, do_sample=False,
                             **forced)
    return (out[:, 1:] != pad).sum(dim=1).tolist()


def measure(system: str, work: Path, threads: int, repeats: int, model: RandomModel,
            quick: bool, settings: list[tuple[int, int]]) -> list[dict]:
    """Tokens/s of each setting (median over repeats) in this process, and the output lengths
    of the warm-up pass."""
    vocab = model.sizes(quick)["vocab"]
    translate = runner(system, work, threads, model, vocab)
    data = model.sources(vocab)
    rows = []
    for beam, batch_size in settings:
        inputs = data if batch_size > 1 else data[:8]
        lengths = translate(inputs[:2], beam)  # warm-up
        times = [timed_pass(translate, inputs, beam, batch_size) for _ in range(repeats)]
        rows.append({"system": system, "model": model.name,
                     "setting": setting_name(beam, batch_size), "threads": threads,
                     "tokens_per_s": round(len(inputs) * FORCED / statistics.median(times), 1),
                     "repeats": repeats, "output_lengths": sorted(set(lengths))})
    return [{**row, "peak_rss_mb": round(peak_rss_mb())} for row in rows]


def median_rows(measured: list[dict], rounds: int) -> list[dict]:
    """One row per system and setting: the median tokens/s over rounds (``tokens_per_s_all``
    keeps each round's), the highest peak memory."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in measured:
        groups.setdefault((row["system"], row["setting"]), []).append(row)
    return [{**rows[0], "tokens_per_s_all": [r["tokens_per_s"] for r in rows],
             "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in rows), 1),
             "rounds": rounds, "peak_rss_mb": max(r["peak_rss_mb"] for r in rows)}
            for rows in groups.values()]


def peak_rss_mb() -> float:
    """This process's peak resident memory. (Not ru_maxrss: Linux carries that over exec from
    the parent, which here held the exported model.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    cli = argparse.ArgumentParser(prog="python -m bench.engines", description=__doc__)
    cli.add_argument("--model", choices=sorted(MODELS), default=OPUS.name)
    cli.add_argument("--work", type=Path,
                     help="cache of the model, bundles and conversion (default: "
                     "runs/bench-engines, runs/bench-engines-MODEL for another model)")
    cli.add_argument("--threads", type=int, default=2)
    cli.add_argument("--repeats", type=int, default=1, help="timed passes per round")
    cli.add_argument("--rounds", type=int, default=3,
                     help="rounds over all systems, each first in turn (this shared machine "
                     "drifts: running one system after another credited the drift to the "
                     "systems)")
    cli.add_argument("--quick", action="store_true", help="tiny model: checks the harness")
    cli.add_argument("--systems", help="comma-separated (default: all but generate for "
                     f"m2m100-256k; {','.join(SYSTEMS)} for opus)")
    cli.add_argument("--settings", default=SETTINGS, help="BEAMxBATCH, comma-separated")
    cli.add_argument("--only", help=argparse.SUPPRESS)  # internal: run one system here
    cli.add_argument("--out", type=Path)
    return cli


def main(argv: list[str] | None = None) -> int:
    """Prepare once, then run each system in a fresh subprocess; print and save JSON lines."""
    args = parser().parse_args(argv)
    model, settings = MODELS[args.model], parse_settings(args.settings)
    work = args.work or Path("runs/bench-engines" + ("" if model is OPUS else f"-{model.name}"))
    if args.only:
        for row in measure(args.only, work, args.threads, args.repeats, model, args.quick,
                           settings):
            print(json.dumps(row))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    prepare(work, model, args.quick)
    measured: list[dict] = []
    systems = args.systems.split(",") if args.systems else DEFAULT_SYSTEMS[model.name]
    for turn in range(args.rounds):
        for system in rotated(systems, turn):
            command = [sys.executable, "-m", "bench.engines", "--only", system, "--work",
                       str(work), "--model", model.name, "--threads", str(args.threads),
                       "--repeats", str(args.repeats), "--settings", args.settings,
                       *(["--quick"] if args.quick else [])]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            measured += [json.loads(line) for line in done.stdout.splitlines()
                         if line.startswith("{")]
    rows = median_rows(measured, args.rounds)
    for row in rows:
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
