"""Training-time greedy and beam decoding in torch, over the model protocol.

These are the references the ONNX engine is checked against; they favour clarity over speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from training.models.protocol import Seq2SeqModel


@torch.no_grad()
def greedy_decode(model: Seq2SeqModel, src_ids: Tensor, src_mask: Tensor, *, start_id: int,
                  eos_id: int, max_len: int) -> list[list[int]]:
    """Greedy ids (without start, eos kept off) for ``(B, S)`` inputs; finished rows leave."""
    batch = src_ids.size(0)
    state = model.encode(src_ids, src_mask)
    alive = torch.arange(batch)
    tokens = torch.full((batch,), start_id, dtype=torch.long)
    outputs: list[list[int]] = [[] for _ in range(batch)]
    for _ in range(max_len):
        log_probs, state = model.step(tokens, state)
        tokens = log_probs.argmax(-1)
        keep = []
        for row, (original, token) in enumerate(zip(alive.tolist(), tokens.tolist(), strict=True)):
            if token == eos_id:
                continue
            outputs[original].append(token)
            keep.append(row)
        if not keep:
            break
        if len(keep) < len(alive):
            index = torch.tensor(keep)
            state, alive, tokens = model.reorder(state, index), alive[index], tokens[index]
    return outputs


@dataclass
class _Hypotheses:
    """Finished hypotheses of one input: (normalised score, ids)."""

    items: list[tuple[float, list[int]]]

    def worst(self) -> float:
        return min(score for score, _ in self.items)


@torch.no_grad()
def beam_decode(model: Seq2SeqModel, src_ids: Tensor, src_mask: Tensor, *, beam: int,
                start_id: int, eos_id: int, max_len: int, length_penalty: float = 1.0,
                ) -> list[list[int]]:
    """Best beam hypothesis per input (at most ``max_len`` ids, eos off).

    Score = sum of log-probs / (length incl. eos) ** length_penalty.
    """
    batch = src_ids.size(0)
    state = model.reorder(model.encode(src_ids, src_mask),
                          torch.arange(batch).repeat_interleave(beam))
    scores = torch.full((batch, beam), float("-inf"))
    scores[:, 0] = 0.0
    seqs: list[list[int]] = [[] for _ in range(batch * beam)]
    tokens = torch.full((batch * beam,), start_id, dtype=torch.long)
    finished = [_Hypotheses([]) for _ in range(batch)]
    done = [False] * batch
    for t in range(max_len + 1):  # at most max_len tokens, then eos
        log_probs, state = model.step(tokens, state)
        if t == max_len:  # force every beam to end
            forced = torch.full_like(log_probs, float("-inf"))
            forced[:, eos_id] = log_probs[:, eos_id]
            log_probs = forced
        vocab = log_probs.size(-1)
        cand = (scores.view(-1, 1) + log_probs).view(batch, beam * vocab)
        top_scores, top_index = cand.topk(2 * beam, dim=1)
        new_rows, new_scores, new_tokens, new_seqs = [], [], [], []
        for b in range(batch):
            picked = 0
            for score, flat in zip(top_scores[b].tolist(), top_index[b].tolist(), strict=True):
                row, token = b * beam + flat // vocab, flat % vocab
                if done[b] or picked == beam:
                    break
                if score == float("-inf"):
                    continue
                if token == eos_id:
                    normed = score / ((len(seqs[row]) + 1) ** length_penalty)
                    finished[b].items.append((normed, list(seqs[row])))
                    continue
                new_rows.append(row)
                new_scores.append(score)
                new_tokens.append(token)
                new_seqs.append([*seqs[row], token])
                picked += 1
            while picked < beam:  # row finished: pad with dead beams
                new_rows.append(b * beam)
                new_scores.append(float("-inf"))
                new_tokens.append(eos_id)
                new_seqs.append([])
                picked += 1
            best_alive = top_scores[b, 0].item() / ((t + 2) ** length_penalty)
            if len(finished[b].items) >= beam and best_alive < finished[b].worst():
                done[b] = True
        if all(done):
            break
        state = model.reorder(state, torch.tensor(new_rows))
        scores = torch.tensor(new_scores).view(batch, beam)
        tokens, seqs = torch.tensor(new_tokens), new_seqs
    return [max(h.items)[1] if h.items else [] for h in finished]
