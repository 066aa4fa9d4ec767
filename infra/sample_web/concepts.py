"""The concept vocabulary of the sample web and the words people would write about it.

A concept is a colour and a shape ("red circle"). Its frequency on the web follows Zipf's law over a fixed rank
order, so a few concepts dominate and the tail is rare but present: the imbalance MetaCLIP's balancing exists
to undo. The rank order does not depend on the seed, so the head concept is the same for every generated web.

Captions are built from templates in English (varied, sometimes capitalised, sometimes with HTML-special
characters) and in German, French and Spanish with correct gender agreement, so that a language identifier has
real sentences to judge rather than word salad.
"""

from __future__ import annotations

import math
import re

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 40),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 35),
    "green": (40, 155, 60),
    "blue": (35, 80, 205),
    "purple": (125, 50, 165),
    "pink": (240, 125, 185),
    "brown": (115, 70, 35),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (238, 238, 232),
    "grey": (145, 145, 148),
    "black": (28, 28, 32),
    "beige": (218, 202, 170),
}

CONCEPTS: tuple[str, ...] = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)
ZIPF_EXPONENT = 1.2
TAIL_FLOOR_SHARE = 0.006
_RANK_SEED = 20240501


def concept_parts(concept: str) -> tuple[str, str]:
    colour, shape = concept.split(" ")
    return colour, shape


def class_dirname(concept: str) -> str:
    return concept.replace(" ", "_")


def ranked_concepts() -> list[str]:
    """Concepts from most to least frequent; a fixed shuffle so no colour or shape owns the head."""
    order = np.random.default_rng(_RANK_SEED).permutation(len(CONCEPTS))
    return [CONCEPTS[i] for i in order]


def zipf_quota(n: int) -> dict[str, int]:
    """How many of ``n`` images show each concept: a floor for every concept, the rest shared Zipf-like.

    The floor (``TAIL_FLOOR_SHARE`` of ``n`` each) keeps tail concepts rare but learnable; the Zipf share over
    the rank order puts about a fifth of all images on the head concept. Largest-remainder rounding makes the
    counts sum to ``n`` exactly.
    """
    ranked = ranked_concepts()
    floor = min(math.ceil(TAIL_FLOOR_SHARE * n), n // len(ranked))
    weights = 1.0 / np.arange(1, len(ranked) + 1) ** ZIPF_EXPONENT
    exact = (n - floor * len(ranked)) * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - floor * len(ranked) - counts.sum()]:
        counts[i] += 1
    return dict(zip(ranked, (counts + floor).tolist(), strict=True))


def zipf_weights() -> dict[str, float]:
    """Each concept's share of the web by rank alone (no floor), for drawing what a wrong caption names: a page
    mislabels its images with the names it uses most."""
    ranked = ranked_concepts()
    weights = 1.0 / np.arange(1, len(ranked) + 1) ** ZIPF_EXPONENT
    return dict(zip(ranked, (weights / weights.sum()).tolist(), strict=True))


# Concepts a shopper confuses: neighbouring colours, shapes alike in outline.
LOOK_ALIKE_COLOURS: dict[str, tuple[str, ...]] = {
    "red": ("orange", "pink", "brown"),
    "orange": ("red", "yellow", "brown"),
    "yellow": ("orange", "green"),
    "green": ("yellow", "blue"),
    "blue": ("purple", "green"),
    "purple": ("blue", "pink"),
    "pink": ("red", "purple"),
    "brown": ("red", "orange"),
}
LOOK_ALIKE_SHAPES: dict[str, tuple[str, ...]] = {
    "circle": ("ring",),
    "ring": ("circle",),
    "square": ("cross", "circle"),
    "cross": ("star", "square"),
    "star": ("cross", "triangle"),
    "triangle": ("star",),
}


def look_alike(rng: np.random.Generator, concept: str) -> str:
    """Another concept that looks much like ``concept``: a neighbouring colour or a shape alike in outline."""
    colour, shape = concept_parts(concept)
    if rng.random() < 0.5:
        return f"{_pick(rng, LOOK_ALIKE_COLOURS[colour])} {shape}"
    return f"{colour} {_pick(rng, LOOK_ALIKE_SHAPES[shape])}"


