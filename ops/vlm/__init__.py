"""Vision-language model backends shared by the VLM judge (quality) and the captioner (recaption)."""

from ops.vlm.backend import Captioner, PairScorer, PairScores, VlmBackend, VlmConfig, load_backend

__all__ = ["Captioner", "PairScorer", "PairScores", "VlmBackend", "VlmConfig", "load_backend"]
