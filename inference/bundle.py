"""The model bundle format: what ``training.export`` writes and the server reads.

A bundle directory holds ``encoder.onnx``, ``decoder.onnx``, the tokenizer files and
``model.json`` (this module's :class:`Manifest`). Nothing here imports torch; ONNX Runtime is
imported only to compare the state contract with the graphs.

Decoder state contract: every decoder input besides ``input_ids (batch, 1)`` and
``encoder_attention_mask (batch, src_len)`` is either *static* (an encoder output, fixed for a
sequence, e.g. cross-attention keys or the RNN memory) or *state* (fed back from the matching
output every step, starting as zeros or from an encoder output). State that grows is a
buffer with spare capacity along ``grow_axis``: the key/value caches the graph writes in place
(``graph_writes``) and the cache mask that marks their real entries. Every such tensor has the
batch on axis 0, so beam reordering is a gather on axis 0 for all of them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 2
MANIFEST = "model.json"
GRAPH_FILES = ("encoder.onnx", "decoder.onnx")


class BundleError(Exception):
    """A bundle that cannot be served; the message names the bundle and the problem."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and symbolic shape (ints or axis names such as ``"batch"``)."""

    name: str
    dtype: str
    shape: list[int | str]


@dataclass(frozen=True)
class StateSpec:
    """One recurrent decoder tensor: fed as ``input``, read back from ``output``."""

    input: str
    output: str
    dtype: str
    shape: list[int | str]
    init: str  # "empty" (zeros; capacity axes sized by the engine) or "encoder:<output name>"
    grow_axis: int | None = None  # the capacity axis of a buffer that fills step by step
    batch_axis: int = 0
    # A buffer with spare capacity along ``grow_axis``; entries past each row's length (its
    # count of cache-mask ones) are masked.
    in_place: bool = False
    # With ``in_place``: the graph writes the step's entry at each row's length and outputs the
    # whole buffer, which the engine binds to the input's memory (ONNX Runtime's
    # ``GroupQueryAttention`` writes in place). Without it (the cache mask) the output is the
    # new entry ``(batch, 1)``, which the engine writes.
    graph_writes: bool = False


@dataclass(frozen=True)
class StaticSpec:
    """A decoder input computed once by the encoder (``source`` is the encoder output)."""

    input: str
    source: str
    dtype: str
    shape: list[int | str]
    batch_axis: int = 0


@dataclass(frozen=True)
class TopKSpec:
    """The decoder's in-graph top-k head: ``k`` fed as ``input`` (int64 ``(1,)``, default 1),
    each row's ``k`` best log-probs ``(batch, k)`` (best first) as ``values`` and their token
    ids as ``indices``. Saves copying and sorting ``(batch, vocab)`` log-probs every step."""

    input: str = "top_k"
    values: str = "top_log_probs"
    indices: str = "top_ids"


@dataclass(frozen=True)
class DecoderContract:
    """Decoder step inputs and outputs."""

    log_probs: str
    state: list[StateSpec]
    static: list[StaticSpec]
    inputs: list[TensorSpec] = field(default_factory=list)
    # The int64 state input that marks real (1) and padded (0) cache entries along grow_axis,
    # so rows with caches of different lengths can share a step (continuous batching).
    cache_mask: str | None = None
    top_k: TopKSpec | None = None  # null: no head (the engine reduces the log-probs itself)
    # The encoder mask and static tensors may have one row per input while the step has
    # ``G`` consecutive rows per input (its beams): rows = inputs * G, G inferred by the graph.
    grouped_static: bool = False

    @property
    def in_place(self) -> bool:
        """Whether the growing state is written in place (see :class:`StateSpec`)."""
        return any(s.in_place for s in self.state)

    @property
    def graph_writes(self) -> bool:
        """Whether the graph writes some cache in place (run through IO binding)."""
        return any(s.graph_writes for s in self.state)

    @property
    def joinable(self) -> bool:
        """Rows that started at different steps can share a decoder call: no state grows, or
        the growing state is masked."""
        return self.cache_mask is not None or all(s.grow_axis is None for s in self.state)


@dataclass(frozen=True)
class Manifest:
    """Everything ``model.json`` holds."""

    name: str
    architecture: str
    source_lang: str
    target_lang: str
    special_tokens: dict[str, int]  # pad, eos, decoder_start, unk
    vocab_size: int
    max_positions: int
    dtype: str
    opset: int
    encoder_inputs: list[TensorSpec]
    encoder_outputs: list[TensorSpec]
    decoder: DecoderContract
    versions: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    metadata: dict[str, Any] = field(default_factory=dict)  # training and evaluation figures
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _specs(rows: list[dict[str, Any]], cls: type) -> list[Any]:
    return [cls(**row) for row in rows]


REQUIRED = {
    "manifest": ("name", "architecture", "source_lang", "target_lang", "special_tokens",
                 "vocab_size", "max_positions", "dtype", "opset", "encoder_inputs",
                 "encoder_outputs", "decoder", "versions", "files", "metadata"),
    "decoder": ("log_probs", "state", "static", "inputs", "cache_mask", "top_k",
                "grouped_static"),
    "state": ("input", "output", "dtype", "shape", "init", "grow_axis", "batch_axis",
              "in_place", "graph_writes"),
    "static": ("input", "source", "dtype", "shape", "batch_axis"),
    "top_k": ("input", "values", "indices"),
}


