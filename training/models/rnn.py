"""RNN translation model: bidirectional LSTM/GRU encoder, attention decoder with input feeding.

Shapes: B batch, S source length, T target length, E embedding, H encoder hidden per direction,
D = 2H decoder hidden, L layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.models.config import ModelConfig
from training.models.protocol import State


class Attention(nn.Module):
    """Luong (general) or Bahdanau (additive) attention with a padding mask."""

    def __init__(self, dim: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.query = nn.Linear(dim, dim, bias=False)
        if kind == "bahdanau":
            self.key = nn.Linear(dim, dim, bias=False)
            self.energy = nn.Linear(dim, 1, bias=False)

    def forward(self, query: Tensor, memory: Tensor, mask: Tensor) -> Tensor:
        """query ``(B, D)``, memory ``(B, S, D)``, mask ``(B, S)`` -> context ``(B, D)``."""
        if self.kind == "bahdanau":
            scores = self.energy(torch.tanh(self.query(query)[:, None] + self.key(memory)))[..., 0]
        else:
            scores = torch.bmm(memory, self.query(query)[:, :, None])[..., 0]
        scores = scores.masked_fill(mask == 0, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights[:, None], memory)[:, 0]


class RNNSeq2Seq(nn.Module):
    """Attention encoder-decoder; the state keeps the batch on axis 0 throughout."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        cell = nn.LSTM if cfg.arch == "lstm" else nn.GRU
        hidden, dim = cfg.hidden_size, 2 * cfg.hidden_size
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        sizes = [cfg.d_model] + [dim] * (cfg.layers - 1)
        self.forward_rnns = nn.ModuleList(cell(size, hidden, batch_first=True) for size in sizes)
        self.backward_rnns = nn.ModuleList(cell(size, hidden, batch_first=True) for size in sizes)
        self.bridge = nn.Linear(dim, cfg.layers * dim)
        self.decoder = cell(cfg.d_model + dim, dim, cfg.layers, batch_first=True,
                            dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.attention = Attention(dim, cfg.attention)
        self.combine = nn.Linear(2 * dim, dim)
        self.out = nn.Linear(dim, cfg.vocab_size)
        if cfg.tie_embeddings:
            if dim != cfg.d_model:
                raise ValueError(f"tie_embeddings needs 2 * hidden_size == d_model "
                                 f"({dim} != {cfg.d_model}); set model.tie_embeddings=false")
            self.out.weight = self.embed.weight
        self.drop = nn.Dropout(cfg.dropout)
        self.is_lstm = cfg.arch == "lstm"

    def _bidirectional(self, x: Tensor, reverse: Tensor) -> Tensor:
        """Stacked bidirectional RNN that ignores padding without packing (exports to ONNX):
        the backward RNN reads each row reversed within its length. ``(B, S, E)`` -> ``(B, S, D)``.
        """
        for layer, (fwd, bwd) in enumerate(zip(self.forward_rnns, self.backward_rnns,
                                               strict=True)):
            if layer:
                x = self.drop(x)
            ahead, _ = fwd(x)
            back, _ = bwd(x.gather(1, reverse.expand(-1, -1, x.size(2))))
            back = back.gather(1, reverse.expand(-1, -1, back.size(2)))
            x = torch.cat([ahead, back], dim=-1)
        return x

    def encode(self, src_ids: Tensor, src_mask: Tensor) -> State:
        """State: memory ``(B, S, D)``, mask ``(B, S)``, h (and c) ``(B, L, D)``, feed ``(B, D)``.

        The decoder starts from ``tanh(W [h_fwd(last); h_bwd(first)])``, c from zeros.
        """
        lengths = src_mask.sum(1, keepdim=True)  # (B, 1)
        steps = torch.arange(src_ids.size(1), device=src_ids.device)[None]  # (1, S)
        reverse = torch.where(steps < lengths, lengths - 1 - steps, steps)[..., None]  # (B, S, 1)
        memory = self._bidirectional(self.drop(self.embed(src_ids)), reverse)
        memory = memory * src_mask[..., None].to(memory.dtype)
        half = memory.size(2) // 2
        last = (lengths - 1)[..., None].expand(-1, 1, half)  # (B, 1, H)
        summary = torch.cat([memory[..., :half].gather(1, last)[:, 0], memory[:, 0, half:]], -1)
        batch, layers = src_ids.size(0), self.cfg.layers
        h = torch.tanh(self.bridge(summary)).view(batch, layers, -1)
        state: State = {"memory": memory, "src_mask": src_mask, "h": h,
                        "feed": memory.new_zeros(batch, memory.size(2))}
        if self.is_lstm:
            state["c"] = torch.zeros_like(h)
        return state

    def _decode_step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One step: ``(B,)`` tokens -> attentional hidden ``(B, D)`` and new state."""
        inputs = torch.cat([self.drop(self.embed(tokens)), state["feed"]], dim=-1)[:, None]
        h0 = state["h"].transpose(0, 1).contiguous()
        if self.is_lstm:
            out, (h, c) = self.decoder(inputs, (h0, state["c"].transpose(0, 1).contiguous()))
        else:
            out, h = self.decoder(inputs, h0)
        query = out[:, 0]
        context = self.attention(query, state["memory"], state["src_mask"])
        feed = torch.tanh(self.combine(torch.cat([query, context], dim=-1)))
        new = {**state, "h": h.transpose(0, 1), "feed": feed}
        if self.is_lstm:
            new["c"] = c.transpose(0, 1)
        return self.drop(feed), new

    def forward(self, src_ids: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits ``(B, T, vocab)``."""
        state = self.encode(src_ids, src_mask)
        outputs = []
        for t in range(tgt_in.size(1)):
            hidden, state = self._decode_step(tgt_in[:, t], state)
            outputs.append(hidden)
        return self.out(torch.stack(outputs, dim=1))

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """Log-probs ``(B, vocab)`` for the next token, and the new state."""
        hidden, state = self._decode_step(tokens, state)
        return torch.log_softmax(self.out(hidden).float(), dim=-1), state

    def reorder(self, state: State, index: Tensor) -> State:
        """Gather rows of every state tensor on axis 0."""
        return {name: value.index_select(0, index) for name, value in state.items()}
