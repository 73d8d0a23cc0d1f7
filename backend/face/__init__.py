"""Face analysis: photo / video input, mediapipe landmarks, 512x512 framing, head-model fitting,
video tracking.

    load_image(path) -> LoadedImage                 photos of any common format (image.py)
    iter_video(path) -> VideoReader                 streamed clips and image folders (video.py)
    FaceAnalyzer().analyze(image) -> FaceObservation   landmarks, mask, crop, camera (analyze.py)
    fit_image(model, obs, FitOptions) -> FitResult  single-photo fit (fit.py)
    track_video(path, model, TrackOptions, progress) -> Track   video tracking (track.py)
"""

from .analyze import MIN_INTER_OCULAR_PX, FaceAnalyzer, FaceObservation, MultipleFacesWarning
from .crop import CROP_SIZE, FOCAL_NORMALIZED, CropInfo, source_camera
from .fit import FitOptions, FitResult, fit_image
from .image import LoadedImage, load_image
from .track import Track, TrackOptions, track_landmarks, track_video
from .video import VideoReader, iter_video, write_video

__all__ = [
    "CROP_SIZE", "FOCAL_NORMALIZED", "MIN_INTER_OCULAR_PX", "CropInfo", "FaceAnalyzer", "FaceObservation",
    "FitOptions", "FitResult", "LoadedImage", "MultipleFacesWarning", "Track", "TrackOptions",
    "VideoReader", "fit_image", "iter_video", "load_image", "source_camera", "track_landmarks",
    "track_video", "write_video",
]
