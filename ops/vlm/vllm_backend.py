"""The vLLM backend: offline batched ``LLM.generate`` with the image in ``multi_modal_data``, for GPU machines.

vLLM pins its own torch and transformers, so it is an optional extra (``clipfoundry[vllm]``) that is imported
only when this backend is chosen, and it is not installed on CPU CI: this module is exercised on a GPU machine
by ``bench/gpu_vlm.py`` only. The prompt text comes from the checkpoint's chat template through the same
:func:`ops.vlm.backend.chat_prompt` the HF backend uses, and decoding is greedy, so both backends see the same
prompts and their answers go through the same parser.

The logit score asks vLLM for the top ``score_top_logprobs`` tokens at one position, twice per pair (after the
prefix, and after the prefix and "1"); a digit outside that top list counts as probability zero. A judge that
is asked for its score puts almost all mass on digits, so the loss is negligible for a real judge model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ops.vlm.backend import VlmConfig, chat_prompt, digit_token_ids, score_distribution


class VllmBackend:
    """A checkpoint served by an in-process ``vllm.LLM`` engine."""

    score_top_logprobs = 20

    def __init__(self, config: VlmConfig) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as err:
            raise RuntimeError(
                "the vLLM backend was selected but vllm is not installed; install the optional extra "
                "`pip install 'clipfoundry[vllm]'` on a GPU machine, or use backend='hf'"
            ) from err
        from transformers import AutoProcessor

        self._sampling_params = SamplingParams
        self.name = config.display_name
        self.processor = AutoProcessor.from_pretrained(
            config.model, local_files_only=config.offline, **config.processor_kwargs
        )
        engine = {"dtype": config.dtype or "auto", "seed": 0, "limit_mm_per_prompt": {"image": 1}}
        if config.processor_kwargs:
            engine["mm_processor_kwargs"] = dict(config.processor_kwargs)
        engine.update(config.engine_kwargs)
        self.llm = LLM(model=config.model, **engine)
        self.model_seconds = 0.0

    def _run(self, images: Sequence[Image.Image], texts: list[str], params) -> list:
        requests = [{"prompt": t, "multi_modal_data": {"image": im}} for t, im in zip(texts, images, strict=True)]
        start = time.perf_counter()
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        self.model_seconds += time.perf_counter() - start
        return outputs

    def generate(self, images: Sequence[Image.Image], prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        if not prompts:
            return []
        params = self._sampling_params(temperature=0.0, max_tokens=max_new_tokens)
        outputs = self._run(images, [chat_prompt(self.processor, p) for p in prompts], params)
        return [o.outputs[0].text.strip() for o in outputs]

    def score_logits(self, images: Sequence[Image.Image], prompts: Sequence[str], answer_prefix: str) -> np.ndarray:
        if not prompts:
            return np.zeros((0, 10))
        digits = digit_token_ids(self.processor.tokenizer)
        params = self._sampling_params(temperature=0.0, max_tokens=1, logprobs=self.score_top_logprobs)
        texts = [chat_prompt(self.processor, p) + answer_prefix for p in prompts]
        outputs = self._run(list(images) * 2, texts + [t + "1" for t in texts], params)
        probs = np.zeros((len(outputs), 10))
        for i, out in enumerate(outputs):
            top = out.outputs[0].logprobs[0]
            for j, token in enumerate(digits):
                if token in top:
                    probs[i, j] = math.exp(top[token].logprob)
        n = len(prompts)
        return score_distribution(probs[:n], probs[n:])
