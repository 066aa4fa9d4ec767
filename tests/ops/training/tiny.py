"""A tiny CLIP (a few hundred thousand parameters besides the token embedding) that trains in seconds on CPU."""

TINY_MODEL = "cf-tiny-test"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