def metadata_entries() -> list[str]:
    """A MetaCLIP-format metadata list for the sample web: colours, shapes, concept bigrams, backgrounds.

    MetaCLIP matching is case-sensitive and captions often start with the concept ("Pink star drawn on ..."),
    so each entry also comes capitalised, as a real list has both (WordNet lower case, Wikipedia titles not).
    """
    base = [*COLOURS, *SHAPES, *CONCEPTS, *BACKGROUNDS]
    return base + [e[:1].upper() + e[1:] for e in base if e[:1].islower()]


_EN = (
    "a {c} {s} on a {bg} background",
    "photo of a {sz}{c} {s}",
    "a {sz}{c} {s} on {bg}",
    "{C} {s} drawn on a {bg} background",
    "close-up of a {c} {s}, {bg} background",
    "the {c} {s} we painted in art class",
    "simple {c} {s} shape, flat design",
    "a {c} {s} in the {pos} of the picture",
    "{C} {s} with a {bg} backdrop",
    "my favourite {c} {s}!",
    "stock image: {c} {s} isolated on {bg}",
    "a {sz}{c} {s} & nothing else",
    '"{C} {s}" by an unknown artist',
)
_EN_WITH_DISTRACTOR = (
    "a {sz}{c} {s} next to a tiny {c2} {s2}",
    "{C} {s} and a little {c2} {s2} in the corner",
)
_EN_TINY = ("{c} {s} icon", "small {c} {s} icon", "favicon with a {c} {s}")
_EN_BANNER = ("banner with a {c} {s} on a {bg} background", "{C} {s} header banner for the shapes blog")
_EN_SHORT = ("{c} {s}", "{C} {s}", "{s}")

JUNK_ALT: tuple[str, ...] = (
    "IMG_{n:04d}.jpg",
    "DSC{n:05d}.JPG",
    "image{n:03d}.png",
    "click here",
    "logo",
    "image",
    "photo",
    "thumbnail",
    "untitled",
    "read more",
    "spacer",
    "click here for more",
    "see the full gallery",
    "picture of the week",
    "screenshot {n}",
)

GENERIC: tuple[str, ...] = (
    "product photo, front view",
    "new arrivals in our shop this week",
    "item pictured may vary from the one delivered",
    "one of our best sellers",
    "a nice picture for your project",
    "buy now with free shipping",
    "high quality image of the product",
    "a simple design we like a lot",
)
GENERIC_WITH_BACKDROP: tuple[str, ...] = (
    "product shot on a {bg} background",
    "catalogue picture, {bg} backdrop",
    "our bestseller photographed on {bg}",
    "an item on a {bg} background, studio light",
    "isolated object on {bg}",
)

# German: (stem, declinable); nouns with grammatical gender.
_DE_COLOUR = {
    "red": "rot",
    "orange": "orangefarben",
    "yellow": "gelb",
    "green": "grün",
    "blue": "blau",
    "purple": "violett",
    "pink": "rosafarben",
    "brown": "braun",
}
_DE_SHAPE = {
    "circle": ("Kreis", "m"),
    "square": ("Quadrat", "n"),
    "triangle": ("Dreieck", "n"),
    "star": ("Stern", "m"),
    "cross": ("Kreuz", "n"),
    "ring": ("Ring", "m"),
}
_DE_BG = {"white": "weißem", "grey": "grauem", "black": "schwarzem", "beige": "beigem"}
_FR_COLOUR = {
    "red": ("rouge", "rouge"),
    "orange": ("orange", "orange"),
    "yellow": ("jaune", "jaune"),
    "green": ("vert", "verte"),
    "blue": ("bleu", "bleue"),
    "purple": ("violet", "violette"),
    "pink": ("rose", "rose"),
    "brown": ("marron", "marron"),
}
_FR_SHAPE = {
    "circle": ("cercle", "m"),
    "square": ("carré", "m"),
    "triangle": ("triangle", "m"),
    "star": ("étoile", "f"),
    "cross": ("croix", "f"),
    "ring": ("anneau", "m"),
}
_FR_BG = {"white": "blanc", "grey": "gris", "black": "noir", "beige": "beige"}
_ES_COLOUR = {
    "red": ("rojo", "roja"),
    "orange": ("naranja", "naranja"),
    "yellow": ("amarillo", "amarilla"),
    "green": ("verde", "verde"),
    "blue": ("azul", "azul"),
    "purple": ("morado", "morada"),
    "pink": ("rosa", "rosa"),
    "brown": ("marrón", "marrón"),
}
_ES_SHAPE = {
    "circle": ("círculo", "m"),
    "square": ("cuadrado", "m"),
    "triangle": ("triángulo", "m"),
    "star": ("estrella", "f"),
    "cross": ("cruz", "f"),
    "ring": ("anillo", "m"),
}
_ES_BG = {"white": "blanco", "grey": "gris", "black": "negro", "beige": "beige"}
LANGUAGES: tuple[str, ...] = ("de", "fr", "es")
_ARTICLE = re.compile(r"\b([Aa]) (?=[aeiou])")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def english_caption(
    rng: np.random.Generator,
    concept: str,
    *,
    bg: str,
    size_word: str = "",
    position: str = "middle",
    distractor: str | None = None,
    style: str = "normal",
) -> str:
    """One English caption naming ``concept``; ``style`` is normal, tiny, banner or short."""
    c, s = concept_parts(concept)
    fields = {"c": c, "C": c.capitalize(), "s": s, "bg": bg, "sz": f"{size_word} " if size_word else ""}
    if style == "tiny":
        template = _pick(rng, _EN_TINY)
    elif style == "banner":
        template = _pick(rng, _EN_BANNER)
    elif style == "short":
        template = _pick(rng, _EN_SHORT)
    elif distractor is not None and rng.random() < 0.5:
        c2, s2 = concept_parts(distractor)
        fields.update(c2=c2, s2=s2)
        template = _pick(rng, _EN_WITH_DISTRACTOR)
    else:
        template = _pick(rng, _EN)
    return _ARTICLE.sub(r"\1n ", template.format(pos=position, **fields))


