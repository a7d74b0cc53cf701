"""Language codes of a checkpoint as the API uses them: ISO 639-1 where the language has one
(``fra``, ``fra_Latn`` -> ``fr``), else the code as given."""

from __future__ import annotations

import re
from typing import Any

import langcodes

from training.errors import UserError

OPUS_TARGET_TOKEN = re.compile(r"^>>([A-Za-z_]+)<<$")  # OPUS-MT multi-target: >>fra<<


def api_code(code: str) -> str:
    """``code`` (ISO 639-1/2/3, optionally with a script or region, ``-`` or ``_``) reduced to
    its language subtag in the shortest standard form, an individual language as its
    macrolanguage (NLLB's ``arb``: ``ar``; ``swh``: ``sw``); a two-letter code stays as it is
    (``tl``, not ``fil``); unparseable codes are kept."""
    tag = code.replace("_", "-")
    try:
        language = langcodes.Language.get(langcodes.standardize_tag(tag, macro=True)).language
    except (ValueError, LookupError):
        return code
    given = tag.split("-")[0].lower()
    if language and len(language) > 2 and len(given) == 2:
        return given
    return language or code


def opus_target_tokens(vocab: dict[str, int]) -> dict[str, int]:
    """A multi-target OPUS-MT vocabulary's target tokens by API code (``{"fr": id}``);
    empty for single-target models."""
    found: dict[str, int] = {}
    for token, index in sorted(vocab.items(), key=lambda item: item[1]):
        match = OPUS_TARGET_TOKEN.match(token)
        if match:
            found.setdefault(api_code(match.group(1)), index)
    return found


def source_prefix(target_tokens: dict[str, int], target: str) -> list[int]:
    """The token ids to put before every source: the target's ``>>xxx<<`` token of a
    multi-target model, nothing for a single-target one; a refusal naming the targets
    when the model has tokens but none for ``target``."""
    if not target_tokens:
        return []
    if target not in target_tokens:
        raise UserError(f"the checkpoint has no target-language token for {target!r}; pass "
                        f"--tgt-lang with one of: {', '.join(sorted(target_tokens))}")
    return [target_tokens[target]]


def served_codes(codes: list[str]) -> dict[str, str]:
    """A multilingual checkpoint's codes (in its tokenizer's order) -> the codes the API
    serves them under: :func:`api_code`, or for a later code of a language already taken
    (NLLB's ``zho_Hant`` after ``zho_Hans``) the code itself in lower case."""
    served: dict[str, str] = {}
    taken: set[str] = set()
    for code in codes:
        short = api_code(code)
        served[code] = short if short not in taken else code.lower()
        taken.add(served[code])
    return served


def checkpoint_code(codes: dict[str, int], wanted: str, flag: str) -> str:
    """The multilingual tokenizer's own code for ``wanted``: its code, the code it is served
    under (:func:`served_codes`), or that of any code of the same language (``fra`` for
    ``fr``); a refusal naming ``flag`` and the codes it has."""
    if wanted in codes:
        return wanted
    by_served = {short: code for code, short in served_codes(list(codes)).items()}
    found = by_served.get(wanted.lower()) or by_served.get(api_code(wanted))
    if found is None:
        raise UserError(f"the checkpoint has no language {wanted!r}; pass {flag} with one of: "
                        f"{', '.join(sorted(codes))}")
    return found


def source_language_index(tokenizer: Any, token: int) -> int:
    """Where ``tokenizer`` puts the source language's ``token`` in a tokenized source: 0
    (first: M2M100, NLLB) or -1 (last: NLLB's legacy layout); a refusal otherwise."""
    ids = list(tokenizer("a")["input_ids"])
    if ids and ids[0] == token:
        return 0
    if ids and ids[-1] == token:
        return -1
    raise UserError(f"the tokenizer puts no source-language token ({token}) first or last in a "
                    f"source ({ids}); this checkpoint cannot be exported")
