"""Networks: the denoising UNet and the EMA of its weights."""

from pipeline.models.ema import ema_decay, make_ema
from pipeline.models.unet import UNet

__all__ = ["UNet", "ema_decay", "make_ema"]
