"""What "perturbing a token" means: replace it, mask it, or delete it.

Only the user's tokens are ever perturbed (never chat-template or special tokens), and the
same rule applies to every method, so every method is scored on the same perturbed prompts.

- ``replace`` / ``neutral``: the token of a single space. It is in every byte-level and
  SentencePiece vocabulary, carries no content of its own, and keeps the prompt's length, so
  every other token keeps its position; what changes is only that the word is gone.
- ``replace`` / ``prior``: the model's own most probable other token at that position given the
  original text before it (never a special token): the perturbed prompt stays fluent, so a drop
  is less likely to come from a broken-looking prompt; it may be a near-synonym, which keeps part
  of the meaning and makes drops smaller.
- ``mask``: the tokenizer's unknown token, else its padding token. On chat models these are
  control tokens the model rarely sees inside text, so drops tend to be larger.
- ``delete``: the token is removed; the prompt gets shorter and later tokens move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reportgen_plugins.evaluation.scorer import Scorer


@dataclass(frozen=True)
class Perturbation:
    """How to perturb one generation's input: the operator and, per user position, the token
    that replaces it (None: delete)."""

    operator: str
    replacement: str
    substitute: dict[int, int | None] = field(default_factory=dict)
    token_text: str = ""  # the replacement or mask token as text ("" for delete / per-position prior)

    def apply(self, ids: Sequence[int], positions: Sequence[int]) -> list[int]:
        """``ids`` with the tokens at ``positions`` (indices into the input) perturbed."""
        chosen = set(positions)
        out: list[int] = []
        for i, tok in enumerate(ids):
            if i not in chosen:
                out.append(int(tok))
                continue
            sub = self.substitute.get(i)
            if sub is not None:
                out.append(int(sub))
        return out


class PerturbationUnavailable(Exception):
    """The operator cannot be applied to this model (e.g. masking without a mask token)."""


def _special_ids(tokenizer: Any) -> set[int]:
    ids = getattr(tokenizer, "all_special_ids", None) or []
    return {int(i) for i in ids}


def neutral_token(tokenizer: Any) -> tuple[int, str]:
    """The id and text of the single-space token."""
    if tokenizer is None:
        raise PerturbationUnavailable("replacement needs the model's tokenizer to find the single-space token")
    ids = list(tokenizer.encode(" ", add_special_tokens=False))
    if len(ids) != 1:
        raise PerturbationUnavailable(f"a single space is {len(ids)} tokens for this tokenizer, not one")
    return int(ids[0]), " "


def mask_token(tokenizer: Any) -> tuple[int, str]:
    """The id and text of the unknown token, else the padding token."""
    for attr in ("unk_token", "pad_token"):
        tid = getattr(tokenizer, f"{attr}_id", None) if tokenizer is not None else None
        if tid is not None:
            return int(tid), str(getattr(tokenizer, attr, "") or "")
    raise PerturbationUnavailable("masking needs an unknown or padding token; this tokenizer has neither")


def build(
    operator: str, replacement: str, tokenizer: Any, input_ids: Sequence[int], user_positions: Sequence[int], scorer: Scorer
) -> Perturbation:
    """The perturbation of one generation's user positions under the spec's operator."""
    if operator == "delete":
        return Perturbation("delete", "", dict.fromkeys(user_positions))
    if operator == "mask":
        tid, text = mask_token(tokenizer)
        return Perturbation("mask", "", dict.fromkeys(user_positions, tid), text)
    neutral_id, neutral_text = neutral_token(tokenizer)
    if replacement == "neutral":
        return Perturbation("replace", "neutral", dict.fromkeys(user_positions, neutral_id), neutral_text)
    special = _special_ids(tokenizer)
    subs: dict[int, int | None] = {}
    for k in user_positions:
        top = scorer.prior_top(k, special | {int(input_ids[k])})
        subs[k] = neutral_id if top is None else top  # no text before position 0: the space
    return Perturbation("replace", "prior", subs, "")


def describe(p: Perturbation, tokenizer: Any) -> str:
    """The perturbation in plain words, for the report."""
    if p.operator == "delete":
        return "Perturbing a token means deleting it: the prompt gets shorter and the tokens after it move up."
    if p.operator == "mask":
        return (
            f"Perturbing a token means replacing it with the tokenizer's placeholder token {p.token_text!r}. "
            "Chat models rarely see that token inside text, so the drops it causes tend to be large."
        )
    if p.replacement == "neutral":
        return (
            "Perturbing a token means replacing it with a single space: it carries no content of its own and keeps "
            "the prompt's length, so every other token stays where it was and only the word itself is gone."
        )
    return (
        "Perturbing a token means replacing it with the token the model itself finds most likely at that place "
        "(given the original text before it): the prompt stays fluent, but a near-synonym keeps part of the meaning, "
        "so drops tend to be smaller."
    )


def token_texts(p: Perturbation, tokenizer: Any) -> dict[str, str]:
    """Each user position's substitute as text (results.json evidence)."""
    if tokenizer is None:
        return {}
    return {str(k): str(tokenizer.decode([v])) for k, v in p.substitute.items() if v is not None}
