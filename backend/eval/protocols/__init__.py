"""The paper's evaluation protocols on our pipeline (imports of avatar/face/render are lazy, so the
metrics work without them):

- ``reconstruction``: photo -> avatar -> render at the source camera vs the photo;
- ``reenactment``: self-reenactment (frame 0 builds, later frames drive, compare with the real
  frames) and cross-reenactment (photo A driven by video B);
- ``multiview``: a clip's multi-view build against its single-photo build, on held-out frames
  and at the source frame (issue 17);
- ``speed``: render fps per LOD and backend.
"""
