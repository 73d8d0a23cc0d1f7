"""OMG Avatar backend: photo -> multi-LOD Gaussian head avatar, tracking, splatting.

Pure numpy / PyTorch. Never imports bpy, so it runs headless (``python -m backend``) and inside the
Blender extension (as ``<extension>.backend``). Only relative imports inside this package.
"""

__version__ = "0.1.0"
