"""Family descriptors and their registry.

A family is one folder ``vistok/modeling/<family>/`` whose ``__init__.py`` exports ``FAMILY``, a
:class:`Family`: the models it defines (tokenizers and generators, each with the one name used by
``vistok convert``, ``vistok train`` and its card template), their converters and release presets, and
what training and sampling need to know about each generator. Everything outside the family folders
(Auto registration, the ``vistok`` command line, training, evaluation, the demo) is built from
:func:`families`: no other module names a family.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

TOKENIZER, GENERATOR = "tokenizer", "generator"


@dataclass(frozen=True)
class TokenizerSpec:
    """A tokenizer model of a family. ``name`` is its spelling in ``model.family`` of a training config."""

    name: str
    config_class: type
    model_class: type


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator model of a family and what its training and export need.

    ``objective(model, tokenizer, tokens, labels, loss_config) -> (logits [n, V], targets [n])`` is the
    class-conditional training objective; ``token_layouts`` the tokenizer layouts it trains on;
    ``config_from_tokenizer(tokenizer_config) -> dict`` the config fields a fresh generator takes from its
    tokenizer; ``pipeline`` (and ``text_pipeline`` for text conditioning) the name of the ``vistok.pipelines``
    class its export becomes (a name, resolved on use: the pipelines import the model packages).
    """

    name: str
    config_class: type
    model_class: type
    pipeline: str
    objective: Callable
    token_layouts: tuple[str, ...]
    config_from_tokenizer: Callable[[Any], dict]
    label_smoothing: float = 0.0  # the original training recipe's
    text_pipeline: str | None = None
    takes_token_prefix: bool = False  # trains on a prefix of a longer (variable-length 1D) token sequence
    needs_tokenizer: bool = False  # the objective itself uses the tokenizer (not only to make tokens)
    # text-conditional training: ``text_objective(model, tokenizer, tokens, text_pipeline, captions, loss_config) ->
    # (logits [n, V], targets [n])``, or the loss itself for a continuous-token generator (token_layouts
    # ("continuous",): ``tokens`` are then the KL tokenizer's posterior [B, n, 2C]) (None: the next-token objective
    # on left-padded T5 features, LlamaGen t2i), and
    # the transformers class of the frozen text encoder that ``loss.text_encoder`` names
    text_objective: Callable | None = None
    text_encoder_class: str = "T5EncoderModel"

    def pipeline_class(self, text: bool = False) -> type:
        from . import pipelines

        return getattr(pipelines, self.text_pipeline if text else self.pipeline)


@dataclass(frozen=True)
class ConverterSpec:
    """``vistok convert NAME``: ``convert(source, output, *, preset, overwrite, push_to_hub, **options) -> Path``.

    ``options`` are the converter's own command-line flags, ``[(flag, argparse keyword arguments)]``;
    ``presets`` the released checkpoints it knows, ``{name: Release}``.
    """

    name: str
    kind: str  # TOKENIZER or GENERATOR
    convert: Callable
    presets: dict = field(default_factory=dict)
    options: tuple = ()
    description: str = ""


@dataclass(frozen=True)
class Family:
    """One family folder: its models and converters."""

    name: str
    description: str
    tokenizers: tuple[TokenizerSpec, ...] = ()
    generators: tuple[GeneratorSpec, ...] = ()
    converters: tuple[ConverterSpec, ...] = ()
    # pipeline classes that live in the family folder (a family's own sampler); vistok.pipelines exports them by name
    pipelines: tuple[type, ...] = ()

    @property
    def models(self) -> tuple:
        return self.tokenizers + self.generators


_FAMILIES: tuple[Family, ...] | None = None


def families() -> tuple[Family, ...]:
    """Every family folder under ``vistok.modeling`` that exports ``FAMILY``, in name order."""
    global _FAMILIES
    if _FAMILIES is None:
        from . import modeling

        found = []
        for info in sorted(pkgutil.iter_modules(modeling.__path__), key=lambda m: m.name):
            if not info.ispkg:
                continue
            module = importlib.import_module(f"{modeling.__name__}.{info.name}")
            family = getattr(module, "FAMILY", None)
            if isinstance(family, Family):
                found.append(family)
        _FAMILIES = tuple(found)
    return _FAMILIES


def tokenizer_specs() -> dict[str, TokenizerSpec]:
    return {spec.name: spec for family in families() for spec in family.tokenizers}


def generator_specs() -> dict[str, GeneratorSpec]:
    return {spec.name: spec for family in families() for spec in family.generators}


def converter_specs() -> dict[str, ConverterSpec]:
    return {spec.name: spec for family in families() for spec in family.converters}


def spec_for_model_type(model_type: str, kind: str):
    """The TokenizerSpec/GeneratorSpec whose config class has ``model_type`` (None if none does)."""
    specs = tokenizer_specs() if kind == TOKENIZER else generator_specs()
    return next((s for s in specs.values() if s.config_class.model_type == model_type), None)


def register_auto_classes() -> None:
    """Register every family's configs and models with AutoConfig/AutoModel (and tokenizers' image processor)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    from .image_processing import VistokImageProcessor

    for family in families():
        for spec in family.models:
            AutoConfig.register(spec.config_class.model_type, spec.config_class, exist_ok=True)
            AutoModel.register(spec.config_class, spec.model_class, exist_ok=True)
        for spec in family.tokenizers:
            AutoImageProcessor.register(spec.config_class, slow_image_processor_class=VistokImageProcessor, exist_ok=True)
