"""numba kernels generating minutiae templates directly (no images), for galleries at scale."""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _orientation_at(x, y, cx, cy, dx, dy, has_delta):
    # Zero-pole model in image axes (see synthetic._orientation): one core, optional delta.
    t = math.atan2(y - cy, x - cx)
    if has_delta:
        t -= math.atan2(y - dy, x - dx)
    return 0.5 * t


@njit(cache=True, nogil=True)
def master_minutiae(seed, n_target, width, height, min_dist):
    """Minutiae of one master finger: a hard-core point process in an elliptical finger,
    directions along a zero-pole orientation field with a random sense, random kinds.

    Returns float64 (n, 4): x, y, angle (rad, CCW as displayed), kind.
    """
    np.random.seed(seed)
    cx = width * (0.4 + 0.2 * np.random.random())
    cy = height * (0.35 + 0.15 * np.random.random())
    has_delta = np.random.random() < 0.93  # arches have no delta
    side = 1.0 if np.random.random() < 0.5 else -1.0
    dx = cx + side * (70 + 50 * np.random.random())
    dy = cy + 70 + 50 * np.random.random()
    ax, ay = width * 0.46, height * 0.48
    ex, ey = width * 0.5, height * 0.5
    out = np.zeros((n_target, 4))
    n = 0
    tries = 0
    while n < n_target and tries < n_target * 50:
        tries += 1
        x = np.random.random() * width
        y = np.random.random() * height
        if ((x - ex) / ax) ** 2 + ((y - ey) / ay) ** 2 > 1.0:
            continue
        ok = True
        for j in range(n):
            if (out[j, 0] - x) ** 2 + (out[j, 1] - y) ** 2 < min_dist * min_dist:
                ok = False
                break
        if not ok:
            continue
        t = _orientation_at(x, y, cx, cy, dx, dy, has_delta)
        if np.random.random() < 0.5:
            t += math.pi
        out[n, 0] = x
        out[n, 1] = y
        out[n, 2] = (-t) % (2 * math.pi)  # image angle (y down) -> CCW as displayed
        out[n, 3] = 1.0 if np.random.random() < 0.55 else 2.0
        n += 1
    return out[:n]


@njit(cache=True, nogil=True)
def perturb(master, seed, width, height, max_rot, max_shift, distortion, jitter, angle_noise,
            p_missing, spurious_rate, contact_min, contact_max, centre_offset):
    """One impression of a master's minutiae: partial contact, rigid placement, smooth
    distortion, position/angle noise, missing and spurious minutiae.

    ``centre_offset``: the contact centre lies within +- this fraction of the width and height
    of the finger's centre (0.1 for the default model; a finger placed off-centre leaves two
    captures a smaller common area).

    Returns float64 (m, 4) in the impression's coordinates, clipped to width x height.
    """
    np.random.seed(seed)
    n = master.shape[0]
    rot = (2 * np.random.random() - 1) * max_rot
    sx = (2 * np.random.random() - 1) * max_shift
    sy = (2 * np.random.random() - 1) * max_shift
    ccx = width * (0.5 + centre_offset * (2 * np.random.random() - 1))
    ccy = height * (0.5 + centre_offset * (2 * np.random.random() - 1))
    rx = width * (contact_min + (contact_max - contact_min) * np.random.random())
    ry = height * (contact_min + (contact_max - contact_min) * np.random.random())
    # Smooth distortion: a random quadratic field growing with distance from the contact centre.
    c = np.random.normal(0.0, 1.0, 6)
    cr, sr = math.cos(rot), math.sin(rot)
    n_sp = np.random.poisson(spurious_rate * n)
    out = np.zeros((n + n_sp, 4))
    m = 0
    for i in range(n):
        x, y = master[i, 0], master[i, 1]
        u, v = (x - ccx) / rx, (y - ccy) / ry
        r2 = u * u + v * v
        if r2 > 1.0 or np.random.random() < p_missing:
            continue
        ddx = distortion * r2 * (c[0] * u + c[1] * v + c[2] * u * v)
        ddy = distortion * r2 * (c[3] * u + c[4] * v + c[5] * u * v)
        px = x + ddx - ccx
        py = y + ddy - ccy
        qx = cr * px - sr * py + ccx + sx + np.random.normal(0.0, jitter)
        qy = sr * px + cr * py + ccy + sy + np.random.normal(0.0, jitter)
        if qx < 0 or qy < 0 or qx >= width or qy >= height:
            continue
        out[m, 0] = qx
        out[m, 1] = qy
        # Rotating the image by rot (y down) turns displayed CCW angles by -rot.
        out[m, 2] = (master[i, 2] - rot + np.random.normal(0.0, angle_noise)) % (2 * math.pi)
        out[m, 3] = master[i, 3] if np.random.random() > 0.1 else 3.0 - master[i, 3]
        m += 1
    for k in range(n_sp):
        # Spurious minutiae inside the contact region, placed like the real ones.
        while True:
            u = 2 * np.random.random() - 1
            v = 2 * np.random.random() - 1
            if u * u + v * v <= 1:
                break
        px, py = u * rx, v * ry
        qx = cr * px - sr * py + ccx + sx
        qy = sr * px + cr * py + ccy + sy
        if qx < 0 or qy < 0 or qx >= width or qy >= height:
            continue
        out[m, 0] = qx
        out[m, 1] = qy
        out[m, 2] = np.random.random() * 2 * math.pi
        out[m, 3] = 1.0 if np.random.random() < 0.5 else 2.0
        m += 1
    return out[:m]
