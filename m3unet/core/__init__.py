"""Core: the M3UNet network (paper Sec. 3), its text encoder, pixel-level control, bridge diffusion,
tiling, checkpoints and image helpers. Everything above builds on this layer; it imports nothing
of the project's above it."""
from .control import MAX_STRENGTH, Control, make_control
from .degradations import KINDS, LABEL, Degradation, level
from .unet import M3UNet
from .weights import DEFAULT_WEIGHTS, REPO, CheckpointError, FileCache, file_fingerprint, load_model, read_metadata

__all__ = ["MAX_STRENGTH", "Control", "make_control", "KINDS", "LABEL", "Degradation", "level", "M3UNet",
           "DEFAULT_WEIGHTS", "REPO", "CheckpointError", "FileCache", "file_fingerprint", "load_model",
           "read_metadata"]
