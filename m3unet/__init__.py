"""M3UNet: multi-modal modified U-Net for text-guided image restoration (pure PyTorch)."""
__version__ = "0.1.0"
