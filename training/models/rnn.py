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
        self.encoder = cell(cfg.d_model, hidden, cfg.layers, batch_first=True, bidirectional=True,
                            dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.decoder = cell(cfg.d_model + dim, dim, cfg.layers, batch_first=True,
                            dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.attention = Attention(dim, cfg.attention)
        self.combine = nn.Linear(2 * dim, dim)
        self.out = nn.Linear(dim, cfg.vocab_size)
        self.drop = nn.Dropout(cfg.dropout)
        self.is_lstm = cfg.arch == "lstm"

    def _bridge(self, final: Tensor) -> Tensor:
        """``(2L, B, H)`` final encoder states -> ``(B, L, D)`` decoder initial states."""
        layers = self.cfg.layers
        both = final.view(layers, 2, final.size(1), final.size(2))
        return torch.cat([both[:, 0], both[:, 1]], dim=-1).transpose(0, 1).contiguous()

    def encode(self, src_ids: Tensor, src_mask: Tensor) -> State:
        """State: memory ``(B, S, D)``, mask ``(B, S)``, h/c ``(B, L, D)``, feed ``(B, D)``."""
        lengths = src_mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.drop(self.embed(src_ids)), lengths, batch_first=True, enforce_sorted=False)
        packed_out, final = self.encoder(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(
            packed_out, batch_first=True, total_length=src_ids.size(1))
        h, c = final if self.is_lstm else (final, None)
        state: State = {"memory": memory, "src_mask": src_mask, "h": self._bridge(h),
                        "feed": memory.new_zeros(memory.size(0), memory.size(2))}
        if c is not None:
            state["c"] = self._bridge(c)
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