def _require(raw: dict[str, Any], kind: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise KeyError(f"{kind} must be an object")
    missing = [key for key in REQUIRED[kind] if key not in raw]
    if missing:
        raise KeyError(f"{kind} lacks {', '.join(missing)}")
    return raw


def parse_manifest(raw: dict[str, Any]) -> Manifest:
    """Build a :class:`Manifest` from ``model.json`` content (no file checks); a missing field
    raises ``KeyError`` naming it."""
    raw = dict(_require(raw, "manifest"))
    decoder = dict(_require(raw.pop("decoder"), "decoder"))
    contract = DecoderContract(
        log_probs=decoder["log_probs"],
        state=[StateSpec(**_require(row, "state")) for row in decoder["state"]],
        static=[StaticSpec(**_require(row, "static")) for row in decoder["static"]],
        inputs=_specs(decoder["inputs"], TensorSpec), cache_mask=decoder["cache_mask"],
        top_k=TopKSpec(**_require(decoder["top_k"], "top_k")) if decoder["top_k"] else None,
        grouped_static=bool(decoder["grouped_static"]))
    return Manifest(decoder=contract, encoder_inputs=_specs(raw.pop("encoder_inputs"), TensorSpec),
                    encoder_outputs=_specs(raw.pop("encoder_outputs"), TensorSpec), **raw)


def layout_problems(contract: DecoderContract) -> list[str]:
    """What in the state contract the engine cannot serve: growing state must be a buffer
    (``in_place``), written by the graph except the cache mask, and masked."""
    mask = contract.cache_mask
    if mask is not None and mask not in {s.input for s in contract.state}:
        return [f"cache_mask {mask!r} is not a state input"]
    problems = []
    for spec in contract.state:
        if spec.grow_axis is None:
            continue
        if not spec.in_place:
            problems.append(f"state {spec.input!r} grows but is not in_place")
        elif spec.graph_writes == (spec.input == contract.cache_mask):
            problems.append(f"state {spec.input!r}: only the cache buffers are graph_writes")
        if contract.cache_mask is None:
            problems.append(f"state {spec.input!r} grows without a cache_mask")
    return problems


def read_manifest(directory: Path) -> Manifest:
    """Read and check ``model.json``: present, parseable, format version 2, complete."""
    path = directory / MANIFEST
    if not path.is_file():
        raise BundleError(f"bundle {directory}: {MANIFEST} is missing (export it with "
                          "`python -m training.export`)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"bundle {directory}: {MANIFEST} is not valid JSON ({err})") from None
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"bundle {directory}: format version {version!r} is not supported "
                          f"(this server reads version {FORMAT_VERSION}); export the model "
                          "again with `python -m training.export`")
    try:
        manifest = parse_manifest(raw)
    except (KeyError, TypeError) as err:
        raise BundleError(f"bundle {directory}: {MANIFEST} is incomplete ({err})") from None
    problems = layout_problems(manifest.decoder)
    if problems:
        raise BundleError(f"bundle {directory}: {'; '.join(problems)}; export the model again "
                          "with `python -m training.export`")
    return manifest


def verify_files(directory: Path, manifest: Manifest) -> None:
    """Every listed file exists and has the recorded sha256."""
    for name in GRAPH_FILES:
        if name not in manifest.files:
            raise BundleError(f"bundle {directory}: {MANIFEST} lists no checksum for {name}")
    for name, expected in manifest.files.items():
        path = directory / name
        if not path.is_file():
            raise BundleError(f"bundle {directory}: file {name} is missing")
        if sha256_of(path) != expected:
            raise BundleError(f"bundle {directory}: checksum mismatch for {name} "
                              "(file changed or truncated since export)")


def expected_decoder_io(manifest: Manifest) -> tuple[set[str], set[str]]:
    """Decoder input and output names the contract promises."""
    contract = manifest.decoder
    inputs = {spec.name for spec in contract.inputs}
    inputs |= {s.input for s in contract.state} | {s.input for s in contract.static}
    outputs = {contract.log_probs} | {s.output for s in contract.state}
    if contract.top_k is not None:
        outputs |= {contract.top_k.values, contract.top_k.indices}
    return inputs, outputs


def check_contract(directory: Path, manifest: Manifest, encoder: Any, decoder: Any) -> None:
    """Compare the contract with two ONNX Runtime sessions' real inputs and outputs."""
    def names(items: Any) -> set[str]:
        return {item.name for item in items}

    enc_in, enc_out = names(encoder.get_inputs()), names(encoder.get_outputs())
    dec_in, dec_out = names(decoder.get_inputs()), names(decoder.get_outputs())
    if manifest.decoder.top_k is not None:  # an input with a default, or required
        dec_in.discard(manifest.decoder.top_k.input)
    want_in, want_out = expected_decoder_io(manifest)
    problems = []
    if enc_in != {s.name for s in manifest.encoder_inputs}:
        problems.append(f"encoder inputs {sorted(enc_in)}")
    if enc_out != {s.name for s in manifest.encoder_outputs}:
        problems.append(f"encoder outputs {sorted(enc_out)}")
    if dec_in != want_in:
        problems.append(f"decoder inputs {sorted(dec_in ^ want_in)} differ")
    if dec_out != want_out:
        problems.append(f"decoder outputs {sorted(dec_out ^ want_out)} differ")
    sources = {s.source for s in manifest.decoder.static}
    sources |= {s.init.split(":", 1)[1] for s in manifest.decoder.state if s.init != "empty"}
    if not sources <= enc_out:
        problems.append(f"encoder lacks {sorted(sources - enc_out)}")
    if problems:
        raise BundleError(f"bundle {directory}: state contract does not match the graphs: "
                          + "; ".join(problems))


def load_bundle_manifest(directory: Path) -> Manifest:
    """Manifest of a bundle whose files are all present and intact."""
    if not directory.is_dir():
        raise BundleError(f"bundle {directory}: not a directory")
    manifest = read_manifest(directory)
    verify_files(directory, manifest)
    return manifest
