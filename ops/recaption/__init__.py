"""recaption: a VLM writes a synthetic caption for each sample quality kept (see :mod:`ops.recaption.shard`)."""

from ops.recaption.shard import REASONS, RecaptionConfig, recaption_shard

__all__ = ["REASONS", "RecaptionConfig", "recaption_shard"]
