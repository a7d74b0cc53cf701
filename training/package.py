"""``python -m training.package RUN NAME``: turn a training run into a shipped model.

Writes ``models/NAME/``: the fp32 ONNX bundle (what the server loads), ``int8/`` (a complete
dynamic-int8 bundle), ``weights/`` (fp16 safetensors, config and tokenizer: the source the
bundles were exported from, for fine-tuning or re-export), ``eval-*.json`` and a model card
``README.md`` with test-split scores of each variant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from inference.bundle import MANIFEST
from training.average import AVERAGED, REPORT
from training.checkpoint import load_model_dir, save_model_dir
from training.errors import UserError, run_cli
from training.evaluate import main as evaluate_main
from training.export.__main__ import main as export_main
from training.history import (
    HISTORY,
    Point,
    continue_history,
    plot_history,
    read_history,
    run_summary,
    write_history,
)
from training.tokenizer import load_tokenizer


def save_weights(source: Path, weights: Path, manifest: dict[str, Any]) -> None:
    """fp16 weights of the model directory ``source`` (``RUN/best``) with its tokenizer and
    the data languages."""
    model, cfg = load_model_dir(source)
    extra = {"src_lang": manifest["src_lang"], "tgt_lang": manifest["tgt_lang"],
             "weights_dtype": "float16"}
    save_model_dir(model, cfg, weights, extra, dtype=torch.float16)
    load_tokenizer(source).save_pretrained(str(weights))


def evaluate_variant(bundle: Path, data: Path, out: Path, versions: list[str]
                     ) -> dict[str, Any]:
    """Greedy and beam-4 scores of one bundle on the test split (default KJV -> Segond)."""
    src, ref, refs = versions
    if evaluate_main(["--bundle", str(bundle), "--data", str(data), "--beams", "1,4",
                      "--src-version", src, "--ref-version", ref, "--multi-refs", refs,
                      "--out", str(out)]) != 0:
        raise UserError(f"evaluation of {bundle} failed")
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def record_scores(bundle: Path, scores: dict[str, Any]) -> None:
    """Put evaluation figures into model.json's metadata (not covered by the checksums)."""
    path = bundle / MANIFEST
    raw = json.loads(path.read_text())
    raw["metadata"]["evaluation"] = scores
    path.write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n")


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an evaluation report."""
    out = {}
    for beam in ("beam1", "beam4"):
        single, multi = report[beam]["single_reference"], report[beam]["multi_reference"]
        out[beam] = {"bleu": single["bleu"], "chrf": single["chrf"], "rouge_l": single["rouge_l"],
                     "bleu_multi_ref": multi["bleu"], "chrf_multi_ref": multi["chrf"],
                     "seconds": report[beam]["seconds"]}
    out["bleu_signature"] = report["beam4"]["single_reference"]["bleu_signature"]
    return out


def package(source: Path, name: str, root: Path, data: Path, versions: list[str]
            ) -> dict[str, Any]:
    """Weights (of the model directory ``source``), bundles, evaluations; returns the
    figures for the model card."""
    manifest = json.loads((data / "manifest.json").read_text())
    out = root / name
    staging = root / f".{name}.weights"
    save_weights(source, staging, manifest)
    if export_main([str(staging), str(out), "--int8", "--name", name]) != 0:
        raise UserError("export failed")
    staging.rename(out / "weights")
    return {variant: evaluate_and_record(out, variant, data, versions)
            for variant in ("fp32", "int8")}


def evaluate_and_record(root: Path, variant: str, data: Path, versions: list[str]
                        ) -> dict[str, Any]:
    """Evaluate the ``variant`` bundle of a packaged model at ``root`` (``fp32`` is ``root``
    itself), write ``root/eval-<variant>.json``, record the scores in its model.json; returns
    its figures (scores, evaluation wall time, graph size)."""
    bundle = root if variant == "fp32" else root / variant
    started = time.time()
    figures = summary(evaluate_variant(bundle, data, root / f"eval-{variant}.json", versions))
    figures["eval_wall_s"] = round(time.time() - started, 1)
    figures["onnx_mb"] = round(sum(p.stat().st_size for p in bundle.glob("*.onnx")) / 1e6, 1)
    record_scores(bundle, figures)
    return figures


def training_facts(run: Path) -> dict[str, Any]:
    """Steps, wall time and throughput from the run's metrics log and checkpoint."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    dev = [r for r in rows if r["kind"] == "dev"]
    best = max(dev, key=lambda r: r["bleu"]) if dev else {}
    checkpoint = run / "checkpoint.pt"
    minutes = None
    if checkpoint.is_file():
        progress = torch.load(checkpoint, map_location="cpu", weights_only=False)["progress"]
        minutes = round(progress["elapsed"] / 60, 1)
    return {"steps": train[-1]["step"] if train else 0, "train_minutes": minutes,
            "median_tok_s": sorted(r["tok_s"] for r in train)[len(train) // 2] if train else 0,
            "best_dev_bleu_greedy": best.get("bleu"), "best_step": best.get("step")}


def learning_curve(run: Path, config: dict[str, Any], out: Path) -> list[str]:
    """Write ``out/history.jsonl`` and ``out/curve.png`` (this run joined to the runs of the
    model it started from); returns the model card's section."""
    start = config.get("init_from") or ""
    previous = read_history(Path(start).parent / HISTORY) if start else []
    points = continue_history(previous, run / "metrics.jsonl")
    write_history_files(points, out)
    return ["## Learning curve", "",
            "Dev BLEU (greedy, 200 dev verses) against target tokens seen, every run that "
            "trained this model joined.", "", "![learning curve](curve.png)", "",
            *run_summary(points), ""]


def weights_line(source: Path) -> str:
    """What the packaged weights are: the best dev checkpoint, or an average of snapshots with
    the dev scores that chose it."""
    report = source / REPORT
    if source.name != AVERAGED or not report.is_file():
        return "the checkpoint with the best dev BLEU."
    facts = json.loads(report.read_text())
    steps, scores = facts["steps"], facts["dev_bleu_greedy"]
    return (f"the average of the weights at the last {len(steps)} evaluations (steps "
            f"{steps[0]:,}-{steps[-1]:,}, `python -m training.average`): greedy BLEU "
            f"{scores[AVERAGED]} on {facts['dev_size']} dev verses, against {scores['best']} for "
            f"the best single checkpoint (step {facts['best_step']:,}).")


def write_history_files(points: list[Point], out: Path) -> None:
    write_history(out / HISTORY, points)
    plot_history(points, out / "curve.png")


def model_card(name: str, config: dict[str, Any], data: dict[str, Any],
               facts: dict[str, Any], figures: dict[str, Any], curve: list[str]) -> str:
    """Markdown model card."""
    model = config["model"]
    lines = [f"# {name}", "",
             f"{model['arch']} {data['src_lang']}->{data['tgt_lang']} translation model, "
             "trained with `python -m training.train` and packaged with "
             "`python -m training.package`.", "",
             "A Bible-domain demonstration model trained on two CPU cores: it translates "
             "verses in the style of the training versions, not general text. For general "
             "text, export a pretrained checkpoint (OPUS-MT, NLLB) with `python -m "
             "training.export` (README).", "",
             "## Data", "",
             f"- Corpus: {data['source'].get('corpus')}; source versions "
             f"{data['source'].get('src_versions')}, target versions "
             f"{data['source'].get('tgt_versions')}.",
             f"- Examples: {data['counts']}.", f"- Split: {data['split_rule']}.", "",
             "## Hyper-parameters", "", "```yaml", yaml.safe_dump(config, sort_keys=False).strip(),
             "```", "", "## Training", "",
             f"- {facts['steps']} optimizer steps in {facts['train_minutes']} min of training "
             f"(median {facts['median_tok_s']:.0f} target tokens/s) with "
             f"{config.get('threads') or 'all'} torch threads on a {os.cpu_count()}-core CPU "
             "machine.",
             f"- Best greedy dev BLEU {facts['best_dev_bleu_greedy']} at step "
             f"{facts['best_step']}.", f"- Weights: {facts['weights']}", "", *curve,
             "## Test split (KJV source)", "",
             "| variant | decoding | BLEU (Segond) | chrF | ROUGE-L | BLEU (3 refs) | ONNX MB |",
             "|---|---|---|---|---|---|---|"]
    for variant, fig in figures.items():
        for beam in ("beam1", "beam4"):
            row = fig[beam]
            lines.append(f"| {variant} | {beam} | {row['bleu']} | {row['chrf']} | "
                         f"{row['rouge_l']} | {row['bleu_multi_ref']} | {fig['onnx_mb']} |")
    lines += ["", f"BLEU signature: `{figures['fp32']['bleu_signature']}`; multi-reference: "
              "Louis Segond + Ostervald + Darby.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    cli = argparse.ArgumentParser(prog="python -m training.package", description=__doc__)
    cli.add_argument("run", type=Path, help="training run directory (with best/ and config.yaml)")
    cli.add_argument("name", help="model name, e.g. transformer-en-fr")
    cli.add_argument("--weights", choices=("best", AVERAGED), default="best",
                     help="the run's best dev checkpoint, or the average written by "
                          "python -m training.average")
    cli.add_argument("--models", type=Path, default=Path("models"))
    cli.add_argument("--src-version", default="k", help="test source version")
    cli.add_argument("--ref-version", default="l", help="single-reference target version")
    cli.add_argument("--multi-refs", default="l,o,5", help="multi-reference target versions")
    args = cli.parse_args(argv)
    config = yaml.safe_load((args.run / "config.yaml").read_text())
    versions = [args.src_version, args.ref_version, args.multi_refs]
    source = args.run / args.weights
    if not (source / "model_config.json").is_file():
        raise UserError(f"{source} holds no model; run python -m training.average "
                        f"{args.run} first, or package --weights best")
    figures = package(source, args.name, args.models, Path(config["data"]), versions)
    out = args.models / args.name
    (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    data = json.loads((Path(config["data"]) / "manifest.json").read_text())
    curve = learning_curve(args.run, config, out)
    facts = {**training_facts(args.run), "weights": weights_line(source)}
    card = model_card(args.name, config, data, facts, figures, curve)
    (out / "README.md").write_text(card)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
