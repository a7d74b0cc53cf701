"""Export graphs for the RNN model: the encoder returns the memory and the decoder's initial
state; one decoder step maps (token, state) to log-probs and the next state.

Shapes: B batch, S source length, L decoder layers, D decoder hidden, V vocab.
"""

from __future__ import annotations

from torch import Tensor, nn

from training.models.rnn import RNNSeq2Seq


class RNNEncoderGraph(nn.Module):
    """``(input_ids, attention_mask)`` -> memory ``(B, S, D)``, h ``(B, L, D)``,
    [c ``(B, L, D)``], feed ``(B, D)``."""

    def __init__(self, model: RNNSeq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, ...]:
        state = self.model.encode(input_ids, attention_mask)
        return tuple(state[name] for name in rnn_state_names(self.model) if name in state)


class RNNDecoderStepGraph(nn.Module):
    """``(input_ids (B, 1), encoder_attention_mask (B, S), h, [c], feed, memory)`` ->
    ``(log_probs (B, V), h, [c], feed)``: carried state first, then the static memory."""

    def __init__(self, model: RNNSeq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, encoder_attention_mask: Tensor, *state: Tensor
                ) -> tuple[Tensor, ...]:
        names = rnn_state_names(self.model)
        ordered = [*names[1:], names[0]]
        values = {"src_mask": encoder_attention_mask, **dict(zip(ordered, state, strict=True))}
        log_probs, new = self.model.step(input_ids[:, 0], values)
        return (log_probs, *(new[name] for name in names[1:]))


def rnn_state_names(model: RNNSeq2Seq) -> list[str]:
    """Static memory first, then the state updated every step."""
    return ["memory", "h", "c", "feed"] if model.is_lstm else ["memory", "h", "feed"]
