"""Checks of config fields, shared by every family's configuration: a bad value fails in ``__init__`` with
the field named, instead of deep inside a layer ("negative dimension")."""

from __future__ import annotations

import math


def check_sizes(**fields) -> None:
    """Each field is a positive int (``None`` passes: the config derives it)."""
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be a positive int, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be a positive int, got {value}")


def check_probabilities(**fields) -> None:
    """Each field is a number in [0, 1] (dropout rates, drop probabilities)."""
    for name, value in fields.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a number in [0, 1], got {value}")


def check_positive_numbers(**fields) -> None:
    """Each field is a finite number > 0 (epsilons, ratios, scales; ``None`` passes)."""
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a positive number, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value}")


def check_size_list(name: str, values) -> None:
    """A non-empty sequence of positive ints (channel multipliers)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty list of positive ints, got {values!r}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a non-empty list of positive ints, got {list(values)!r}")
