"""Stage settings as Dagster resources, derived from the engine's config dataclasses, so a field and its default
exist in exactly one place (the dataclass in ``ops/``).

Each config class a stage declares in :mod:`ops.graph` becomes one ``ConfigurableResource`` (``CrawlConfig`` →
``CrawlSettings`` under the resource key ``crawl_settings``) with the same fields and defaults; a nested config
becomes a nested Dagster ``Config``, a tuple a list, and ``.config()`` gives the engine object back. A profile
writes its choices as engine configs (:func:`as_resource`), run config can override any field in the launchpad,
and nothing here loads a model or talks to a service.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Union

from dagster import Config, ConfigurableResource
from pydantic import Field

from ops import graph


def settings_key(config_cls: type) -> str:
    """``CrawlConfig`` → ``crawl_settings``: the resource key stages read their settings from."""
    stem = config_cls.__name__.removesuffix("Config")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower() + "_settings"


def _annotation(tp: Any, nested: dict[type, type]) -> Any:
    """The pydantic annotation Dagster config accepts for a dataclass field type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"only X | None unions are supported in settings, not {tp}")
        return _annotation(inner[0], nested) | None
    if origin is tuple:
        return list[_annotation(args[0], nested)]
    if origin is dict or tp is dict:
        return dict[str, Any]
    if dataclasses.is_dataclass(tp):
        return _model(tp, Config, nested)
    if tp in (int, float, str, bool):
        return tp
    raise TypeError(f"unsupported settings field type {tp}")


def _model(config_cls: type, base: type, nested: dict[type, type]) -> type:
    """A pydantic model (``base`` subclass) with the dataclass's fields and defaults, cached per class."""
    if config_cls in nested:
        return nested[config_cls]
    hints = typing.get_type_hints(config_cls)
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__module__": __name__, "__doc__": config_cls.__doc__, "__annotations__": annotations}
    for f in dataclasses.fields(config_cls):
        annotation = _annotation(hints[f.name], nested)
        annotations[f.name] = annotation
        namespace[f.name] = Field(default_factory=_default_factory(f, annotation))
    name = config_cls.__name__.removesuffix("Config") + ("Settings" if base is ConfigurableResource else "Options")
    model = type(name, (base,), namespace)
    nested[config_cls] = model
    return model


def _default_factory(f: dataclasses.Field, annotation: Any) -> Any:
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if default is dataclasses.MISSING:
        raise TypeError(f"settings field {f.name} needs a default")
    value = _to_settings(default)
    return lambda: value if not isinstance(value, list | dict) else type(value)(value)


def _to_settings(value: Any) -> Any:
    """An engine value as a settings value: dataclasses to their settings models, tuples to lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        model = _MODELS[type(value)]
        return model(**{f.name: _to_settings(getattr(value, f.name)) for f in dataclasses.fields(value)})
    if isinstance(value, tuple):
        return [_to_settings(v) for v in value]
    return value


def _to_engine(config_cls: type, settings: Any) -> Any:
    """The engine dataclass back from a settings model: nested models to dataclasses, lists to tuples."""
    hints = typing.get_type_hints(config_cls)
    values = {}
    for f in dataclasses.fields(config_cls):
        value = getattr(settings, f.name)
        tp = hints[f.name]
        inner = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) else [tp]
        target = inner[0] if len(inner) == 1 else tp
        if value is not None and dataclasses.is_dataclass(target):
            value = _to_engine(target, value)
        elif value is not None and typing.get_origin(target) is tuple:
            value = tuple(value)
        values[f.name] = value
    return config_cls(**values)


_MODELS: dict[type, type] = {}


def settings_resource(config_cls: type) -> type[ConfigurableResource]:
    """The Dagster resource class for one engine config class."""
    resource = _model(config_cls, ConfigurableResource, _MODELS)
    resource.config = lambda self: _to_engine(config_cls, self)
    return resource


def as_resource(config: Any) -> ConfigurableResource:
    """A profile's engine config as the resource instance Dagster is given."""
    return _to_settings(config)


SETTINGS: dict[str, type[ConfigurableResource]] = {settings_key(c): settings_resource(c) for c in graph.iter_settings()}

CrawlSettings = SETTINGS["crawl_settings"]
DownloadSettings = SETTINGS["download_settings"]
DedupSettings = SETTINGS["dedup_settings"]
CurationSettings = SETTINGS["curation_settings"]
QualitySettings = SETTINGS["quality_settings"]
BootstrapSettings = SETTINGS["bootstrap_settings"]
SafetySettings = SETTINGS["safety_settings"]
RecaptionSettings = SETTINGS["recaption_settings"]
DatasetSettings = SETTINGS["dataset_settings"]
ModelSettings = SETTINGS["model_settings"]
EvaluationSettings = SETTINGS["evaluation_settings"]
GuardrailSettings = SETTINGS["guardrail_settings"]
