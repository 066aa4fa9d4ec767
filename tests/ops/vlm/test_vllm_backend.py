"""The vLLM backend's own logic against a stand-in for vLLM's documented offline API.

vLLM is not installed on CPU CI (it pins its own torch), so this checks only our side of the contract: requests
as ``{"prompt", "multi_modal_data": {"image"}}`` with the checkpoint's chat template (the same text the HF backend
builds), greedy sampling, bounded length, and the logit score read from ``outputs[0].logprobs[0]``. The real
engine runs in ``bench/gpu_vlm.py`` on a GPU machine.
"""

from __future__ import annotations

import math
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ops.vlm import VlmConfig, load_backend
from ops.vlm.backend import chat_prompt


@dataclass
class Logprob:
    logprob: float


@dataclass
class Completion:
    text: str
    logprobs: list[dict[int, Logprob]] | None = None


@dataclass
class RequestOutput:
    outputs: list[Completion]


class FakeLLM:
    """Answers like vLLM's ``LLM.generate`` would, and records what it was asked."""

    def __init__(self, model: str, **engine) -> None:
        self.model, self.engine, self.calls = model, engine, []

    def generate(self, requests, params, use_tqdm=True):
        self.calls.append((requests, params))
        if getattr(params, "logprobs", None):
            tokenizer = self.tokenizer
            digit = {d: tokenizer.encode(d, add_special_tokens=False)[0] for d in "0123456789"}
            out = []
            for r in requests:
                if r["prompt"].endswith("{1"):  # after "1": "0" half the time, so 10 and 1 split evenly
                    top = {digit["0"]: Logprob(math.log(0.5))}
                else:
                    top = {digit["9"]: Logprob(math.log(0.6)), digit["1"]: Logprob(math.log(0.2))}
                out.append(RequestOutput([Completion("", [top])]))
            return out
        return [RequestOutput([Completion(f"  answer {i} ")]) for i in range(len(requests))]


class SamplingParams:
    def __init__(self, **kwargs) -> None:
        self.__dict__.update(kwargs)


@pytest.fixture
def vllm_backend(tiny_qwen2_vl: Path, offline: None, monkeypatch: pytest.MonkeyPatch):
    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = FakeLLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", fake)
    backend = load_backend(
        VlmConfig(model=str(tiny_qwen2_vl), backend="vllm", engine_kwargs={"gpu_memory_utilization": 0.5})
    )
    backend.llm.tokenizer = backend.processor.tokenizer
    return backend


def test_engine_gets_the_checkpoint_and_one_image_per_prompt(vllm_backend, tiny_qwen2_vl: Path) -> None:
    llm = vllm_backend.llm
    assert llm.model == str(tiny_qwen2_vl)
    assert llm.engine["limit_mm_per_prompt"] == {"image": 1} and llm.engine["gpu_memory_utilization"] == 0.5


def test_generate_sends_the_hf_chat_prompt_greedy_and_bounded(vllm_backend) -> None:
    images = [Image.new("RGB", (30, 30)), Image.new("RGB", (50, 20))]
    answers = vllm_backend.generate(images, ["Describe it.", "Rate it."], max_new_tokens=7)
    assert answers == ["answer 0", "answer 1"]
    requests, params = vllm_backend.llm.calls[-1]
    assert [r["prompt"] for r in requests] == [
        chat_prompt(vllm_backend.processor, p) for p in ("Describe it.", "Rate it.")
    ]
    assert [r["multi_modal_data"]["image"] for r in requests] == images
    assert params.temperature == 0.0 and params.max_tokens == 7
    assert vllm_backend.generate([], [], 7) == []


def test_score_logits_reads_digit_logprobs(vllm_backend) -> None:
    probs = vllm_backend.score_logits([Image.new("RGB", (30, 30))], ["Rate it."], "score: {")
    np.testing.assert_allclose(probs[0], [0.1, 0, 0, 0, 0, 0, 0, 0, 0.6, 0.1])
    requests, params = vllm_backend.llm.calls[-1]
    assert params.max_tokens == 1 and params.logprobs == vllm_backend.score_top_logprobs
    assert requests[0]["prompt"].endswith("score: {") and requests[1]["prompt"].endswith("score: {1")
