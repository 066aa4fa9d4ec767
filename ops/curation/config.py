"""MetaCLIP curation settings, in one object shared by the metadata, matching, counting and balancing steps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ops.curation.balancing import threshold_for_tail_fraction
from ops.curation.metadata import MetadataConfig


@dataclass(frozen=True)
class BalanceConfig:
    """Either a fixed ``t`` or a target tail fraction to derive it from (MetaCLIP 2's way to pick t per language).

    MetaCLIP used t = 20,000 for its 400M set out of a 1.6B pool; a smaller pool needs a smaller t.
    """

    t: float | None = 20_000
    tail_fraction: float | None = None
    seed: int = 0

    def threshold(self, counts: np.ndarray) -> float:
        if self.tail_fraction is not None:
            return float(threshold_for_tail_fraction(counts, self.tail_fraction))
        if self.t is None:
            raise ValueError("set t or tail_fraction")
        return float(self.t)


@dataclass(frozen=True)
class CurationConfig:
    """Where the entry list comes from and how balancing cuts the head.

    ``metadata_uri`` loads a MetaCLIP-format list (a lake path or any fsspec URI); without it the list is built
    once from WordNet plus unigrams and PMI bigrams of the crawled text, as ``metadata`` says. With
    ``balance.tail_fraction`` set it decides t and ``balance.t`` is ignored.
    """

    metadata_uri: str | None = None
    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
