"""numba kernels of the orientation and ridge-frequency stages."""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def block_ridge_period(norm, theta, mask, block, win_len, win_wid, pmin, pmax, min_peak, weak_peak):
    """Ridge period per block from the autocorrelation of the oriented x-signature.

    Parameters
    ----------
    norm : float32 (h, w)
        Normalised image (zero mean, unit variance in the foreground).
    theta : float32 (h, w)
        Ridge orientation in radians, image axes (y down), in [0, pi).
    mask : uint8 (h, w)
        Foreground mask.
    block : int
        Block size in pixels; one estimate per block.
    win_len, win_wid : int
        Window length across the ridges (signature length) and width along them.
    pmin, pmax : float
        Admissible ridge periods in pixels.
    min_peak, weak_peak : float
        Least normalised autocorrelation at the period for a block to count as periodic;
        where no peak reaches ``min_peak``, one above ``weak_peak`` (<= ``min_peak``) is
        reported and flagged in ``weak``, for the caller's further tests.

    Returns
    -------
    period : float32 (h // block, w // block)
        Period in pixels, 0 where no reliable estimate exists.
    weak : bool (h // block, w // block)
        Blocks whose period rests on a peak below ``min_peak`` (found at the weak bar).
    """
    h, w = norm.shape
    bh, bw = h // block, w // block
    out = np.zeros((bh, bw), np.float32)
    weak = np.zeros((bh, bw), np.bool_)
    sig = np.zeros(win_len, np.float64)
    cnt = np.zeros(win_len, np.float64)
    lo = int(math.floor(pmin))
    hi = int(math.ceil(pmax))
    ac = np.zeros(hi + 2, np.float64)
    for by in range(bh):
        for bx in range(bw):
            cy = by * block + block // 2
            cx = bx * block + block // 2
            if mask[cy, cx] == 0:
                continue
            t = theta[cy, cx]
            # Unit vector along the ridge (u) and across it (v), image axes.
            ux, uy = math.cos(t), math.sin(t)
            vx, vy = -uy, ux
            for i in range(win_len):
                sig[i] = 0.0
                cnt[i] = 0.0
            for i in range(win_len):
                d = i - win_len * 0.5
                for j in range(win_wid):
                    e = j - win_wid * 0.5
                    x = int(cx + d * vx + e * ux + 0.5)
                    y = int(cy + d * vy + e * uy + 0.5)
                    if 0 <= x < w and 0 <= y < h:
                        sig[i] += norm[y, x]
                        cnt[i] += 1.0
            valid = True
            for i in range(win_len):
                if cnt[i] < win_wid * 0.5:
                    valid = False
                    break
                sig[i] /= cnt[i]
            if not valid:
                continue
            mean = 0.0
            for i in range(win_len):
                mean += sig[i]
            mean /= win_len
            var = 0.0
            for i in range(win_len):
                sig[i] -= mean
                var += sig[i] * sig[i]
            if var <= 1e-6:
                continue
            # Normalised autocorrelation at integer lags; the first strong peak in the
            # admissible range gives the period (refined by a parabola through the peak).
            for lag in range(lo - 1, hi + 2):
                s = 0.0
                for i in range(win_len - lag):
                    s += sig[i] * sig[i + lag]
                ac[lag] = s / var * win_len / (win_len - lag)
            # Multiples of the period peak too: take the shortest lag whose peak is close
            # to the strongest one, not the strongest itself.  The weaker bar is tried only
            # when the strict one finds nothing, so a block periodic at the strict bar keeps
            # the lag it had without the weaker one.
            best = -1
            found_weak = False
            for bar in (min_peak, weak_peak):
                top = bar  # below this, no periodic ridge pattern
                for lag in range(lo, hi + 1):
                    if ac[lag] > ac[lag - 1] and ac[lag] >= ac[lag + 1] and ac[lag] > top:
                        top = ac[lag]
                for lag in range(lo, hi + 1):
                    if ac[lag] > ac[lag - 1] and ac[lag] >= ac[lag + 1] and ac[lag] >= 0.8 * top and ac[lag] > bar:
                        best = lag
                        break
                if best >= 0 or weak_peak >= min_peak:
                    break
                found_weak = True
            if best < 0:
                continue
            # Octave error (as in pitch estimation): dotted or unevenly inked ridges can
            # weaken the peak at the period below that at twice the period.  A true period
            # of twice the lag would anti-correlate at half of it (ridge onto valley), so a
            # positively correlated peak near half the chosen lag is the period.
            for lag in range(lo, best):
                if abs(lag - 0.5 * best) <= 1.5 and ac[lag] > ac[lag - 1] and ac[lag] >= ac[lag + 1] \
                        and ac[lag] > 0.0:
                    best = lag
                    break
            a, b, c = ac[best - 1], ac[best], ac[best + 1]
            den = a - 2 * b + c
            off = 0.0
            if den < 0:
                off = 0.5 * (a - c) / den
                if off > 0.5:
                    off = 0.5
                elif off < -0.5:
                    off = -0.5
            p = best + off
            if pmin <= p <= pmax:
                out[by, bx] = p
                weak[by, bx] = found_weak
    return out, weak


@njit(cache=True, nogil=True)
def median_fill(raw, r, fallback):
    """Median of the valid (> 0) estimates in a (2r+1)^2 window; ``fallback`` where none."""
    bh, bw = raw.shape
    out = np.full((bh, bw), fallback, np.float32)
    buf = np.empty((2 * r + 1) ** 2, np.float32)
    for by in range(bh):
        for bx in range(bw):
            n = 0
            for y in range(max(0, by - r), min(bh, by + r + 1)):
                for x in range(max(0, bx - r), min(bw, bx + r + 1)):
                    if raw[y, x] > 0:
                        buf[n] = raw[y, x]
                        n += 1
            if n:
                out[by, bx] = np.median(buf[:n])
    return out
