"""OMG Avatar: one photo to an animatable multi-LOD Gaussian head avatar (a Blender extension).

The repository root is the extension package: Blender imports it as ``bl_ext.<repo>.omg_avatar``
(build_addon.py zips this folder's packages with this file), and a checkout linked into an
extensions folder runs as is. ``backend`` also imports on its own (``python -m backend``).
"""

from .omg_blender_addon import register, unregister

__all__ = ["register", "unregister"]
