"""Quality metrics (sacreBLEU BLEU/chrF, ROUGE-L) and the training-curve plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sacrebleu
from rouge_score import rouge_scorer


def corpus_scores(hypotheses: list[str], references: list[list[str]]) -> dict[str, Any]:
    """BLEU and chrF (with signatures) and ROUGE-L F1 against one or more reference streams.

    ``references[k][i]`` is the k-th reference of sentence i (sacreBLEU's layout).
    """
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(hypotheses, references)
    chrf_score = chrf.corpus_score(hypotheses, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = [
        max(scorer.score(ref[i], hyp)["rougeL"].fmeasure for ref in references)
        for i, hyp in enumerate(hypotheses)
    ]
    return {
        "bleu": round(bleu_score.score, 2), "bleu_signature": str(bleu.get_signature()),
        "chrf": round(chrf_score.score, 2), "chrf_signature": str(chrf.get_signature()),
        "rouge_l": round(100 * sum(rouge) / max(1, len(rouge)), 2),
        "sentences": len(hypotheses), "references": len(references),
    }


def plot_curves(metrics_path: Path, png_path: Path) -> None:
    """Loss and dev-BLEU against optimizer steps, from the JSONL metrics log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
    train = [r for r in rows if r["kind"] == "train"]
    dev = [r for r in rows if r["kind"] == "dev"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot([r["step"] for r in train], [r["loss"] for r in train])
    left.set(xlabel="step", ylabel="train loss (label-smoothed CE)")
    right.plot([r["step"] for r in dev], [r["bleu"] for r in dev], marker="o")
    right.set(xlabel="step", ylabel="dev BLEU (greedy)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)
