"""Check exported graphs against PyTorch, and a reference greedy loop over ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor

from inference.bundle import DecoderContract
from training.export.graphs import GraphPlan, example_source
from training.export.sources import Source, is_rnn


def sessions(bundle: Path) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    """CPU sessions for a bundle's two graphs."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    make = lambda name: ort.InferenceSession(str(bundle / name), options,  # noqa: E731
                                             providers=["CPUExecutionProvider"])
    return make("encoder.onnx"), make("decoder.onnx")


def initial_state(contract: DecoderContract, encoded: dict[str, np.ndarray], batch: int,
                  capacity: int = 1) -> dict[str, np.ndarray]:
    """Decoder inputs for step 0: empty caches (in-place ones with ``capacity`` entries, all
    masked) and encoder outputs, per the contract."""
    feeds: dict[str, np.ndarray] = {}
    for spec in contract.state:
        if spec.init == "empty":
            size = capacity if spec.in_place else 0
            shape = [batch if d == "batch" else size if isinstance(d, str) else d
                     for d in spec.shape]
            feeds[spec.input] = np.zeros(shape, dtype=spec.dtype)
        else:
            feeds[spec.input] = encoded[spec.init.split(":", 1)[1]]
    for static in contract.static:
        feeds[static.input] = encoded[static.source]
    return feeds


def onnx_greedy(encoder: Any, decoder: Any, contract: DecoderContract, ids: np.ndarray,
                mask: np.ndarray, *, start_id: int, eos_id: int, max_len: int
                ) -> tuple[list[list[int]], list[np.ndarray]]:
    """Plain greedy decoding (no row removal): ids per row, and every step's log-probs."""
    names = [o.name for o in encoder.get_outputs()]
    encoded = dict(zip(names, encoder.run(None, {"input_ids": ids, "attention_mask": mask}),
                       strict=True))
    batch = ids.shape[0]
    feeds = initial_state(contract, encoded, batch, capacity=max_len)
    tokens = np.full((batch, 1), start_id, dtype=np.int64)
    done = np.zeros(batch, dtype=bool)
    out: list[list[int]] = [[] for _ in range(batch)]
    steps = []
    outputs = [contract.log_probs, *(s.output for s in contract.state)]
    required = {arg.name for arg in decoder.get_inputs()}
    if contract.top_k is not None and contract.top_k.input in required:
        feeds[contract.top_k.input] = np.array([1], np.int64)  # a head without a default k
    for _ in range(max_len):
        results = decoder.run(outputs, {"input_ids": tokens, "encoder_attention_mask": mask,
                                        **feeds})
        steps.append(results[0])
        for spec, value in zip(contract.state, results[1:], strict=True):
            if spec.in_place and not spec.graph_writes:  # the new entry: write it here
                index: list[slice | int] = [slice(None)] * value.ndim
                index[int(spec.grow_axis or 0)] = len(steps) - 1
                feeds[spec.input][tuple(index)] = np.take(value, 0, axis=spec.grow_axis)
            else:
                feeds[spec.input] = value
        tokens = results[0].argmax(-1)[:, None].astype(np.int64)
        for row in np.flatnonzero(~done):
            if tokens[row, 0] == eos_id:
                done[row] = True
            else:
                out[row].append(int(tokens[row, 0]))
        if done.all():
            break
    return out, steps


def torch_log_probs(source: Source, ids: Tensor, mask: Tensor, tgt_in: Tensor) -> Tensor:
    """Teacher-forced log-probs ``(B, T, V)`` from the original (non-export) model code."""
    with torch.no_grad():
        if is_rnn(source):
            logits = source.module(ids, mask, tgt_in)
        else:
            logits = source.module(input_ids=ids, attention_mask=mask,
                                   decoder_input_ids=tgt_in).logits
    return torch.log_softmax(logits.float(), dim=-1)


def max_differences(source: Source, plan: GraphPlan, bundle: Path, steps: int = 4
                    ) -> dict[str, float]:
    """Largest |ONNX - torch| of encoder outputs and of per-step log-probs (step 0 included)."""
    torch.manual_seed(7)
    ids, mask = example_source(batch=3, length=7)
    encoder, decoder = sessions(bundle)
    with torch.no_grad():
        expected = plan.encoder(ids, mask)
    got = encoder.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    enc_diff = max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected, strict=True))
    start = source.special_tokens["decoder_start"]
    _, onnx_steps = onnx_greedy(encoder, decoder, plan.contract, ids.numpy(), mask.numpy(),
                                start_id=start, eos_id=-1, max_len=steps)
    fed = [start] * 3
    tgt_in = torch.tensor([[start] + [int(s[row].argmax()) for s in onnx_steps[:-1]]
                           for row in range(len(fed))])
    reference = torch_log_probs(source, ids, mask, tgt_in)
    step_diff = max(float(np.abs(onnx_steps[t] - reference[:, t].numpy()).max())
                    for t in range(steps))
    return {"encoder": enc_diff, "decoder_steps": step_diff}
