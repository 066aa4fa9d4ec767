"""A tiny CLIP (a few hundred thousand parameters besides the token embedding) that trains in seconds on CPU."""

TINY_MODEL = "cf-tiny-test"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

# A tiny CoCa: the towers as above plus a one-layer captioning decoder. open_clip builds a CoCa from a config with
# ``multimodal_cfg`` and ``custom_text``; open_clip_train gives it CoCa's loss because the name contains "coca".
TINY_COCA_MODEL = "coca-cf-tiny-test"
TINY_COCA_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {
        "image_size": 32,
        "layers": 1,
        "width": 32,
        "head_width": 16,
        "patch_size": 8,
        "attentional_pool": True,
        "attn_pooler_heads": 2,
        "attn_pooler_queries": 8,
        "output_tokens": True,
    },
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 1,
        "embed_cls": True,
        "output_tokens": True,
    },
    "multimodal_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    "custom_text": True,
}
