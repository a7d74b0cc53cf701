"""Which loaded bundle serves a language pair, and the 4xx errors naming what is served.

A bundle serves the pair it was exported for, or, multilingual (M2M100, NLLB-200), every pair
of two of its languages (``inference/languages.py``). Language codes in requests are trimmed
and lower-cased; a checkpoint's full code (NLLB's ``fra_Latn``, ``metadata.language_codes``)
stands for the code the bundle serves it under (``fr``).

Default per language pair, among the loaded bundles serving it, by one order of the bundles
(:func:`rank`): the first one listed in ``default_models``; otherwise a model the user added
(a bundle without the test BLEU that the packager records, ``metadata.evaluation.beam4.bleu``
in model.json: an exported checkpoint such as OPUS-MT or NLLB, or an unpackaged run) before the
packaged ones (the shipped demos); then a bundle exported for one pair before a multilingual
one; then a float32 bundle before any other; then the best recorded BLEU, then the smallest
name. The order is the same for every pair: a pair goes to the first bundle serving it
(:meth:`Routes.choose`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

from inference.bundle import Manifest
from inference.languages import Pair
from service.api.errors import ApiError

if TYPE_CHECKING:
    from service.api.registry import ModelEntry


class Route(NamedTuple):
    """The bundle serving a request and the pair it translates."""

    entry: ModelEntry
    source: str
    target: str

    @property
    def pair(self) -> Pair:
        """``(source, target)``."""
        return self.source, self.target


def recorded_bleu(manifest: Manifest) -> float:
    """The beam-4 test BLEU the packager wrote into model.json, or -inf when there is none."""
    evaluation = manifest.metadata.get("evaluation")
    beam4 = evaluation.get("beam4") if isinstance(evaluation, dict) else None
    bleu = beam4.get("bleu") if isinstance(beam4, dict) else None
    return float(bleu) if isinstance(bleu, int | float) else float("-inf")


def rank(entry: ModelEntry, preferred: Mapping[str, int]
         ) -> tuple[int, bool, bool, int, float, str]:
    """The sort key of a bundle: lower serves its pairs first (module docstring)."""
    assert entry.manifest is not None
    bleu = recorded_bleu(entry.manifest)
    return (preferred.get(entry.name, len(preferred)), bleu != float("-inf"),
            entry.languages.multilingual, 0 if entry.manifest.dtype == "float32" else 1,
            -bleu, entry.name)


class Routes:
    """The routing view of the bundles at one moment (build one per request: it is cheap)."""

    def __init__(self, entries: Mapping[str, ModelEntry], default_models: Sequence[str]) -> None:
        self.entries = entries
        preferred = {name: index for index, name in enumerate(default_models)}
        self.ranked = sorted((e for e in entries.values() if e.status == "ready"),
                             key=lambda entry: rank(entry, preferred))

    @cached_property
    def aliases(self) -> dict[str, str]:
        """Full codes in lower case (``fra_latn``) -> the codes bundles serve them under."""
        found: dict[str, str] = {}
        for entry in self.ranked:
            codes = entry.manifest.metadata.get("language_codes") if entry.manifest else None
            if isinstance(codes, dict):
                found.update((str(full).lower(), str(short)) for short, full in codes.items())
        return found

    def canonical(self, code: str | None) -> str | None:
        """A request's language code (normalised: trimmed, lower case) as bundles serve it."""
        if not code:
            return None
        code = code.strip().lower()
        return self.aliases.get(code, code)

    @cached_property
    def languages(self) -> dict[str, list[str]]:
        """Every served language -> the languages it is translated into (sorted; empty for a
        language that is only a target), as LibreTranslate's ``/languages`` lists them."""
        found: dict[str, set[str]] = {}
        for entry in self.ranked:
            languages = entry.languages
            for source in languages.sources:
                found.setdefault(source, set()).update(languages.targets_of(source))
            for target in languages.targets:
                found.setdefault(target, set())
        return {code: sorted(found[code]) for code in sorted(found)}

    def sources(self, target: str | None = None) -> list[str]:
        """Served source languages (those translated into ``target`` when given), sorted."""
        found: set[str] = set()
        for entry in self.ranked:
            languages = entry.languages
            found.update(source for source in languages.sources
                         if target is None or languages.serves(source, target))
        return sorted(found)

    def targets(self, source: str | None = None) -> list[str]:
        """Served target languages (those ``source`` is translated into when given), sorted."""
        found: set[str] = set()
        for entry in self.ranked:
            languages = entry.languages
            found.update(languages.targets if source is None else languages.targets_of(source))
        return sorted(found)

    def known(self, code: str) -> bool:
        """Whether some bundle translates from or into ``code``."""
        return any(code in entry.languages.sources or code in entry.languages.targets
                   for entry in self.ranked)

    def choose(self, source: str, target: str) -> ModelEntry | None:
        """The bundle serving ``source`` -> ``target`` by default, if any."""
        return next((e for e in self.ranked if e.languages.serves(source, target)), None)

    def defaults(self) -> set[str]:
        """Names of the bundles that serve at least one pair by default."""
        covered: set[Pair] = set()
        names = set()
        for entry in self.ranked:
            pairs = set(entry.languages.pairs())
            if pairs - covered:
                names.add(entry.name)
            covered |= pairs
        return names

    def resolve(self, *, model: str | None, source: str | None, target: str | None) -> Route:
        """The route of a request: an explicit ``model`` (its exported pair filling a missing
        language), or the default bundle of the ``source``/``target`` pair; 4xx otherwise."""
        source, target = self.canonical(source), self.canonical(target)
        if model is not None:
            return self._by_name(model, source, target)
        if not source or not target:
            raise ApiError(422, "missing_route", "give source_lang and target_lang, or model",
                           field="target_lang" if source else "source_lang",
                           details={"models": self.models()})
        entry = self.choose(source, target)
        if entry is None:
            raise self.unserved(source, target)
        return Route(entry, source, target)

    def unserved(self, source: str, target: str) -> ApiError:
        """The 400 for a pair no bundle serves, naming the field at fault and the languages
        it could have."""
        sources = self.sources()
        if source not in sources:
            return ApiError(400, "unsupported_language", f"no model translates from {source}; "
                            f"source languages: {', '.join(sources) or 'none'}",
                            field="source_lang", details={"languages": sources})
        targets = self.targets(source)
        return ApiError(400, "unsupported_language_pair", f"no model translates {source} to "
                        f"{target}; {source} is translated into: {', '.join(targets)}",
                        field="target_lang", details={"languages": targets})

    def models(self) -> list[str]:
        """Names of the bundles serving requests."""
        return sorted(entry.name for entry in self.ranked)

    def _by_name(self, model: str, source: str | None, target: str | None) -> Route:
        entry = self.entries.get(model)
        if entry is None or entry.status == "pending":
            raise ApiError(400, "unknown_model", f"no model named {model!r}; served: "
                           f"{', '.join(self.models()) or 'none'}",
                           field="model", details={"models": self.models()})
        if entry.status != "ready":
            raise ApiError(503, "model_unavailable", f"model {model!r} is {entry.status}",
                           field="model", details={"models": self.models()},
                           headers={"Retry-After": "5"})
        languages = entry.languages
        pair = (source or languages.source, target or languages.target)
        if not languages.serves(*pair):
            side = "source" if pair[0] not in languages.sources else "target"
            known = languages.sources if side == "source" else languages.targets_of(pair[0])
            raise ApiError(422, "model_language_mismatch", f"model {model!r} does not translate "
                           f"{pair[0]} to {pair[1]}; its {side} languages"
                           f"{'' if side == 'source' else ' from ' + pair[0]}: "
                           f"{', '.join(known)}", field=f"{side}_lang",
                           details={"languages": known})
        return Route(entry, *pair)
