"""Multi-turn conversations (seed 001 §3.4 eq. 8, §4.5, A.3 eq. 11).

Eq. 8: the input of turn k is X_k = (X_1, Y_1, …, X_{k−1}, Y_{k−1}, X_k): every earlier turn's
input messages followed by its reply, which is the model's own output for that turn unless the
spec pins it (:func:`turn_messages`). Every message — and so every token of a model input — has a
turn: the system message and X_1 are turn 1, an assistant reply Y_i closes turn i, and the reply
being generated belongs to the turn after the last reply (:func:`message_turns`).

Eq. 11: A^temporal_{i,j} = Σ_t α_t A^t_{i,j}. The runner attributes the last turn's output; A^t is
its matrix A restricted to the input tokens of turn t (the rows i with turn(i) = t), so the
temporal matrix scales each row by its turn's α (:func:`temporal_matrix`). :func:`turn_shares`
gives how much of Σ|A| each earlier turn's tokens carry, before and after the α weighting.

Token roles come from where the chat template put each message (:func:`chat_roles`). A template
that writes a system turn of its own when the messages have none (SmolLM2's "You are a helpful AI
assistant named SmolLM…", Qwen2.5's "You are Qwen…") is found by rendering the messages once more
with a probe system message (:func:`template_system`): its tokens are ``system`` — the model reads
them as a system turn — in turn 1, though no message of the spec holds them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Roles a token can carry; ``assistant`` also marks the generation prompt of the reply being generated.
ROLES = ("system", "user", "assistant", "tool")

#: The content of the system message :func:`template_system` renders in place of the template's own.
SYSTEM_PROBE = "reportgen-system-probe"


def turn_messages(prompt: Any, outputs: Sequence[str | None], k: int) -> list[dict[str, str]]:
    """Eq. 8: the chat messages of turn ``k`` (1-based) of a ``turns`` prompt.

    ``outputs[i]`` is the model's reply to turn i+1 (None where it was not generated); a turn's
    pinned ``assistant`` text stands in for it.
    """
    msgs: list[dict[str, str]] = []
    if prompt.system is not None:
        msgs.append({"role": "system", "content": prompt.system})
    for i, turn in enumerate(prompt.turns[:k], start=1):
        if turn.tool is not None:
            msgs.append({"role": "tool", "content": turn.tool})
        if turn.user is not None:
            msgs.append({"role": "user", "content": turn.user})
        if i < k:
            reply = turn.assistant if turn.assistant is not None else outputs[i - 1]
            if reply is None:
                raise ValueError(f"turn {i} has neither a pinned reply nor the model's output")
            msgs.append({"role": "assistant", "content": reply})
    return msgs


def spec_messages(prompt: Any) -> list[tuple[str, str]]:
    """(role, text) of a prompt's messages as the spec gives them; a ``turns`` prompt's replies
    that the model writes itself are named, not quoted (they differ from model to model)."""
    if prompt.text is not None:
        return [("user", prompt.text)]
    if prompt.turns is None:
        return [(m.role, m.content) for m in prompt.messages or []]
    outputs = [f"(the model's own reply to turn {i})" for i in range(1, len(prompt.turns) + 1)]
    return [(m["role"], m["content"]) for m in turn_messages(prompt, outputs, len(prompt.turns))]


def message_turns(roles: Sequence[str]) -> list[int]:
    """Turn index (1-based) of each message: an assistant message closes its turn."""
    turn, out = 1, []
    for r in roles:
        out.append(turn)
        if r == "assistant":
            turn += 1
    return out


def content_spans(text: str, contents: Sequence[str]) -> list[tuple[int, int] | None]:
    """Where each message's content lies in the rendered ``text``, in order (None: not found)."""
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for c in contents:
        c = c if c in text[cursor:] else c.strip()  # a template may strip a message's outer white space
        start = text.find(c, cursor)
        if start < 0 or not c:
            spans.append(None)
            continue
        spans.append((start, start + len(c)))
        cursor = start + len(c)
    return spans


