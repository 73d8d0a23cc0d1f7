"""The avatar's side of the tracker's render-and-compare passes (face.render_compare): render the
avatar at given parameters with the backend splatter and read the renders with mediapipe as the
tracker reads a clip's frames.

``AvatarReader(avatar, model)`` is a face.render_compare.RenderReader: given HeadParams of F frames
and the camera the tracker fitted them in, it renders the F frames in batches (render_frames: posed
and splatted ``chunk`` frames per call on the splatter's device), stamps the watermark as every
render is, and reads each with mediapipe's face mesh in video mode, twice, keeping the second
(settled) reading, as avatar.calibrate reads its renders: in that mode a frame's landmarks depend on
the region the frame before left, and the frames handed over may be far apart in the clip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..progress import Progress

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..head.params import HeadParams
    from .gaussians import GaussianAvatar

#: frames posed and splatted per render call (render_frames' chunk)
READ_CHUNK = 8


def _checked_lod(avatar: "GaussianAvatar", model: "HeadModel", lod: int) -> int:
    """``lod`` as an int, after checking that ``avatar`` has it and was built on ``model``
    (InputError naming what differs)."""
    lod = int(lod)
    if lod not in avatar.lods:
        raise InputError(None, f"the avatar has no LOD {lod} (it has {avatar.levels})")
    if avatar.head_model_name != model.name:
        raise InputError(None, f"the avatar was built on head model '{avatar.head_model_name}', "
                               f"not on '{model.name}'")
    return lod


class AvatarReader:
    """Renders ``avatar`` (LOD ``lod``, default its finest) and reads the renders (module doc).

    Calling it with (HeadParams (F frames), Camera, Progress) returns (F, 478, 2) float64 px in the
    camera's image, NaN rows where mediapipe found no face. Progress reports fractions of this
    read and can cancel between frames (CancelledError)."""

    def __init__(self, avatar: "GaussianAvatar", model: "HeadModel", lod: int | None = None,
                 backend: str = "auto", chunk: int = READ_CHUNK,
                 background: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        self.avatar, self.model = avatar, model
        self.lod = _checked_lod(avatar, model, max(avatar.levels) if lod is None else lod)
        self.backend, self.chunk, self.background = backend, max(int(chunk), 1), background

    def render(self, params: "HeadParams", camera) -> "np.ndarray":
        """(F, H, W, 3) uint8: the watermarked renders the reader reads (for inspection)."""
        return np.stack(list(self._renders(params, camera)))

    @staticmethod
    def frame_camera(camera, crop, max_side: int | None = None) -> tuple[object, float]:
        """(Camera of the whole source frame, s): the view of ``camera`` (the fit's, whose image is
        ``crop``'s output, face.crop.CropInfo) widened to the source frame that crop was cut from,
        at the size the tracker reads it (downscaled by s <= 1 so its longer side is at most
        ``max_side``, as face.image.downscale does). Crop px = (source px - (x0, y0)) * scale."""
        from ..render.camera import Camera

        W, H = (int(v) for v in crop.source_size)
        s = 1.0 if max_side is None else min(1.0, max_side / float(max(W, H)))
        w, h = (max(1, round(W * s)), max(1, round(H * s))) if s < 1.0 else (W, H)
        s = w / float(W)
        K = camera.K.astype(np.float64).copy()
        K[:2, :2] /= crop.scale
        K[0, 2] = K[0, 2] / crop.scale + crop.x0
        K[1, 2] = K[1, 2] / crop.scale + crop.y0
        K[:2] *= s
        K[2] = (0, 0, 1)
        return Camera(K.astype(np.float32), camera.viewmat.copy(), w, h), s

    def _renders(self, params: "HeadParams", camera):
        from ..render.watermark import stamp_watermark
        from .rendering import render_frames

        for img in render_frames(self.avatar, self.model, params, self.lod, camera=camera,
                                 background=self.background, backend=self.backend, chunk=self.chunk):
            yield stamp_watermark(np.round(img * 255.0).astype(np.uint8))

    def __call__(self, params: "HeadParams", camera, progress: Progress | None = None, crop=None,
                 max_side: int | None = None) -> np.ndarray:
        """crop: the CropInfo that took the clip's frames to ``camera``'s image (face.crop): the
        avatar is then rendered as the whole source frame (:meth:`frame_camera`, at most
        ``max_side`` px as the tracker downscales), read there, and the landmarks mapped into
        the crop, as the tracker reads a clip; None: rendered and read in ``camera``'s image."""
        from ..face.mediapipe_face import MediapipeFace

        progress = progress or Progress()
        F = params.n_frames
        out = np.full((F, 478, 2), np.nan)
        view, s = (camera, 1.0) if crop is None else self.frame_camera(camera, crop, max_side)
        with MediapipeFace(static=False) as mp:
            for i, img in enumerate(self._renders(params, view)):
                mp.landmarks(img)            # the first reading places the region; the second is kept
                lm = mp.landmarks(img)
                if lm is not None:
                    out[i] = lm[:, :2] if crop is None else crop.to_crop(lm[:, :2] / s)
                progress.report((i + 1) / F, f"render and read {i + 1}/{F}")
        return out


class AvatarAlpha:
    """Renders ``avatar``'s alpha for face.pitch_pass (an AlphaRenderer): called with (HeadParams
    (F frames), Camera) it returns (F, H, W) float32 in [0, 1] in the camera's image. LOD ``lod``,
    default the avatar's coarsest: the outline is the hair's and the body's, the same parts at
    every LOD, and the coarsest head draws it at a fraction of the finest one's cost."""

    def __init__(self, avatar: "GaussianAvatar", model: "HeadModel", lod: int | None = None,
                 backend: str = "auto", chunk: int = READ_CHUNK) -> None:
        self.avatar, self.model = avatar, model
        self.lod = _checked_lod(avatar, model, min(avatar.levels) if lod is None else lod)
        self.backend, self.chunk = backend, max(int(chunk), 1)

    def __call__(self, params: "HeadParams", camera) -> np.ndarray:
        from .rendering import render_frames

        return np.stack([np.asarray(a, np.float32) for _, a in render_frames(
            self.avatar, self.model, params, self.lod, camera=camera, backend=self.backend, chunk=self.chunk,
            with_alpha=True)])
