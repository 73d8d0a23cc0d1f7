"""The learned refiner (UNet: splatted feature channels -> RGB) loaded from an OMG checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError


@dataclass
class Refiner:
    """net: (B, C, H, W) features -> (B, 3, H, W) RGB; channels: C, the feature width it expects."""

    net: torch.nn.Module
    channels: int
    path: str

    @torch.no_grad()
    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        dev = next(self.net.parameters()).device
        return self.net(features.to(dev)).clamp(0.0, 1.0)


def load_refiner(checkpoint: str | Path, device: str | torch.device = "cpu") -> Refiner:
    """The refiner weights of an OMG checkpoint (``model`` state dict, keys ``refiner.*``)."""
    from ..model.omg import OMGConfig, UNetRefiner  # lazily: the network code is only needed here
    from ..model.train import load_checkpoint

    path = Path(checkpoint)
    ck = load_checkpoint(path)  # InputError for missing / non-OMG files
    from ..model.state_check import check_state_fits, first_line

    try:
        cfg = OMGConfig.from_dict(ck["config"])
        state = {k[len("refiner."):]: v for k, v in ck["model"].items() if k.startswith("refiner.")}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(path, f"checkpoint has no usable model configuration ({type(exc).__name__}: "
                               f"{first_line(exc)})") from None
    if not state:
        raise InputError(path, "checkpoint holds no refiner weights (no 'refiner.*' entries)")
    # on the meta device first: the configuration sizes the network, and a crafted one must not allocate
    check_state_fits(lambda: UNetRefiner(cfg.feat_channels, tuple(cfg.unet_channels)), state, path, "refiner weights")
    net = UNetRefiner(cfg.feat_channels, tuple(cfg.unet_channels))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(path, f"refiner weights do not match the configuration ({str(exc).splitlines()[0]})") from None
    return Refiner(net.to(device).eval(), int(cfg.feat_channels), str(path))
