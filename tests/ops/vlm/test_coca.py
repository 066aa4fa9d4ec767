"""The CoCa backend on a tiny CoCa trained in the session: decoding checked step by step against the model's own
forward, pair scores against the textbook computation, and loading from a checkpoint and from the MLflow
registry through the production loader."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from infra.tracking import ARCHITECTURE_TAG, log_clip_model, log_coca_model
from ops.training import load_trained
from ops.vlm import PairScorer, VlmConfig, load_backend
from ops.vlm.coca import CocaBackend, last_position_logits
from ops.vlm.decoding import DecodeConfig, decode, normalised
from tests.ops.dataset.lakes import image_bytes
from tests.ops.training.tiny import TINY_COCA_CONFIG, TINY_COCA_MODEL, TINY_CONFIG, TINY_MODEL

COLOURS = ("red", "green", "blue", "yellow", "red", "blue")


def pictures(n: int = len(COLOURS)) -> list[Image.Image]:
    rng = np.random.default_rng(5)
    return [Image.open(io.BytesIO(image_bytes(COLOURS[i % len(COLOURS)], rng))).convert("RGB") for i in range(n)]


@pytest.fixture(scope="module")
def backend(trained_coca) -> CocaBackend:
    config = VlmConfig(model=str(trained_coca.checkpoint), backend="coca", engine_kwargs=trained_coca.engine_kwargs)
    return load_backend(config)


@pytest.fixture(scope="module")
def reference(trained_coca):
    """The same weights loaded by open_clip alone, and the pixels it would see."""
    model, preprocess, tokenizer = load_trained(trained_coca.checkpoint, TINY_COCA_MODEL, TINY_COCA_CONFIG)
    return model, torch.stack([preprocess(im) for im in pictures()]), tokenizer


def test_loads_from_a_checkpoint_as_a_named_captioner_and_pair_scorer(backend, trained_coca) -> None:
    assert isinstance(backend, CocaBackend) and isinstance(backend, PairScorer)
    assert backend.name == f"{TINY_COCA_MODEL}@{trained_coca.checkpoint}"
    assert backend.max_new_tokens == TINY_COCA_CONFIG["text_cfg"]["context_length"] - 1
    assert (backend.start, backend.end) == (49406, 49407)


def test_last_position_logits_equal_the_models_forward(reference) -> None:
    model, pixels, tokenizer = reference
    prefixes = tokenizer(["a red square", "a blue", "yellow things here", "a", "green green", "b"])[:, :4]
    with torch.inference_mode():
        full = model(pixels, prefixes, output_labels=False)["logits"][:, -1]
        _, image_embs = model._encode_image(pixels)
        _, token_embs = model.text(prefixes)
        last = last_position_logits(model.text_decoder, image_embs, token_embs)
    torch.testing.assert_close(last, full, rtol=1e-5, atol=1e-5)


def _logprobs(model, pixel: torch.Tensor, sequence: list[int]) -> torch.Tensor:
    """The next-token distribution from CoCa's own forward on one image and one prefix."""
    with torch.inference_mode():
        logits = model(pixel[None], torch.tensor([sequence]), output_labels=False)["logits"][0, -1]
    return torch.log_softmax(logits.double(), dim=-1)


def reference_beam(model, pixel, start, end, max_new_tokens, beams, length_penalty):
    """The decoding rule written out plainly, one hypothesis and one forward pass at a time."""
    live: list[tuple[list[int], float]] = [([start], 0.0)]
    finished: list[tuple[tuple[int, ...], float, bool]] = []
    for _ in range(max_new_tokens):
        candidates = []
        for sequence, score in live:
            values, tokens = torch.topk(_logprobs(model, pixel, sequence), 2 * beams)
            candidates += [(score + v, sequence, t) for v, t in zip(values.tolist(), tokens.tolist(), strict=True)]
        candidates.sort(key=lambda c: -c[0])
        live = []
        for score, sequence, token in candidates[: 2 * beams]:
            if token == end:
                finished.append((tuple(sequence[1:]), score, True))
                continue
            live.append(([*sequence, token], score))
            if len(live) == beams:
                break
        if len(finished) >= beams:
            break
    else:
        finished += [(tuple(s[1:]), score, False) for s, score in live]
    return max(finished, key=lambda f: normalised(f[1], len(f[0]) + f[2], length_penalty))


@pytest.mark.parametrize(("beams", "length_penalty"), [(1, 1.0), (3, 1.0), (2, 0.0)])
def test_decoding_matches_the_step_by_step_reference(backend, reference, beams, length_penalty) -> None:
    model, pixels, _ = reference
    with torch.inference_mode():
        _, image_embs = model._encode_image(pixels)

    def next_logprobs(rows, prefixes):
        with torch.inference_mode():
            _, token_embs = model.text(prefixes)
            return torch.log_softmax(last_position_logits(model.text_decoder, image_embs[rows], token_embs), -1)

    config = DecodeConfig(max_new_tokens=5, num_beams=beams, length_penalty=length_penalty)
    got = decode(next_logprobs, len(pixels), backend.start, backend.end, config)
    for i, decoded in enumerate(got):
        expected = reference_beam(model, pixels[i], backend.start, backend.end, 5, beams, length_penalty)
        tokens, logprob, finished = expected
        assert (decoded.tokens, decoded.finished) == (tokens, finished)
        # a sum of float32 log-probabilities, batched against one by one: equal to float32's precision
        assert decoded.logprob == pytest.approx(logprob, rel=1e-5, abs=1e-4)
        assert len(decoded.tokens) <= 5