def junk_caption(rng: np.random.Generator) -> str:
    return _pick(rng, JUNK_ALT).format(n=int(rng.integers(1, 10000)))


def generic_caption(rng: np.random.Generator, *, bg: str) -> str:
    """A caption that says nothing about which concept is shown. Half name the backdrop, a word the sample web's
    metadata lists, so they pass MetaCLIP curation as real boilerplate does; the rest usually match nothing."""
    if rng.random() < 0.5:
        return _pick(rng, GENERIC_WITH_BACKDROP).format(bg=bg)
    return _pick(rng, GENERIC)


def foreign_caption(rng: np.random.Generator, concept: str, lang: str, *, bg: str) -> str:
    """A German, French or Spanish sentence naming ``concept`` with the right article and adjective forms.

    Every sentence has a non-ASCII letter, so a page decoded with the wrong charset visibly garbles it.
    """
    colour, shape = concept_parts(concept)
    variant = int(rng.integers(3))
    if lang == "de":
        noun, gender = _DE_SHAPE[shape]
        stem = _DE_COLOUR[colour]
        nom = f"ein {stem}{'er' if gender == 'm' else 'es'} {noun}"
        acc = f"{'einen' if gender == 'm' else 'ein'} {stem}{'en' if gender == 'm' else 'es'} {noun}"
        return (
            f"{nom[0].upper()}{nom[1:]} auf {_DE_BG[bg]} Hintergrund, schön gezeichnet",
            f"Das ist {nom}, gemalt mit Wasserfarben für die Schule",
            f"Hier sieht man {acc}, größer als gedacht",
        )[variant]
    if lang == "fr":
        noun, gender = _FR_SHAPE[shape]
        adj = _FR_COLOUR[colour][gender == "f"]
        art = "une" if gender == "f" else "un"
        return (
            f"{art.capitalize()} {noun} {adj} sur un fond {_FR_BG[bg]}, très simple",
            f"Photo d'{art} {noun} {adj}, vue de côté",
            f"Voici {art} {noun} {adj}, dessin réalisé en classe",
        )[variant]
    if lang == "es":
        noun, gender = _ES_SHAPE[shape]
        adj = _ES_COLOUR[colour][gender == "f"]
        art = "una" if gender == "f" else "un"
        return (
            f"{art.capitalize()} {noun} {adj} sobre un fondo {_ES_BG[bg]}, diseño simple",
            f"Foto de {art} {noun} {adj} en el centro de la fotografía",
            f"{'Esta' if gender == 'f' else 'Este'} es {art} {noun} {adj} que dibujé en clase",
        )[variant]
    raise ValueError(f"unknown language {lang!r}")
