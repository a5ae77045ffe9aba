"""Restore: the :class:`Restorer` pipeline (text, embedding and control in; tiled, seeded sampling)."""
from .pipeline import DEFAULT_OVERLAP, DEFAULT_STEPS, DEFAULT_TILE, MIN_TILE, InputError, Progress, Restorer, check_image

__all__ = ["DEFAULT_OVERLAP", "DEFAULT_STEPS", "DEFAULT_TILE", "MIN_TILE", "InputError", "Progress", "Restorer", "check_image"]