def test_generate_is_deterministic_bounded_and_batch_independent(backend) -> None:
    images = pictures()
    captions = backend.generate(images, ["ignored"] * len(images), max_new_tokens=8)
    assert captions == backend.generate(images, ["another prompt"] * len(images), max_new_tokens=8)
    assert [backend.generate([im], [""], 8)[0] for im in images] == captions
    assert all(isinstance(c, str) and "<" not in c for c in captions)
    short = backend.generate(images, [""] * len(images), max_new_tokens=2)
    tokenizer = backend.tokenizer
    assert all(len(tokenizer.encode(c)) <= 2 for c in short)
    assert backend.generate([], [], 8) == [] and backend.model_seconds > 0
    with pytest.raises(ValueError, match="prompts"):
        backend.generate(images, [""], 8)


def test_detokenize_reattaches_punctuation(backend) -> None:
    tokens = backend.tokenizer.encode("a red square , on white . it is big !")
    assert backend.detokenize(tokens) == "a red square, on white. it is big!"


def test_pair_scores_equal_the_textbook_computation(backend, reference) -> None:
    model, pixels, tokenizer = reference
    captions = ["a red square 1", "a green square", "", "a blue square on a white page", "red", "a"]
    scores = backend.score_pairs(pictures(), captions)
    with torch.inference_mode():
        image = model.encode_image(pixels, normalize=True)
        text = model.encode_text(tokenizer(captions), normalize=True)
        out = model(pixels, tokenizer(captions))  # teacher forcing over the whole padded context
    np.testing.assert_allclose(scores.similarity, (image * text).sum(-1).numpy(), atol=1e-5)
    logprobs = torch.log_softmax(out["logits"], -1).gather(-1, out["labels"][..., None])[..., 0]
    counted = out["labels"] != 0
    expected = ((logprobs * counted).sum(1) / counted.sum(1)).numpy()
    np.testing.assert_allclose(scores.likelihood, expected, atol=1e-4)
    alone = backend.score_pairs(pictures()[:1], captions[:1])  # batch composition changes nothing
    np.testing.assert_allclose(alone.likelihood, scores.likelihood[:1], atol=1e-5)
    assert backend.score_pairs([], []).similarity.shape == (0,)


def test_captions_that_fit_their_image_score_higher_after_training(backend) -> None:
    """The session's few steps teach the contrastive towers which colour a picture shows. The decoder, in as few
    steps, learns the form of the captions long before it reads the colour off the image (the likelihoods of the
    right and the swapped colour differ by less than run-to-run noise), so its likelihood is held to the lesson it
    has learned: a caption like those it trained on beats one unlike any of them."""
    images = pictures(4)
    right = backend.score_pairs(images, [f"a {c} square" for c in COLOURS[:4]])
    wrong = backend.score_pairs(images, [f"a {c} square" for c in ("blue", "yellow", "red", "green")])
    unseen = backend.score_pairs(images, ["seven zebras debating quantum lattices"] * 4)
    assert right.similarity.mean() > wrong.similarity.mean()
    assert right.likelihood.mean() > unseen.likelihood.mean()


def test_round_trips_through_the_mlflow_registry(coca_registry, backend, trained_coca) -> None:
    tracker, version = coca_registry
    assert version == "2"
    tags = tracker.client.get_model_version("clipfoundry-coca", "1").tags
    assert tags[ARCHITECTURE_TAG] == TINY_COCA_MODEL and tags["dataset.version"] == trained_coca.version
    images = pictures()
    expected = backend.generate(images, [""] * len(images), 8)
    engine = {"tracking_uri": tracker.tracking_uri}
    for uri, label in (
        ("models:/clipfoundry-coca/latest", "models:/clipfoundry-coca/2"),
        ("models:/clipfoundry-coca@round0", "models:/clipfoundry-coca/1"),
        ("models:/clipfoundry-coca/1", "models:/clipfoundry-coca/1"),
    ):
        loaded = load_backend(VlmConfig(model=uri, backend="coca", engine_kwargs=engine))
        assert loaded.name == f"{TINY_COCA_MODEL}@{label}"
        assert loaded.generate(images, [""] * len(images), 8) == expected
    download = tracker.model_version_uri("clipfoundry-coca", "1")
    loaded = load_backend(VlmConfig(model=download, backend="coca", engine_kwargs=engine))
    assert loaded.name == f"{TINY_COCA_MODEL}@{download}"


def test_what_is_not_a_usable_coca_is_refused(coca_registry, trained_coca) -> None:
    tracker, _ = coca_registry
    checkpoint = str(trained_coca.checkpoint)
    with pytest.raises(ValueError, match="architecture"):
        load_backend(VlmConfig(model=checkpoint, backend="coca"))
    with pytest.raises(ValueError, match="unknown coca engine_kwargs"):
        load_backend(VlmConfig(model=checkpoint, backend="coca", engine_kwargs={"beams": 3}))
    with pytest.raises(ValueError, match="stages"):
        load_backend(VlmConfig(model="models:/clipfoundry-coca/Production", backend="coca"))
    from ops.training.checkpoint import register_model_config

    register_model_config(TINY_MODEL, TINY_CONFIG)
    import open_clip

    clip = open_clip.create_model(TINY_MODEL)
    run_id = tracker.run_for("another-run", {})
    with pytest.raises(TypeError, match="not a CoCa"):
        log_coca_model(tracker, run_id, clip, "clipfoundry-clip", {}, architecture=TINY_MODEL)
    log_clip_model(tracker, run_id, clip, "clip", {}, architecture=TINY_MODEL, architecture_config=TINY_CONFIG)
    engine = {"tracking_uri": tracker.tracking_uri}
    with pytest.raises(TypeError, match="not an open_clip CoCa"):
        load_backend(VlmConfig(model="models:/clip/1", backend="coca", engine_kwargs=engine))
