"""Tiny randomly initialised VLMs of real architectures, saved like a hub checkpoint, for offline tests.

Each builder trains a byte-level BPE tokenizer with the ``tokenizers`` library on a few sentences (plus the chat
and image special tokens the processor needs), builds the model from its config class with a few thousand
parameters per layer, and calls ``save_pretrained`` on model and processor, so the production loader reads it
exactly as it would read a downloaded checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

CORPUS = [
    "Rate how well the caption describes the image. Answer with a short reason and end with score: {N}.",
    "score: {1} score: {2} score: {3} score: {4} score: {5} score: {6} score: {7} score: {8} score: {9} score: {10}",
    "Describe the image in one detailed sentence. A photo of a red bicycle leaning on a blue wall.",
    "Caption: a dog running on the beach at sunset 0123456789 user assistant system",
]

QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
LLAVA_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | upper }}: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _tokenizer(specials: list[str], vocab_size: int = 400) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return tok


def build_qwen2_vl(
    path: Path,
    text: dict[str, Any] | None = None,
    vision: dict[str, Any] | None = None,
    max_pixels: int = 56 * 56,
    vocab_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """A Qwen2-VL checkpoint at ``path``: by default 2 text layers, 1 vision block and a 56×56-pixel budget.

    ``text``/``vision`` override the config (the GPU benchmark builds the 2B architecture this way);
    ``vocab_size`` pads the tokenizer with extra tokens up to the model's vocabulary, so every id the model
    can emit decodes; ``dtype`` is the dtype the weights are saved in.
    """
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    torch.manual_seed(0)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=_tokenizer(QWEN_SPECIALS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN_SPECIALS[1:],
    )
    if vocab_size is not None and vocab_size > len(fast):
        fast.add_tokens([f"<|extra_{i}|>" for i in range(vocab_size - len(fast))])
    ids = {t: fast.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text_config = {
        "vocab_size": len(fast),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        **(text or {}),
    }
    half = text_config["hidden_size"] // text_config["num_attention_heads"] // 2
    section = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    text_config.setdefault("rope_parameters", {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section})
    vision_config = {
        "depth": 1,
        "embed_dim": 32,
        "hidden_size": text_config["hidden_size"],
        "num_heads": 2,
        "mlp_ratio": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        **(vision or {}),
    }
    config = Qwen2VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    model = Qwen2VLForConditionalGeneration(config).eval()
    if dtype is not None:
        model = model.to(dtype)
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=max_pixels, patch_size=14, merge_size=2)
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=fast,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN_TEMPLATE,
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_llava(path: Path) -> Path:
    """A LLaVA checkpoint (CLIP vision tower, Llama text model, 28-pixel images) at ``path``."""
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    torch.manual_seed(0)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=_tokenizer(LLAVA_SPECIALS),
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<image>"],
    )
    ids = {t: fast.convert_tokens_to_ids(t) for t in LLAVA_SPECIALS}
    config = LlavaConfig(
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 28,
            "patch_size": 14,
            "projection_dim": 32,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(fast),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "bos_token_id": ids["<s>"],
            "eos_token_id": ids["</s>"],
            "pad_token_id": ids["<pad>"],
        },
        image_token_id=ids["<image>"],
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = ids["<pad>"]
    model.generation_config.eos_token_id = ids["</s>"]
    image_processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=fast,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_qwen2_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading must work with the hub switched off, as on every machine this project runs on."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
