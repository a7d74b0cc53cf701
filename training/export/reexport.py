"""``python -m training.export.reexport BUNDLE [--cache LAYOUT] [--check N]``: rebuild a
packaged bundle (``python -m training.package``) with the current exporter, e.g. to move it to
another cache layout or opset, when its training run is gone.

A packaged bundle keeps its source as fp16 weights (``weights/``). This loads them and gives
every parameter the exact value the fp32 graphs hold (matched by shape, as stored or
transposed, and by value: fp16 rounding moves a value by about 5e-4 of its size, far less than
distinct tensors differ). ``training.package`` exports from the fp16 copy, so for its bundles
the values are already equal; for graphs exported from an fp32 checkpoint it restores them.
Then it exports fp32 (and int8 when the bundle has an ``int8/``), checks on ``N`` random inputs
that the new fp32 graphs give the same tokens as the old ones (greedy and beam 4), evaluates
every variant on the test split again (int8 outputs move with any change of float order:
dynamic quantization rounds activations), and only then replaces the bundle, keeping its
weights, model card (with a note of the new figures appended) and records.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from service.bundle import GRAPH_FILES, MANIFEST, read_manifest
from service.inference import Translator
from training.errors import UserError, run_cli
from training.export.bundle_writer import base_manifest, write_fp32, write_variant
from training.export.graphs import CACHE_LAYOUTS, DEFAULT_OPSET, plan_for
from training.export.sources import load_source
from training.export.variants import quantize_int8
from training.io import atomic_directory
from training.package import evaluate_and_record

RELATIVE_TOLERANCE = 2e-3  # fp16 rounding is at most 2**-11 (about 4.9e-4) of a value
MIN_AGREEMENT = 0.98  # share of identical outputs old vs new (float sums may flip near-ties)


def graph_tensors(bundle: Path) -> dict[tuple[int, ...], list[np.ndarray]]:
    """Every float32 initializer of the bundle's graphs, and the pieces of fused ones
    (:func:`fused_pieces`), by shape."""
    arrays = [numpy_helper.to_array(init) for name in GRAPH_FILES
              for init in onnx.load(str(bundle / name)).graph.initializer]
    arrays = [array for array in arrays if array.dtype == np.float32]
    widths = {min(a.shape) for a in arrays if a.ndim == 2 and max(a.shape) % min(a.shape) == 0}
    found: dict[tuple[int, ...], list[np.ndarray]] = {}
    for array in arrays:
        for piece in [array, *fused_pieces(array, widths)]:
            found.setdefault(tuple(piece.shape), []).append(piece)
    return found


def fused_pieces(array: np.ndarray, widths: set[int]) -> list[np.ndarray]:
    """The square projections a fused weight ``(n*D, D)`` (or transposed) holds, and the
    ``D``-long pieces of a 1-D array for each square width ``D`` in ``widths`` (its bias):
    ``marian_graphs.FusedLinear`` concatenates projections along their outputs."""
    if array.ndim == 2:
        small, axis = min(array.shape), int(np.argmax(array.shape))
        if array.shape[axis] == small or array.shape[axis] % small:
            return []
        return np.split(array, array.shape[axis] // small, axis=axis)
    if array.ndim != 1:
        return []
    return [piece for width in sorted(widths) if len(array) > width and not len(array) % width
            for piece in np.split(array, len(array) // width)]


def exact_value(value: np.ndarray, candidates: dict[tuple[int, ...], list[np.ndarray]]
                ) -> np.ndarray | None:
    """The graph tensor closest to ``value`` (as stored or transposed) if it is within fp16
    rounding of it, else None."""
    best: tuple[float, np.ndarray] | None = None
    for shape, flip in ((value.shape, False), (value.shape[::-1], True)):
        for array in candidates.get(tuple(shape), []):
            exact = array.T if flip and array.ndim == 2 else array
            if exact.shape != value.shape:
                continue
            distance = float(np.abs(exact - value).max(initial=0.0))
            if best is None or distance < best[0]:
                best = (distance, exact)
    limit = RELATIVE_TOLERANCE * max(1.0, float(np.abs(value).max(initial=0.0)))
    return best[1] if best is not None and best[0] <= limit else None


def restore_exact_weights(module: nn.Module, bundle: Path) -> int:
    """Overwrite ``module``'s parameters and buffers with their fp32 values from ``bundle``'s
    graphs; returns how many were restored, raises if any has no match."""
    candidates = graph_tensors(bundle)
    missing, restored = [], 0
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if not tensor.is_floating_point() or not bool(tensor.any()):
                continue  # zeros are exact in fp16 (and a zero logits bias is not exported)
            exact = exact_value(tensor.detach().float().numpy(), candidates)
            if exact is None:
                missing.append(name)
                continue
            tensor.copy_(torch.from_numpy(np.array(exact, order="C")))  # a writable copy
            restored += 1
    if missing:
        raise UserError(f"{bundle}: no fp32 graph tensor matches {', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''}; re-export from the training run")
    return restored


def random_sources(count: int, vocab: int, eos: int, seed: int = 0) -> list[list[int]]:
    """``count`` random inputs of 3 to 40 tokens (special ids below 4 avoided), eos-ended."""
    rng = np.random.default_rng(seed)
    return [[*rng.integers(4, vocab, int(rng.integers(3, 41))).tolist(), eos]
            for _ in range(count)]


def agreement(old: Path, new: Path, count: int) -> dict[str, float]:
    """Share of identical greedy and beam-4 outputs of the two bundles on random inputs."""
    before, after = Translator.load(old), Translator.load(new)
    sources = random_sources(count, before.manifest.vocab_size,
                             before.manifest.special_tokens["eos"])
    shares = {}
    for beam in (1, 4):
        want = before.translate_ids(sources, beam_size=beam, max_length=64)
        got = after.translate_ids(sources, beam_size=beam, max_length=64)
        shares[f"beam{beam}"] = sum(a == b for a, b in zip(got, want, strict=True)) / count
    return shares


def keep_records(old: Path, new: Path) -> None:
    """Carry the old bundle's recorded metadata into the new ``model.json`` and copy its
    other files and folders (model card, evaluation reports, figures, weights)."""
    old_raw = json.loads((old / MANIFEST).read_text())
    path = new / MANIFEST
    raw: dict[str, Any] = json.loads(path.read_text())
    raw["metadata"] = {**old_raw["metadata"], **raw["metadata"]}
    path.write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n")
    for item in old.iterdir():
        if (new / item.name).exists():
            continue
        if item.is_dir():
            shutil.copytree(item, new / item.name)
        else:
            shutil.copy2(item, new / item.name)


def card_note(cache: str, rows: dict[str, dict[str, Any]]) -> str:
    """Markdown appended to the model card: what changed and the new test figures."""
    lines = ["", f"## Re-exported ({date.today()}, `python -m training.export.reexport`, "
             f"cache layout `{cache}`)", "",
             "Same weights (the values the previous graphs hold); the test "
             "split was evaluated again. Beam-4 BLEU (Segond):", "",
             "| variant | before | after | same tokens as before (random inputs, greedy / "
             "beam 4) |", "|---|---|---|---|"]
    for variant, row in rows.items():
        shares = row["agreement"]
        lines.append(f"| {variant} | {row['bleu_before']} | {row['bleu_after']} | "
                     f"{shares['beam1']:.2f} / {shares['beam4']:.2f} |")
    return "\n".join(lines) + "\n"


def reexport(bundle: Path, cache: str, check: int, data: Path, versions: list[str],
             opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Rebuild ``bundle`` in place (graphs at ``opset``), evaluate every variant again;
    returns the figures."""
    old = read_manifest(bundle)
    if not (bundle / "weights").is_dir():
        raise UserError(f"{bundle} has no weights/ folder: only packaged bundles can be "
                        "re-exported (use `python -m training.export` on the training run)")
    if not (data / "test.jsonl").is_file():
        raise UserError(f"{data}/test.jsonl is missing: run `make data` (the re-exported "
                        "bundles are evaluated again)")
    source = load_source(bundle / "weights")
    restored = restore_exact_weights(source.module, bundle)
    plan = plan_for(source, cache)  # type: ignore[arg-type]
    manifest = base_manifest(source, plan, name=old.name,
                             langs=(old.source_lang, old.target_lang), opset=opset)
    report: dict[str, Any] = {"bundle": str(bundle), "cache": cache, "opset": [old.opset, opset],
                              "restored": restored}
    with atomic_directory(bundle, force=True) as tmp:
        manifest = write_fp32(source, plan, tmp, manifest)
        variants = {"fp32": ""}
        if (bundle / "int8").is_dir():
            write_variant(tmp, tmp / "int8", manifest, "int8", quantize_int8)
            variants["int8"] = "int8"
        for folder in variants.values():
            keep_records(bundle / folder, tmp / folder)
        figures = json.loads((tmp / "figures.json").read_text()) if (
            tmp / "figures.json").is_file() else {}
        for variant, folder in variants.items():
            shares = agreement(bundle / folder, tmp / folder, check)
            if variant == "fp32" and min(shares.values()) < MIN_AGREEMENT:
                # int8 is not held to this: dynamic quantization rounds activations per
                # tensor, so float-order differences change some outputs as int8 itself does
                raise UserError(f"{bundle}: the re-exported fp32 graphs agree with the old ones "
                                f"on only {shares} of {check} inputs; bundle left as is")
            before = figures.get(variant, {}).get("beam4", {}).get("bleu")
            figures[variant] = evaluate_and_record(tmp, variant, data, versions)
            report[variant] = {"agreement": shares, "bleu_before": before,
                               "bleu_after": figures[variant]["beam4"]["bleu"]}
        (tmp / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
        card = tmp / "README.md"
        if card.is_file():
            rows = {v: report[v] for v in variants}
            card.write_text(card.read_text() + card_note(cache, rows))
    return report


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    cli = argparse.ArgumentParser(prog="python -m training.export.reexport", description=__doc__)
    cli.add_argument("bundle", type=Path, help="a packaged bundle (with weights/)")
    cli.add_argument("--cache", choices=CACHE_LAYOUTS, default="in-place")
    cli.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                     help=f"ONNX opset of the new graphs (default {DEFAULT_OPSET})")
    cli.add_argument("--check", type=int, default=200, help="random inputs to compare")
    cli.add_argument("--data", type=Path, default=Path("data/en-fr"),
                     help="prepared data whose test split evaluates the new bundles")
    cli.add_argument("--src-version", default="k", help="test source version")
    cli.add_argument("--ref-version", default="l", help="single-reference target version")
    cli.add_argument("--multi-refs", default="l,o,5", help="multi-reference target versions")
    args = cli.parse_args(argv)
    versions = [args.src_version, args.ref_version, args.multi_refs]
    print(json.dumps(reexport(args.bundle, args.cache, args.check, args.data, versions,
                                 args.opset)))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
