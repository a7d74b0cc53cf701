"""Language codes of a checkpoint as the API uses them: ISO 639-1 where the language has one
(``fra``, ``fra_Latn`` -> ``fr``), else the code as given."""

from __future__ import annotations

import re

import langcodes

from training.errors import UserError

OPUS_TARGET_TOKEN = re.compile(r"^>>([A-Za-z_]+)<<$")  # OPUS-MT multi-target: >>fra<<


def api_code(code: str) -> str:
    """``code`` (ISO 639-1/2/3, optionally with a script or region, ``-`` or ``_``) reduced to
    its language subtag in the shortest standard form; unparseable codes are kept."""
    try:
        language = langcodes.Language.get(code.replace("_", "-")).language
    except (ValueError, LookupError):
        return code
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


def checkpoint_code(codes: dict[str, int], wanted: str, flag: str) -> str:
    """The multilingual tokenizer's own code for ``wanted`` (its code, or any code of the same
    language: ``fr`` for ``fra``); a refusal naming ``flag`` and the codes it has."""
    if wanted in codes:
        return wanted
    for code in codes:
        if api_code(code) == api_code(wanted):
            return code
    raise UserError(f"the checkpoint has no language {wanted!r}; pass {flag} with one of: "
                    f"{', '.join(sorted(codes))}")
