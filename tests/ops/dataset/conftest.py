"""Tiny VLM checkpoints from :mod:`tests.ops.vlm.tiny`, built once per session."""

from tests.ops.vlm.tiny import offline, tiny_llava, tiny_qwen2_vl

__all__ = ["offline", "tiny_llava", "tiny_qwen2_vl"]