def token_roles(
    offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int] | None], roles: Sequence[str]
) -> tuple[list[str], list[int]]:
    """(role, turn) of every token of a rendered chat input.

    Message m owns the text from the end of message m−1's content to the end of its own (its
    template markup included); a token belongs to the message its first character falls in.
    Tokens after the last message's content are the generation prompt of the reply being
    generated: role ``assistant``, the turn after the last reply.
    """
    turns = message_turns(roles)
    reply_turn = turns[-1] + (1 if roles and roles[-1] == "assistant" else 0) if roles else 1
    ends: list[int] = []
    last = 0
    for sp in spans:
        last = sp[1] if sp is not None else last
        ends.append(last)
    out_roles: list[str] = []
    out_turns: list[int] = []
    for a, _b in offsets:
        m = next((i for i, e in enumerate(ends) if a < e), None)
        if m is None:
            out_roles.append("assistant")
            out_turns.append(reply_turn)
        else:
            out_roles.append(roles[m])
            out_turns.append(turns[m])
    return out_roles, out_turns


def template_system(render: Callable[[list[dict[str, str]]], str], messages: Sequence[dict[str, str]], text: str) -> tuple[int, int] | None:
    """Span in ``text`` (``render(messages)``) of the system prompt the chat template writes itself.

    None when the messages open with a system message, or when the template writes none: rendered
    with a probe system message first, the text reads ``head + probe + tail``; the template wrote a
    system prompt of its own when ``text`` reads ``head + D + tail`` with D not blank, and D is it.
    """
    if not messages or messages[0]["role"] == "system":
        return None
    try:
        probed = render([{"role": "system", "content": SYSTEM_PROBE}, *messages])
    except Exception:  # noqa: BLE001 - a template that refuses a system message writes none of its own here
        return None
    at = probed.find(SYSTEM_PROBE)
    if at < 0:
        return None
    head, tail = probed[:at], probed[at + len(SYSTEM_PROBE) :]
    end = len(text) - len(tail)
    if end <= len(head) or not text.startswith(head) or not text.endswith(tail) or not text[len(head) : end].strip():
        return None
    return len(head), end


def chat_roles(
    offsets: Sequence[tuple[int, int]],
    text: str,
    messages: Sequence[dict[str, str]],
    render: Callable[[list[dict[str, str]]], str] | None,
) -> tuple[list[str], list[int]]:
    """(role, turn) of every token of ``text``, the ``messages`` as the model sees them.

    ``render`` is the chat template (None: the contents joined without one). A system prompt the
    template writes itself (:func:`template_system`) counts as a system message before the others.
    """
    spans = content_spans(text, [m["content"] for m in messages])
    roles = [m["role"] for m in messages]
    injected = template_system(render, messages, text) if render is not None else None
    if injected is not None:
        spans, roles = [injected, *spans], ["system", *roles]
    return token_roles(offsets, spans, roles)


def alphas(prompt: Any, k: int) -> list[float]:
    """α_1 … α_k of eq. 11 from the spec's ``temporal`` (1 for every turn when it has none)."""
    temporal = getattr(prompt, "temporal", None)
    return temporal.weights(k) if temporal is not None else [1.0] * k


def temporal_matrix(a: np.ndarray, turns: Sequence[int], alpha: Sequence[float]) -> np.ndarray:
    """Eq. 11: Σ_t α_t A^t with A^t = A on the rows of turn t, zero elsewhere (turns are 1-based)."""
    a = np.asarray(a, dtype=np.float64)
    w = np.array([alpha[t - 1] for t in turns], dtype=np.float64)
    return np.asarray(a * w[:, None])


@dataclass(frozen=True)
class TurnShare:
    """What the input tokens of one (turn, role) carry of the attributed output's Σ|A|."""

    turn: int
    role: str
    tokens: int
    share: float | None  # Σ_{i in group} Σ_j |A_ij| / Σ_i Σ_j |A_ij| (NaN cells skipped)
    weighted: float | None  # the same share of the eq. 11 matrix (α of the group's turn applied)


def turn_shares(a: np.ndarray, roles: Sequence[str], turns: Sequence[int], alpha: Sequence[float]) -> list[TurnShare]:
    """Shares of Σ|A| per (turn, role) group of input tokens, in input order, plain and α-weighted."""
    absa = np.abs(np.asarray(a, dtype=np.float64))
    row = np.nansum(absa, axis=1)
    weighted = row * np.array([alpha[t - 1] for t in turns], dtype=np.float64)
    total, wtotal = float(row.sum()), float(weighted.sum())
    groups: dict[tuple[int, str], list[int]] = {}
    for i, key in enumerate(zip(turns, roles, strict=True)):
        groups.setdefault(key, []).append(i)
    out = []
    for (t, r), rows in groups.items():
        s = float(row[rows].sum())
        w = float(weighted[rows].sum())
        out.append(TurnShare(t, r, len(rows), s / total if total > 0 else None, w / wtotal if wtotal > 0 else None))
    return out
