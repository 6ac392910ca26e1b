"""Layers that start at zero (a generator's output head, as the originals initialise them) under transformers'
weight initialisation.

transformers initialises a model module by module, children before their parent, and for code outside
transformers skips a module whose own parameters are all initialised already, or that has none: a parent's
``_init_weights`` zeroing a child's weight may never run, and the child's own init would come first anyway.
So the child is tagged where it is built (:func:`zero_initialised`) and zeroed on its own turn
(:func:`init_zero_initialised` from the model's ``_init_weights``). Loaded weights are left alone.
"""

from __future__ import annotations

from torch import nn
from transformers import initialization as init


def zero_initialised(module: nn.Module) -> nn.Module:
    """Tag ``module`` (a Linear) to be initialised to zero; returns it."""
    module._vistok_zero_init = True
    return module


def init_zero_initialised(module: nn.Module) -> bool:
    """Zero a tagged module's weight (and bias); True when ``module`` was tagged."""
    if not getattr(module, "_vistok_zero_init", False):
        return False
    init.zeros_(module.weight)
    if getattr(module, "bias", None) is not None:
        init.zeros_(module.bias)
    return True
