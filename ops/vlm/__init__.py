"""Vision-language model backends shared by the VLM judge (quality) and the captioner (recaption)."""

from ops.vlm.backend import VlmBackend, VlmConfig, load_backend

__all__ = ["VlmBackend", "VlmConfig", "load_backend"]
