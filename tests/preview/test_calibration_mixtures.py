"""The tracker's calibration with mixture renders (avatar.calibrate, face.calibration.fit_mixtures) on
a real avatar: the mixtures are rendered and read as the single shapes are, and correct only what they
may (the calibrated shapes' directions and the jaw's corrective), the same every time; read again
with the jaw open, they make the calibration's open-jaw part."""

from __future__ import annotations

import numpy as np


def test_mixture_renders_correct_the_calibrated_directions_only_and_repeat(astronaut):
    from backend.avatar.calibrate import calibrate_tracker, calibration_shapes, mixture_weights

    avatar, model, _ = astronaut
    plain = calibrate_tracker(avatar, model, 0, mixtures=0)
    mixed = calibrate_tracker(avatar, model, 0, mixtures=40)
    again = calibrate_tracker(avatar, model, 0, mixtures=40)
    np.testing.assert_array_equal(mixed.exprdirs, again.exprdirs)         # drawn from a fixed seed
    np.testing.assert_array_equal(mixed.floor, again.floor)
    np.testing.assert_array_equal(mixed.offset, plain.offset)             # the neutral reading is the same
    names = list(model.expr_names)
    cal = calibration_shapes(model)
    for n in mixed.joint_channels:                                         # the sideways jaw is calibrated too
        cal[names.index(n)] = True
    np.testing.assert_array_equal(mixed.exprdirs[:, :, ~cal], plain.exprdirs[:, :, ~cal])
    # the reading floor: only on calibrated shapes, within its bound, and some shapes read above 0
    # where they are absent (mediapipe's crosstalk between mouth shapes)
    assert plain.floor is None and mixed.floor.shape == (len(names),)
    assert np.all(mixed.floor[~cal] == 0) and 0 <= mixed.floor.min() and mixed.floor.max() <= 0.5
    assert (mixed.floor > 0.02).sum() >= 5, dict(zip(names, mixed.floor.round(2)))
    used = {n for w in mixture_weights(model, 40) for n in w if n in names and cal[names.index(n)]}
    moved = [n for n in used if np.abs(mixed.exprdirs[:, :, names.index(n)] - plain.exprdirs[:, :, names.index(n)]).max() > 1e-7]
    assert len(moved) >= 0.8 * len(used), (sorted(used), sorted(moved))
    assert np.all(np.isfinite(mixed.exprdirs)) and np.all(np.isfinite(mixed.jawdirs))
    assert np.abs(mixed.jawdirs - plain.jawdirs).max() > 0                 # jawOpen is among the mixtures
    # the corrections are of the shapes' own size (millimetres per unit), not a blow-up of the ridge solve
    step = np.abs(mixed.exprdirs - plain.exprdirs).max()
    assert 0 < step < 0.02, step
    # the open-jaw part: the same mixtures read again with the jaw open correct the same directions
    # otherwise, with a floor of their own; without mixtures there is none
    assert plain.open_jaw is None and mixed.open_jaw is not None and mixed.open_jaw.open_jaw is None
    np.testing.assert_array_equal(mixed.open_jaw.exprdirs, again.open_jaw.exprdirs)
    np.testing.assert_array_equal(mixed.open_jaw.offset, mixed.offset)
    np.testing.assert_array_equal(mixed.open_jaw.exprdirs[:, :, ~cal], plain.exprdirs[:, :, ~cal])
    assert np.all(np.isfinite(mixed.open_jaw.exprdirs)) and np.all(np.isfinite(mixed.open_jaw.jawdirs))
    apart = np.abs(mixed.open_jaw.exprdirs - mixed.exprdirs)[:, :, cal].max(axis=(0, 1))
    assert (apart > 1e-4).sum() >= 0.8 * len(used) and apart.max() < 0.02, apart
    assert mixed.open_jaw.floor.shape == (len(names),) and mixed.open_jaw.floor.max() <= 0.5
    # the mixtures' gaze gives the eyes a corrective (millimetres per sin of the angle); none without mixtures
    assert plain.eyedirs is None and mixed.eyedirs.shape == (len(mixed.offset), 3, 9)
    assert 1e-5 < np.abs(mixed.eyedirs).max() < 0.02 and np.all(np.isfinite(mixed.eyedirs))
    np.testing.assert_array_equal(mixed.eyedirs, again.eyedirs)
    assert np.all(mixed.open_jaw.floor[~cal] == 0)


def test_calibration_reports_each_render_and_can_be_cancelled(astronaut):
    """The calibration tells its progress per render read, ends at 1, and stops between renders
    when asked (CancelledError), before any file could be written."""
    import pytest

    from backend.avatar.calibrate import calibrate_tracker
    from backend.errors import CancelledError
    from backend.progress import Progress

    avatar, model, _ = astronaut
    seen = []
    calibrate_tracker(avatar, model, 0, mixtures=0, progress=Progress(callback=lambda f, m: seen.append(f)))
    assert len(seen) >= 40 and seen[-1] == 1.0 and all(b >= a for a, b in zip(seen, seen[1:]))
    calls = []
    stop = Progress(callback=lambda f, m: calls.append(f), should_cancel=lambda: len(calls) >= 5)
    with pytest.raises(CancelledError):
        calibrate_tracker(avatar, model, 0, mixtures=0, progress=stop)
    assert len(calls) == 5
