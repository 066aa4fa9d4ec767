"""The HF backend on tiny random Qwen2-VL and LLaVA checkpoints, loaded offline by the production loader."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ops.vlm import VlmConfig, load_backend
from ops.vlm.backend import chat_prompt, score_distribution
from ops.vlm.hf import HfBackend, pick_device


def images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (40 + 23 * i, 30 + 11 * i), (40 * i % 256, 90, 200)) for i in range(n)]


@pytest.fixture(scope="module", params=["qwen2_vl", "llava"])
def backend(request: pytest.FixtureRequest) -> HfBackend:
    path = request.getfixturevalue(f"tiny_{request.param}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return load_backend(VlmConfig(model=str(path), name=request.param))


def test_loads_offline_on_cpu_in_float32(backend: HfBackend) -> None:
    assert isinstance(backend, HfBackend)
    assert backend.device.type == "cpu" and backend.dtype == torch.float32
    assert backend.tokenizer.padding_side == "left"


def test_chat_prompt_wraps_one_image_and_the_prompt(backend: HfBackend) -> None:
    text = chat_prompt(backend.processor, "Rate this pair.")
    assert "Rate this pair." in text
    image_token = backend.processor.image_token
    assert text.count(image_token) == 1
    assert text.index(image_token) < text.index("Rate this pair.")
    assert text.rstrip().endswith(("assistant", "ASSISTANT:"))


def test_generate_is_batched_greedy_and_deterministic(backend: HfBackend) -> None:
    pics, prompts = images(3), ["Describe it.", "Rate it: score: {N}", "Another, longer prompt for the model."]
    first = backend.generate(pics, prompts, max_new_tokens=6)
    again = backend.generate(pics, prompts, max_new_tokens=6)
    assert first == again
    assert len(first) == 3 and all(isinstance(a, str) for a in first)
    assert [backend.generate([p], [q], 6)[0] for p, q in zip(pics, prompts, strict=True)] == first
    assert backend.generate([], [], 6) == []
    assert backend.model_seconds > 0


def test_generation_length_is_bounded(backend: HfBackend) -> None:
    (answer,) = backend.generate(images(1), ["Describe it."], max_new_tokens=3)
    assert len(backend.tokenizer.encode(answer, add_special_tokens=False)) <= 3 + 2  # re-encoding may split


def test_score_logits_are_probabilities_of_scores(backend: HfBackend) -> None:
    probs = backend.score_logits(images(2), ["Rate it.", "Rate this one too."], "score: {")
    assert probs.shape == (2, 10)
    assert (probs >= 0).all() and (probs.sum(axis=1) <= 1 + 1e-6).all()
    np.testing.assert_allclose(backend.score_logits(images(2)[:1], ["Rate it."], "score: {"), probs[:1], atol=1e-5)


def test_score_logits_teacher_forcing_matches_a_plain_forward(backend: HfBackend) -> None:
    """Position −2 of ``prefix + "1"`` must give what the last position of ``prefix`` alone gives."""
    pics, prompts = images(2), ["Rate it.", "Rate this one too."]
    inputs = backend._inputs(pics, [chat_prompt(backend.processor, p) + "score: {" for p in prompts])
    with torch.inference_mode():
        last = torch.softmax(backend.model(**inputs).logits[:, -1].float(), dim=-1)
    digits = [backend.tokenizer.encode(d, add_special_tokens=False)[0] for d in "0123456789"]
    first = last[:, digits].numpy()
    probs = backend.score_logits(pics, prompts, "score: {")
    np.testing.assert_allclose(probs[:, 1:9], first[:, 2:10], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(probs[:, 0] + probs[:, 9], first[:, 1], rtol=1e-4, atol=1e-7)


def test_score_distribution_separates_one_from_ten() -> None:
    first = np.zeros((1, 10))
    first[0, 1], first[0, 9] = 0.5, 0.25  # "1" (then "0" or not), "9"
    after_one = np.zeros((1, 10))
    after_one[0, 0] = 0.8  # "1" is followed by "0" 80% of the time: score 10
    dist = score_distribution(first, after_one)[0]
    np.testing.assert_allclose(dist, [0.1, 0, 0, 0, 0, 0, 0, 0, 0.25, 0.4])


def test_pick_device_defaults_and_overrides() -> None:
    assert pick_device(None, None) == (torch.device("cpu"), torch.float32) or torch.cuda.is_available()
    assert pick_device("cpu", "bfloat16") == (torch.device("cpu"), torch.bfloat16)
    with pytest.raises(ValueError, match="unknown dtype"):
        pick_device("cpu", "int4")


def test_offline_hub_id_fails_fast_without_network(offline: None, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(OSError):
        load_backend(VlmConfig(model="Qwen/Qwen2-VL-2B-Instruct"))


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown VLM backend"):
        load_backend(VlmConfig(model="x", backend="onnx"))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_missing_vllm_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="vllm is not installed"):
        load_backend(VlmConfig(model="x", backend="vllm"))
