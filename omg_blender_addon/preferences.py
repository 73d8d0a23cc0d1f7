"""Add-on preferences: licensed asset paths (user-supplied) and the compute device."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty

from .addon_id import ADDON_PACKAGE


class OMGAvatarPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    flame_path: StringProperty(
        name="FLAME model",
        description="FLAME 2020/2023 generic model (.pkl) or an .npz in our layout. Empty: the bundled "
        "stand-in head model",
        subtype="FILE_PATH",
        default="",
    )
    checkpoint_path: StringProperty(
        name="OMG checkpoint",
        description="Trained OMG network checkpoint (.pt). Empty: the analytic build (no trained weights)",
        subtype="FILE_PATH",
        default="",
    )
    dinov2_path: StringProperty(
        name="DINOv2 weights",
        description="Official DINOv2 ViT-B/14 checkpoint (.pth), needed with an OMG checkpoint",
        subtype="FILE_PATH",
        default="",
    )
    device: EnumProperty(
        name="Device",
        description="Where reconstruction and splatting run",
        items=(
            ("auto", "Auto", "CUDA (gsplat) when available, CPU otherwise"),
            ("cpu", "CPU", "Always the CPU splatter"),
            ("cuda", "CUDA", "NVIDIA GPU with gsplat"),
        ),
        default="auto",
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "flame_path")
        layout.label(text="FLAME is licensed: download it from the FLAME website after registering.", icon="INFO")
        layout.prop(self, "checkpoint_path")
        layout.prop(self, "dinov2_path")
        layout.prop(self, "device")


def register() -> None:
    bpy.utils.register_class(OMGAvatarPreferences)


def unregister() -> None:
    bpy.utils.unregister_class(OMGAvatarPreferences)
