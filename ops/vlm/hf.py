"""The Hugging Face transformers backend: any ``AutoModelForImageTextToText`` checkpoint, batched, greedy.

CUDA with bfloat16 when a GPU is present, else CPU with float32 (bfloat16 matmuls are slow on most CPUs).
Prompts are left-padded so every answer starts at the same position of the batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ops.vlm.backend import VlmConfig, chat_prompt, digit_token_ids, score_distribution

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def pick_device(device: str | None, dtype: str | None) -> tuple[torch.device, torch.dtype]:
    """The configured device and dtype, or the best available: cuda+bf16, else cpu+fp32."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        return dev, torch.bfloat16 if dev.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
    return dev, _DTYPES[dtype]


class HfBackend:
    """A checkpoint loaded with ``AutoProcessor`` and ``AutoModelForImageTextToText``."""

    def __init__(self, config: VlmConfig) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.name = config.display_name
        self.device, self.dtype = pick_device(config.device, config.dtype)
        self.processor = AutoProcessor.from_pretrained(
            config.model, local_files_only=config.offline, **config.processor_kwargs
        )
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        model = AutoModelForImageTextToText.from_pretrained(
            config.model, dtype=self.dtype, local_files_only=config.offline, **config.engine_kwargs
        )
        self.model = model.to(self.device).eval()
        self.model_seconds = 0.0

    def _inputs(self, images: Sequence[Image.Image], texts: list[str]):
        inputs = self.processor(text=texts, images=list(images), padding=True, return_tensors="pt")
        return inputs.to(self.device, dtype=self.dtype)

    def _timed(self, fn):
        start = time.perf_counter()
        out = fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.model_seconds += time.perf_counter() - start
        return out

    @torch.inference_mode()
    def generate(self, images: Sequence[Image.Image], prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        if not prompts:
            return []
        inputs = self._inputs(images, [chat_prompt(self.processor, p) for p in prompts])
        out = self._timed(
            lambda: self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
        )
        answers = self.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return [a.strip() for a in answers]

    @torch.inference_mode()
    def score_logits(self, images: Sequence[Image.Image], prompts: Sequence[str], answer_prefix: str) -> np.ndarray:
        """Teacher-force ``prefix + "1"`` in one forward pass: position −2 gives the first digit, −1 the second."""
        if not prompts:
            return np.zeros((0, 10))
        digits = digit_token_ids(self.tokenizer)
        inputs = self._inputs(images, [chat_prompt(self.processor, p) + answer_prefix for p in prompts])
        n, length = inputs["input_ids"].shape
        appended = {"input_ids": digits[1], "attention_mask": 1}
        for key in list(inputs.keys()):
            value = inputs[key]
            if isinstance(value, torch.Tensor) and value.shape == (n, length):
                column = torch.full((n, 1), appended.get(key, 0), dtype=value.dtype, device=value.device)
                inputs[key] = torch.cat([value, column], dim=1)
        logits = self._timed(lambda: self.model(**inputs, logits_to_keep=2).logits)
        probs = torch.softmax(logits[:, -2:].float(), dim=-1)[:, :, digits].cpu().numpy()
        return score_distribution(probs[:, 0], probs[:, 1])
