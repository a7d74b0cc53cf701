"""The narrow model protocol shared by training-time decoding and export (STYLE.md 1-2).

State is a dict of tensors whose batch axis is 0 for every entry, so beam reordering is one
``index_select`` on axis 0 for every architecture. (The Transformer keeps its growing key/value
cache in a transformers ``Cache`` object under ``"cache"``.)
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor

State = dict[str, Any]


class Seq2SeqModel(Protocol):
    """What every trainable encoder-decoder offers."""

    def __call__(self, src_ids: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits ``(batch, tgt_len, vocab)``."""
        ...

    def encode(self, src_ids: Tensor, src_mask: Tensor) -> State:
        """Encode ``(batch, src_len)`` ids with a ``(batch, src_len)`` 1/0 mask."""
        ...

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """Feed ``(batch,)`` last tokens; return ``(batch, vocab)`` log-probs and the new state."""
        ...

    def reorder(self, state: State, index: Tensor) -> State:
        """Keep/reorder batch rows: ``index`` is ``(new_batch,)`` row numbers into the state."""
        ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def parameters(self) -> Any: ...

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...
