"""The two-version harness interleaves its passes and runs as documented and reports the
medians and ratios of what each version answered (fakes stand in for the processes)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.ab_runs import Rows, Version, run_module, worker
from bench.commits_ab import Contender, Timed, main
from tests.conftest import read_jsonl

# greedy b64 tokens/s each (version or reference, system) answers at its 1st, 2nd, 3rd pass;
# the other settings answer a share of it (SHARE)
ENGINE = {("base", "engine-fp32"): [100.0, 300.0, 200.0],
          ("head", "engine-fp32"): [210.0, 190.0, 250.0],
          ("reference", "ct2-float32"): [150.0, 175.0, 140.0]}
SHARE = {(1, 64): 4.0, (1, 1): 1.0, (4, 64): 2.0, (4, 1): 0.5}  # (beam, batch) -> share
SETTINGS = [("greedy", 1, 64), ("greedy", 1, 1), ("beam4", 4, 64), ("beam4", 4, 1)]
# per run of bench.in_process: (request, continuous) saturated sentences/s and p50 at 70 %
SERVICE = {"base": [((10.0, 12.0), (400.0, 300.0)), ((14.0, 8.0), (500.0, 260.0))],
           "head": [((11.0, 9.0), (420.0, 310.0)), ((15.0, 9.0), (380.0, 290.0))]}


def repository(path: Path) -> Path:
    """An empty git repository with one commit at ``path``."""
    path.mkdir()
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", str(path.name)], check=True)
    return path


class Fake:
    """Stands in for ``run_module`` (prepare, service runs) and the workers (passes): records
    each call, answers from the tables above."""

    def __init__(self, roles: dict[str, str]) -> None:
        self.roles = roles  # version label -> "base" / "head"
        self.calls: list[tuple[str, ...]] = []
        self.served = {"base": 0, "head": 0}
        self.disturb: set[tuple[str, str]] = set()  # (role, system) whose next pass is

    def __call__(self, version: Version, argv: Sequence[str]) -> Rows:
        role = self.roles[version.label]
        if argv[0] != "bench.in_process":
            self.calls.append((role, "prepare"))
            return []
        self.calls.append((role, "service"))
        (request, continuous), (request_p50, continuous_p50) = SERVICE[role][self.served[role]]
        self.served[role] += 1
        rows: Rows = [{"bundle": "ignored", "foreign_cpu": 0.0}]
        for mode, speed, p50 in (("request", request, request_p50),
                                 ("continuous", continuous, continuous_p50)):
            rows += [{"mode": mode, "kind": "saturated", "sentences_per_s": speed + d}
                     for d in (-1.0, 1.0, 0.0)]  # median: speed
            rows += [{"mode": mode, "kind": "open_loop", "load": 0.7, "p50_ms": p50 + d}
                     for d in (5.0, -5.0)]  # median: p50
            rows.append({"mode": mode, "kind": "open_loop", "load": 0.5, "p50_ms": 1.0})
        return rows

    @contextmanager
    def start(self, contender: Contender, system: str) -> Iterator[Timed]:
        self.calls.append((contender.role, "load", system))
        done = {setting: 0 for setting in SHARE}

        def timed(beam: int, batch: int) -> Rows:
            if (contender.role, system) in self.disturb:  # other work took half the cores
                self.disturb.remove((contender.role, system))
                self.calls.append((contender.role, system, f"{beam}x{batch} disturbed"))
                return [{"tokens_per_s": 1.0, "foreign_cpu": 0.5}]
            self.calls.append((contender.role, system, f"{beam}x{batch}"))
            speed = ENGINE[(contender.role, system)][done[(beam, batch)]]
            done[(beam, batch)] += 1
            return [{"tokens_per_s": SHARE[(beam, batch)] * speed, "foreign_cpu": 0.0}]

        yield timed
        self.calls.append((contender.role, "unload", system))


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    labels = {}
    for role in ("base", "head"):
        path = repository(tmp_path / role)
        labels[subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()] = role
    return Fake(labels)


def harness(fake: Fake, tmp_path: Path, *options: str) -> Rows:
    """``main`` over the fake with the base and head repositories; the rows it wrote."""
    out = tmp_path / "out.jsonl"
    assert main([str(tmp_path / "base"), str(tmp_path / "head"), "--work",
                 str(tmp_path / "work"), "--out", str(out), "--systems", "engine-fp32",
                 "--reference", "ct2-float32", *options], run=fake, start=fake.start) == 0
    return read_jsonl(out)


def test_passes_and_runs_alternate_and_reverse(fake: Fake, tmp_path: Path) -> None:
    harness(fake, tmp_path, "--rounds", "3", "--service-runs", "2")
    contenders = [("base", "engine-fp32"), ("head", "engine-fp32"), ("reference", "ct2-float32")]
    passes = [(*contender, f"{beam}x{batch}") for _, beam, batch in SETTINGS
              for contender in [*contenders, *contenders[::-1], *contenders]]
    assert fake.calls == [("head", "prepare"), ("base", "prepare"),  # head builds the model
                          *((role, "load", system) for role, system in contenders),
                          *passes,
                          *((role, "unload", system) for role, system in contenders[::-1]),
                          ("base", "service"), ("head", "service"),
                          ("head", "service"), ("base", "service")]


def test_summary_is_medians_and_their_ratios(fake: Fake, tmp_path: Path) -> None:
    rows = harness(fake, tmp_path, "--rounds", "3", "--service-runs", "2")
    engine = {r["setting"]: r for r in rows if r.get("kind") == "engine"}
    assert set(engine) == {f"{name} b{batch}" for name, _, batch in SETTINGS}
    for name, beam, batch in SETTINGS:
        row, share = engine[f"{name} b{batch}"], SHARE[(beam, batch)]
        assert row["base_tokens_per_s"] == pytest.approx(200 * share, abs=0.05)
        assert row["head_tokens_per_s"] == pytest.approx(210 * share, abs=0.05)
        assert row["reference_tokens_per_s"] == pytest.approx(150 * share, abs=0.05)
        assert row["head_over_base"] == pytest.approx(1.05)
        assert row["head_over_reference"] == pytest.approx(1.4)
        assert row["round_ratios"] == pytest.approx([2.1, 190 / 300, 1.25], abs=1e-3)
        assert row["round_ratio_median"] == pytest.approx(1.25)
    service = {r["figure"]: r for r in rows if r.get("kind") == "service"}
    # base ran first and last, head in between: each version's runs in its running order
    assert service["request_saturated"]["base_all"] == [10.0, 14.0]
    assert service["request_saturated"]["head_all"] == [11.0, 15.0]
    assert service["request_saturated"]["base_median"] == 12.0
    assert service["request_saturated"]["base_spread"] == pytest.approx(4 / 12, abs=1e-3)
    assert service["request_saturated"]["head_over_base"] == pytest.approx(13 / 12, abs=1e-3)
    assert service["continuous_saturated"]["head_over_base"] == pytest.approx(9 / 10)
    # p50 at 70 % load only (the 50 % rows answer 1 ms)
    assert service["request_p50_ms"]["base_all"] == [400.0, 500.0]
    assert service["continuous_p50_ms"]["head_median"] == 300.0
    assert service["continuous_p50_ms"]["head_spread"] == pytest.approx(20 / 300, abs=1e-3)
    assert service["continuous_p50_ms"]["head_over_base"] == pytest.approx(300 / 280, abs=1e-3)


def test_a_disturbed_pass_is_run_again(fake: Fake, tmp_path: Path) -> None:
    fake.disturb = {("head", "engine-fp32")}
    rows = harness(fake, tmp_path, "--rounds", "1", "--service-runs", "0",
                   "--max-foreign", "0.2")
    assert fake.calls[5:8] == [("base", "engine-fp32", "1x64"),
                               ("head", "engine-fp32", "1x64 disturbed"),
                               ("head", "engine-fp32", "1x64")]
    (row,) = (r for r in rows if r.get("kind") == "engine" and r["setting"] == "greedy b64")
    assert row["head_all"] == [4 * 210.0]  # not the disturbed pass's 1.0
    assert row["foreign_cpu_max"] == 0.0


def test_same_commit_twice_is_refused(fake: Fake, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="same commit"):
        main([str(tmp_path / "base"), str(tmp_path / "base")], run=fake, start=fake.start)


def test_a_version_runs_its_own_code(tmp_path: Path) -> None:
    (tmp_path / "service").mkdir()  # a package the installed project also provides
    (tmp_path / "service" / "__init__.py").write_text("")
    (tmp_path / "probe.py").write_text(
        'import json, pathlib, service\n'
        'print("not json")\n'
        'print(json.dumps({"file": service.__file__, "cwd": str(pathlib.Path.cwd())}))\n')
    (row,) = run_module(Version("x", tmp_path), ["probe"])
    assert row["file"] == str(tmp_path / "service" / "__init__.py")
    assert row["cwd"] == str(tmp_path)
    assert 0 <= row["foreign_cpu"] <= 1
    (tmp_path / "broken.py").write_text("raise ValueError('named in the error')\n")
    with pytest.raises(SystemExit, match=r"(?s)x: python -m broken failed:.*named in the error"):
        run_module(Version("x", tmp_path), ["broken"])


FAKE_ENGINES = """
from pathlib import Path

