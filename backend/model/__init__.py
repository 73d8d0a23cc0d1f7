"""The learned OMG network (DINOv2 features, transformer global features, HPFS + OAFF, shoulders,
UNet refiner), its training pipeline and the learned avatar build.

Entry point for the build: ``reconstruct_avatar(model, observation, fit, lods, checkpoint, dinov2,
progress)`` -> GaussianAvatar (the previews' refiner loader is backend.preview.refiner.load_refiner). Submodules load lazily so importing
the package stays cheap.
"""

from __future__ import annotations

__all__ = ["reconstruct_avatar", "load_learned"]


def __getattr__(name: str):
    if name in __all__:
        from . import infer

        return getattr(infer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
