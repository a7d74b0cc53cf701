"""Continuous batching with the state on the device (``device_rows``, ``DeviceModel``'s join
and trim): the graphs give exactly what the numpy path computes, and a bound decode loop does
its joins, trims and cuts through them (on this machine over host memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.inference import Translator
from service.inference.continuous import Arrival, DecodeLoop
from service.inference.device_rows import AxisSlice, BoundGraph, JoinRows, Side
from service.inference.search import SearchOptions
from service.inference.slab import StaticSlab
from tests.service.inference.test_continuous import assert_same, random_carried

CPU = ["CPUExecutionProvider"]


def on_device(arrays: dict[str, np.ndarray]) -> dict[str, ort.OrtValue]:
    return {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value))
            for name, value in arrays.items()}


def on_host(values: dict[str, ort.OrtValue]) -> dict[str, np.ndarray]:
    return {name: value.numpy() for name, value in values.items()}


@pytest.mark.parametrize("side", ["left", "right"])
def test_join_rows_pads_the_narrower_side_with_zeros(side: Side) -> None:
    rng = np.random.default_rng(0)
    join = JoinRows({"cache": np.dtype(np.float32), "position": np.dtype(np.int64)},
                    {"cache": 1, "position": None}, side, CPU, 1, "cpu")
    running = {"cache": rng.normal(size=(3, 4, 2)).astype(np.float32),
               "position": np.array([4, 2, 3])}
    for width in (0, 2, 6):  # joining rows narrower, as wide, wider
        joining = {"cache": rng.normal(size=(2, width, 2)).astype(np.float32),
                   "position": np.array([0, 1])}
        got = on_host(join(on_device(running), np.array([2, 0]), on_device(joining)))
        size = max(4, width)
        old, new = running["cache"][[2, 0]], joining["cache"]
        pad = [(0, 0), (size - 4, 0), (0, 0)] if side == "left" else [(0, 0), (0, size - 4),
                                                                     (0, 0)]
        pad_new = [(0, 0), (size - width, 0), (0, 0)] if side == "left" else [
            (0, 0), (0, size - width), (0, 0)]
        np.testing.assert_array_equal(got["cache"], np.concatenate(
            [np.pad(old, pad), np.pad(new, pad_new)]))
        assert got["position"].tolist() == [3, 4, 0, 1]


def test_axis_slice_cuts_each_tensor_on_its_axis_and_keeps_the_rest() -> None:
    cut = AxisSlice({"a": (np.dtype(np.float32), 2), "m": (np.dtype(np.int64), 1)}, CPU, 1, "cpu")
    values: dict[str, np.ndarray] = {"a": np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5),
              "m": np.arange(10).reshape(2, 5), "p": np.array([7, 8])}
    got = on_host(cut(on_device(values), 1, 4))
    np.testing.assert_array_equal(got["a"], values["a"][:, :, 1:4])
    np.testing.assert_array_equal(got["m"], values["m"][:, 1:4])
    assert got["p"].tolist() == [7, 8]


def test_device_slab_matches_the_host_slab(trained_concat_bundle: Path) -> None:
    """The same appends and departures on both slabs give the same mask and static rows."""
    bound = Translator.load(trained_concat_bundle, threads=1, io_binding=True)
    model, device = bound.model, bound.device_model
    assert device is not None
    batches = [np.array([[5, 1, 0], [8, 6, 1]]), np.array([[9] * 8 + [1]]), np.array([[4, 1]])]
    states = [model.encode(ids, (ids > 0).astype(np.int64)) for ids in batches]
    device.upload(states[0])  # builds the row gathers
    host, bound_slab = StaticSlab(model.src_axes), device.new_slab()
    for state in states:
        host.append(state.mask, state.static)
        bound_slab.append(state.mask, on_device(state.static))
    # row 1 leaves (the last row takes its place), then the long source (now last) leaves
    for source, target, rows in (([3], [1], 3), ([], [], 2)):
        host.compact(np.array(source, np.int64), np.array(target, np.int64), rows)
        bound_slab.compact(np.array(source, np.int64), np.array(target, np.int64), rows)
        mask, static = host.view()
        got_mask, got_static = bound_slab.view()
        assert bound_slab.width == host.width and got_mask.tolist() == mask.tolist()
        for name, value in on_host(got_static).items():
            np.testing.assert_array_equal(value, static[name])
    assert host.width == 2  # the cut happened on both


def test_bound_select_join_and_trim_match_numpy(trained_concat_bundle: Path) -> None:
    bound = Translator.load(trained_concat_bundle, threads=1, io_binding=True)
    model, device = bound.model, bound.device_model
    assert device is not None
    carried = random_carried(model)
    running = carried(6, 5)
    device.upload(model.encode(np.array([[5, 1]]), np.ones((1, 2), np.int64)))
    for index in (np.array([5, 5, 0, 3]), None):
        for joining in ([carried(2, 0), carried(1, 3)], [carried(2, 7)], []):
            want = model.select_and_join(running, index, joining)
            got = device.select_and_join(on_device(running), index,
                                         [on_device(part) for part in joining])
            for name, value in on_host(got).items():
                np.testing.assert_array_equal(value, want[name])
    cache = bound.manifest.decoder.cache_mask
    assert cache is not None
    padded = carried(2, 8)
    padded[cache] = np.array([[0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1]])
    want = model.trim_cache(padded)
    assert want[cache].shape == (2, 5)  # three columns of padding cut
    for name, value in on_host(device.trim_cache(on_device(padded))).items():
        np.testing.assert_array_equal(value, want[name])


def test_a_bound_loop_joins_trims_and_cuts_on_the_device(trained_concat_bundle: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """Caches and encoder outputs stay ONNX Runtime values, joined and cut by the graphs,
    and the results are still each request's alone."""
    translator = Translator.load(trained_concat_bundle, io_binding=True)
    calls: dict[str, int] = {}
    run = BoundGraph.run

    def counted(graph: BoundGraph, host: dict, values: dict, outputs: list[str]) -> list:
        name = graph.session.get_modelmeta().graph_name or "graph"
        kind = f"{name}:{outputs[0].split('.', 1)[0]}"
        calls[kind] = calls.get(kind, 0) + 1
        return run(graph, host, values, outputs)

    monkeypatch.setattr(BoundGraph, "run", counted)
    loop = DecodeLoop(translator)
    # a long source decodes 12 tokens; a short one joins at step 6, so when the long one
    # leaves, the cache's first 6 columns are padding (trimmed) and the source axis is cut
    options = SearchOptions(beam_size=1, min_length=12)
    texts = ["a " * 30, "fish."]
    results = dict(loop.admit([Arrival(0, texts[:1], options, max_length=12)]) + loop.step())
    for step in range(1, 20):
        arrivals = [Arrival(1, texts[1:], options, max_length=12)] if step == 6 else []
        results.update(loop.admit(arrivals) + loop.step())
        for search in loop.searches.values():
            assert all(isinstance(value, ort.OrtValue) for value in search.carried.values())
            assert all(isinstance(value, ort.OrtValue) for value in search.slab.view()[1].values())
    assert sorted(results) == [0, 1]
    for key, text in enumerate(texts):
        got = results[key]
        assert not isinstance(got, Exception)
        assert_same(got[0], translator.translate([text], beam_size=1, min_length=12,
                                                 max_length=12)[0])
    assert {"join_rows:past_key_0", "join_rows:cross_key_0", "axis_slice:past_key_0",
            "axis_slice:cross_key_0"} <= set(calls), calls
