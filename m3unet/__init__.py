"""M3UNet: text-guided diffusion image restoration (Multi-Modal Modified U-Net), usable without ComfyUI.

The public API, by layer: :mod:`m3unet.core` (network, text encoder, checkpoints),
:mod:`m3unet.restore` (the :class:`~m3unet.restore.Restorer`), :mod:`m3unet.auto` (automatic
restore) and :mod:`m3unet.caption` (MLLM text prior). Training, evaluation and the command line
(``python -m m3unet``) live in :mod:`m3unet.training`, :mod:`m3unet.evaluation` and :mod:`m3unet.cli`.
"""
__version__ = "0.1.0"
