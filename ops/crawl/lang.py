"""Language identification of pair texts with py3langid (langid.py's model, shipped inside the package).

Downstream filters (DataComp's "English only", MetaCLIP's per-language metadata) threshold on a probability, so
the identifier is loaded with ``norm_probs=True``: ``py3langid.classify`` returns an unnormalised log score,
while the normalised identifier returns a softmax probability in [0, 1]. Classification is the slow part of the
stage, so callers pass each distinct text once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from py3langid.langid import MODEL_FILE, LanguageIdentifier


@functools.cache
def _identifier() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(texts: Iterable[str]) -> dict[str, tuple[str, float]]:
    """``{text: (ISO 639 code, probability)}`` for each distinct text.

    A text without a single letter (digits, punctuation, emoji) has no language: ``("", 0.0)``. The model would
    otherwise return its first label at a uniform probability.
    """
    classify = _identifier().classify
    out: dict[str, tuple[str, float]] = {}
    for text in texts:
        if text in out:
            continue
        if any(ch.isalpha() for ch in text):
            lang, prob = classify(text)
            out[text] = (lang, float(prob))
        else:
            out[text] = ("", 0.0)
    return out
