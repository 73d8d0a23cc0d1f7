"""The portrait matte (face/matte.py): the guided filter against a plain per-window reference, and
the refined matte on synthetic photos whose true edge is known."""

from __future__ import annotations

import numpy as np
import pytest

from backend.face.matte import MatteOptions, foreground_colors, guided_filter, refine_matte


def _guided_reference(I: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al.'s algorithm written per window with plain loops (reflected borders, as cv2's
    BORDER_REFLECT: ... c b a | a b c ...)."""
    H, W = p.shape
    pad = lambda x: np.pad(x, [(r, r), (r, r)] + [(0, 0)] * (x.ndim - 2), mode="symmetric")
    Ip, pp = pad(I.astype(np.float64)), pad(p.astype(np.float64))
    a = np.zeros((H, W, 3))
    b = np.zeros((H, W))
    for y in range(H):
        for x in range(W):
            win_I = Ip[y:y + 2 * r + 1, x:x + 2 * r + 1].reshape(-1, 3)
            win_p = pp[y:y + 2 * r + 1, x:x + 2 * r + 1].reshape(-1)
            mu = win_I.mean(0)
            cov = (win_I - mu).T @ (win_I - mu) / len(win_I)
            c = (win_I * win_p[:, None]).mean(0) - mu * win_p.mean()
            a[y, x] = np.linalg.solve(cov + eps * np.eye(3), c)
            b[y, x] = win_p.mean() - a[y, x] @ mu
    ap, bp = pad(a), pad(b)
    out = np.zeros((H, W))
    for y in range(H):
        for x in range(W):
            ma = ap[y:y + 2 * r + 1, x:x + 2 * r + 1].reshape(-1, 3).mean(0)
            mb = bp[y:y + 2 * r + 1, x:x + 2 * r + 1].mean()
            out[y, x] = ma @ I[y, x] + mb
    return out


def test_guided_filter_matches_the_per_window_reference():
    rng = np.random.default_rng(3)
    I = rng.uniform(0, 1, (23, 19, 3)).astype(np.float32)
    p = (rng.uniform(0, 1, (23, 19)) > 0.5).astype(np.float32)
    for r, eps in [(1, 1e-3), (3, 1e-2)]:
        np.testing.assert_allclose(guided_filter(I, p, r, eps), _guided_reference(I, p, r, eps), atol=2e-4)


def _disc_photo(n: int = 160, radius: float = 45.0, seed: int = 0):
    """A textured reddish disc (the person) on a noisy blue-grey background; its true alpha
    (anti-aliased by 4x supersampling)."""
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[0:4 * n, 0:4 * n] + 0.5) / 4.0
    inside = ((xx - n / 2) ** 2 + (yy - n / 2) ** 2 < radius ** 2).astype(np.float32)
    alpha = inside.reshape(n, 4, n, 4).mean((1, 3))
    fg = np.array([0.75, 0.45, 0.35]) + 0.05 * rng.standard_normal((n, n, 3))
    bg = np.array([0.55, 0.62, 0.70]) + 0.03 * rng.standard_normal((n, n, 3))
    photo = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return (np.clip(photo, 0, 1) * 255 + 0.5).astype(np.uint8), alpha


def test_refined_matte_finds_the_true_edge_of_a_blurred_shifted_mask():
    """The coarse mask is the segmenter's failure mode: blurred over ~6 px, 3 px too wide, plus a
    half-sure 'shoulder' (0.6) over plain background. The refined matte sits on the true edge."""
    import cv2

    photo, alpha = _disc_photo()
    n = alpha.shape[0]
    yy, xx = np.mgrid[0:n, 0:n]
    wide = ((xx - n / 2) ** 2 + (yy - n / 2) ** 2 < 48.0 ** 2).astype(np.float32)
    coarse = cv2.GaussianBlur(wide, (0, 0), 3.0)
    coarse[130:, :40] = np.maximum(coarse[130:, :40], 0.6)   # a guessed shoulder on background
    matte = refine_matte(photo, coarse)
    err_coarse = np.abs(coarse - alpha).mean()
    err = np.abs(matte - alpha).mean()
    assert err < 0.25 * err_coarse, (err, err_coarse)
    assert matte[130:, :40].max() < 0.05                        # the guessed shoulder is gone
    # the 0.5 level of the matte lies within 1 px of the true circle
    edge = ((alpha > 0) & (alpha < 1)).astype(np.uint8)
    near = cv2.dilate(edge, np.ones((3, 3), np.uint8)) > 0
    wrong = (matte > 0.5) != (alpha > 0.5)
    assert not (wrong & ~near).any()
    assert wrong.sum() < 0.15 * edge.sum(), (wrong.sum(), edge.sum())
    # soft only along the edge: inside and outside (textured, noisy) the matte is 0 or 1
    r = MatteOptions().radius + 1
    around = cv2.dilate(edge, np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0
    assert not (((matte > 0) & (matte < 1)) & ~around).any()


def test_matte_is_deterministic_and_survives_masks_with_nothing_sure():
    photo, alpha = _disc_photo(n=96, radius=30.0)
    import cv2

    coarse = cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), 3.0)
    np.testing.assert_array_equal(refine_matte(photo, coarse), refine_matte(photo, coarse))
    for const in (0.0, 1.0, 0.5):                               # no sure person / background
        m = refine_matte(photo, np.full(alpha.shape, const, np.float32))
        assert m.shape == alpha.shape and m.dtype == np.float32
        assert np.isfinite(m).all() and m.min() >= 0.0 and m.max() <= 1.0
    assert refine_matte(photo, np.zeros(alpha.shape, np.float32)).max() < 1e-3


def test_foreground_colors_remove_the_background_at_the_edge():
    photo, alpha = _disc_photo()
    f = foreground_colors(photo.astype(np.float32) / 255.0, alpha)
    band = (alpha > 0.05) & (alpha < 0.95)
    fg_mean = np.array([0.75, 0.45, 0.35])
    # in the photo the band mixes in the blue background; the estimate is the disc's own colour
    assert np.abs(photo[band] / 255.0 - fg_mean).mean() > 0.04
    assert np.abs(f[band] - fg_mean).mean() < 0.03
    sure = alpha >= 0.95
    np.testing.assert_array_equal(f[sure], photo[sure].astype(np.float32) / 255.0)


@pytest.mark.parametrize("r", [2, 4])
def test_guided_filter_keeps_constant_and_linear_images(r):
    """Filtering a guide's own linear function returns it (the local model is exact)."""
    rng = np.random.default_rng(1)
    I = rng.uniform(0, 1, (40, 40, 3)).astype(np.float32)
    p = (0.2 + 0.5 * I[..., 0] - 0.3 * I[..., 2]).astype(np.float32)
    np.testing.assert_allclose(guided_filter(I, p, r, 1e-6), p, atol=2e-3)
    np.testing.assert_allclose(guided_filter(I, np.full((40, 40), 0.7, np.float32), r, 1e-3), 0.7, atol=1e-4)
    assert MatteOptions().radius >= 1


def test_guided_filter_solved_only_where_used_gives_the_same_values_there():
    """``where``: only the windows covering the used pixels are solved; those pixels keep the
    full filter's values (refine_matte uses the filter in a band along the cut alone)."""
    rng = np.random.default_rng(5)
    I = rng.uniform(0, 1, (64, 48, 3)).astype(np.float32)
    p = (rng.uniform(0, 1, (64, 48)) > 0.5).astype(np.float32)
    where = np.zeros((64, 48), bool)
    where[20:30, 5:40] = True
    where[50:, :3] = True                                   # at the border too
    full = guided_filter(I, p, 4, 1e-3)
    part = guided_filter(I, p, 4, 1e-3, where=where)
    np.testing.assert_allclose(part[where], full[where], rtol=0, atol=1e-6)
    assert not np.allclose(part[~where], full[~where], atol=1e-3)   # elsewhere it is not the filter