FORCED = 2


def opus_shape(quick):
    return {"vocab": 10 if quick else 0}


def sources(vocab):
    return [[vocab, i] for i in range(64)]


def runner(system, work, threads):
    log = Path(work) / "translated"
    def translate(batch, beam):
        with log.open("a") as f:
            f.write(f"{system} {threads} {len(batch)} {beam}\\n")
    return translate


def timed_pass(translate, inputs, beam, batch_size):
    for start in range(0, len(inputs), batch_size):
        translate(inputs[start : start + batch_size], beam)
    return 0.5
"""


def test_a_worker_times_passes_of_its_trees_engine(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()  # the checkout's bench.engines, not this one's
    (tmp_path / "bench" / "__init__.py").write_text("")
    (tmp_path / "bench" / "engines.py").write_text(FAKE_ENGINES)
    with worker(Version("x", tmp_path), "sys", tmp_path, 3, quick=True) as timed:
        assert [timed(4, 64)[0]["tokens_per_s"], timed(1, 1)[0]["tokens_per_s"],
                timed(4, 64)[0]["tokens_per_s"]] == [64 * 2 / 0.5, 8 * 2 / 0.5, 64 * 2 / 0.5]
        assert 0 <= timed(1, 1)[0]["foreign_cpu"] <= 1
    lines = (tmp_path / "translated").read_text().splitlines()
    # a 2-sentence warm-up on each setting's first request, then the pass
    assert lines == ["sys 3 2 4", "sys 3 64 4", "sys 3 2 1", *["sys 3 1 1"] * 8,
                     "sys 3 64 4", *["sys 3 1 1"] * 8]


def test_settings_choose_the_passes(fake: Fake, tmp_path: Path) -> None:
    rows = harness(fake, tmp_path, "--rounds", "2", "--service-runs", "0", "--settings", "4x1")
    assert {r["setting"] for r in rows} == {"beam4 b1"}
    assert [call[2] for call in fake.calls if len(call) == 3 and "x" in call[2]] == ["4x1"] * 6


def test_refs_are_checked_out_as_worktrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    repo = repository(tmp_path / "repo")
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-q", "--allow-empty", "-m", "second"], check=True)
    shas = [subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", ref],
                           capture_output=True, text=True, check=True).stdout.strip()
            for ref in ("HEAD~1", "HEAD")]
    monkeypatch.chdir(repo)
    seen: list[Version] = []

    def run(version: Version, argv: Sequence[str]) -> Rows:
        seen.append(version)
        return []

    assert main(["HEAD~1", "HEAD", "--work", str(tmp_path / "work"), "--rounds", "0",
                 "--service-runs", "0"], run=run) == 0
    trees = tmp_path / "work" / "trees"
    assert seen == [Version(shas[1], trees / shas[1]), Version(shas[0], trees / shas[0])]
    for sha in shas:  # each a checkout of its commit
        assert subprocess.run(["git", "-C", str(trees / sha), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip() == sha
