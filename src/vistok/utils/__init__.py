"""Helpers every part of vistok uses (conversion, training, evaluation, the demo)."""
