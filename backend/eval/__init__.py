"""Evaluation: image/identity/landmark metrics, the paper's protocols, speed figures, one report.

Layout: ``metrics/`` (pure numpy/torch metrics and the metric models: dlib face embeddings,
mediapipe face mesh), ``protocols/`` (source-view reconstruction, self- and cross-reenactment,
speed), ``report.py`` (markdown + PNG plots), ``media.py`` (finding photos and videos).
Heavy dependencies (torch, mediapipe, dlib, the avatar/face/render packages) load lazily so that
importing this package stays cheap.
"""
