"""Geometric maps of ten-print impressions: skin coordinates (mm) -> image pixels, and back.

A rolled print is the finger's skin laid down while the finger turns nail to nail; a plain
print (a slap's finger) is the pad pressed flat.  Both are compositions of invertible maps:

rolled:  skin (s, z) --cone development--> (X, Y) --roll slip--> --elastic--> --rigid--> pixels
plain:   skin (s, z) --press flat--------> (x, y) --elastic--------------> --rigid--> pixels

* **Cone development.**  The distal phalanx is a truncated cone, narrower at the tip.  Rolling a
  cone on a plane without slip lays its surface down isometrically on a circular sector about the
  apex: a skin point at arc ``s`` and height ``z`` lands at polar coordinates
  ``(rho, psi) = (R0 + z, s / (R0 + z))`` (``R0`` the apex-to-tip distance, radius / taper).  Rolled
  prints therefore fan out: the sides rise towards the tip and the crease is an arc.
* **Roll slip.**  The operator's roll is not a perfect rolling: the skin drags and catches, so the
  laid-down print is stretched and compressed across (a smooth, monotone 1-d map of ``X``) and the
  finger drifts along its axis as it turns (a smooth ``Y`` offset that depends on ``X``): the
  characteristic lateral distortion of rolled prints.
* **Press flat.**  A pressed pad shows only its central arc (a contact half angle that grows with
  pressure), flattened: ``x = Rf sin(s / Rf)`` with an effective radius ``Rf`` of 1.3-1.8 times the
  finger's, so the skin is compressed towards the contact edge; the tip curls away from the glass
  over its rounded end (the same sine map along ``z``).
* **Elastic.**  A smooth random displacement growing from the contact centre (skin friction on
  the platen; Cappelli, Maio & Maltoni 2001), inverted by fixed-point iteration.
* **Rigid.**  Rotation (counter-clockwise as displayed, degrees) about the finger's anchor, then
  translation to its place in the image, and millimetres to pixels at the image's resolution.

Every map works on float64 arrays of millimetres; :class:`FingerMap` composes them and also moves
ground-truth minutiae (angles through the local Jacobian, by finite differences).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_FD_MM = 0.05  # finite-difference step of the angle transport
_TABLE_MM = 0.1  # tabulation step of smooth fields


class SmoothField:
    """A smooth random 2-d displacement field (mm) on a box, bicubic between coarse nodes."""

    def __init__(self, rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float, amp_mm: float,
                 centre: tuple[float, float], nodes: int = 6):
        self.x0, self.y0 = x0, y0
        self.sx, self.sy = (x1 - x0) / (nodes - 1), (y1 - y0) / (nodes - 1)
        gx, gy = rng.normal(0, 1, (2, nodes, nodes)).astype(np.float32)
        # Weight grows from the contact centre: the pressed centre does not slide.
        yy, xx = np.mgrid[0:nodes, 0:nodes].astype(np.float64)
        cx = (centre[0] - x0) / self.sx
        cy = (centre[1] - y0) / self.sy
        r = np.hypot((xx - cx) / (nodes / 2), (yy - cy) / (nodes / 2))
        wgt = (np.clip(r, 0, 1.4) ** 2 * amp_mm).astype(np.float32)
        gx, gy = gx * wgt, gy * wgt
        # Tabulated once every 0.1 mm (bicubic between the nodes); evaluated by bilinear lookup,
        # a quarter of the taps of a bicubic one on every rendered pixel.
        import cv2

        self.step = _TABLE_MM
        nx, ny = int(np.ceil((x1 - x0) / self.step)) + 1, int(np.ceil((y1 - y0) / self.step)) + 1
        tv, tu = np.mgrid[0:ny, 0:nx].astype(np.float32)
        tu *= np.float32(self.step / self.sx)
        tv *= np.float32(self.step / self.sy)
        self.gx = cv2.remap(gx, tu, tv, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        self.gy = cv2.remap(gy, tu, tv, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        shape = x.shape
        u = ((x - self.x0) / self.step).astype(np.float32)
        v = ((y - self.y0) / self.step).astype(np.float32)
        # cv2.remap wants 2-d maps of fewer than 32767 rows and columns: points go in as one row
        # (split when longer), image grids as they are.
        if u.ndim != 2 or max(u.shape) >= 32767:
            u, v = u.reshape(1, -1), v.reshape(1, -1)
        if u.shape[1] >= 32767:
            parts = [self(x.reshape(-1)[i:i + 30000], y.reshape(-1)[i:i + 30000])
                     for i in range(0, u.shape[1], 30000)]
            return (np.concatenate([p[0] for p in parts]).reshape(shape),
                    np.concatenate([p[1] for p in parts]).reshape(shape))
        dx = cv2.remap(self.gx, u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        dy = cv2.remap(self.gy, u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return dx.reshape(shape).astype(np.float64), dy.reshape(shape).astype(np.float64)


@dataclass(frozen=True)
class Rigid:
    """Rotation by ``angle_deg`` (CCW as displayed) about ``anchor`` (mm, pre-image), then to ``place`` (mm)."""

    angle_deg: float
    anchor: tuple[float, float]
    place: tuple[float, float]

    def forward(self, x, y):
        a = math.radians(self.angle_deg)
        c, s = math.cos(a), math.sin(a)
        dx, dy = x - self.anchor[0], y - self.anchor[1]
        return self.place[0] + c * dx + s * dy, self.place[1] - s * dx + c * dy

    def inverse(self, x, y):
        a = math.radians(self.angle_deg)
        c, s = math.cos(a), math.sin(a)
        dx, dy = x - self.place[0], y - self.place[1]
        return self.anchor[0] + c * dx - s * dy, self.anchor[1] + s * dx + c * dy


@dataclass(frozen=True)
class Cone:
    """Development of a cone rolled on the plate (apex ``apex_mm`` above the tip, on the axis)."""

    apex_mm: float

    def forward(self, s, z):
        rho = self.apex_mm + z
        psi = s / rho
        return rho * np.sin(psi), rho * np.cos(psi) - self.apex_mm

    def inverse(self, x, y):
        yy = y + self.apex_mm
        rho = np.hypot(x, yy)
        psi = np.arctan2(x, yy)
        return rho * psi, rho - self.apex_mm


class Slip:
    """Roll slip: ``X' = X + a(X)``, ``Y' = Y + b(X)``, with ``1 + a'(X) >= 0.4`` (monotone)."""

    def __init__(self, rng: np.random.Generator, stretch_mm: float, drift_mm: float, span_mm: float = 40.0):
        lam = rng.uniform(8.0, 24.0, 3)
        ph = rng.uniform(0, 2 * np.pi, (2, 3))
        amp = rng.normal(0, 1, (2, 3))
        self._grid = np.linspace(-span_mm, span_mm, 4001)
        g = self._grid
        a = sum(amp[0, k] * np.sin(2 * np.pi * g / lam[k] + ph[0, k]) for k in range(3))
        b = sum(amp[1, k] * np.sin(2 * np.pi * g / lam[k] + ph[1, k]) for k in range(3))
        a = a / (np.abs(a).max() + 1e-9) * stretch_mm
        b = b / (np.abs(b).max() + 1e-9) * drift_mm
        slope = np.gradient(a, g)
        worst = slope.min()
        if worst < -0.6:  # keep the map monotone: squeeze the stretch where it would fold
            a = a * (0.6 / -worst)
        self._a, self._b = a, b
        self._fwd = g + a

    def forward(self, x, y):
        return x + np.interp(x, self._grid, self._a), y + np.interp(x, self._grid, self._b)

    def inverse(self, x, y):
        xs = np.interp(x, self._fwd, self._grid)
        return xs, y - np.interp(xs, self._grid, self._b)


@dataclass(frozen=True)
class Press:
    """A pressed pad: ``x = Rf sin(s / Rf)``; the tip (``z < tip_mm``) curls away: same map along z."""

    flat_radius_mm: float
    tip_mm: float
    tip_radius_mm: float

    def forward(self, s, z):
        rf = self.flat_radius_mm
        x = rf * np.sin(np.clip(s / rf, -np.pi / 2, np.pi / 2))
        d = np.maximum(self.tip_mm - z, 0.0)
        rt = self.tip_radius_mm
        y = np.where(z < self.tip_mm, self.tip_mm - rt * np.sin(np.clip(d / rt, 0, np.pi / 2)), z)
        return x, y

    def inverse(self, x, y):
        rf = self.flat_radius_mm
        s = rf * np.arcsin(np.clip(x / rf, -1.0, 1.0))
        d = np.maximum(self.tip_mm - y, 0.0)
        rt = self.tip_radius_mm
        z = np.where(y < self.tip_mm, self.tip_mm - rt * np.arcsin(np.clip(d / rt, 0.0, 1.0)), y)
        return s, z


class FingerMap:
    """Skin (mm) -> image pixels: ``stages`` (objects with forward/inverse in mm), elastic, rigid, scale."""

    def __init__(self, stages, elastic: SmoothField | None, rigid: Rigid, ppmm: float):
        self.stages, self.elastic, self.rigid, self.ppmm = list(stages), elastic, rigid, ppmm

    def to_local(self, s, z):
        """Skin -> the finger's local frame (after the shape stages and elastic, before rigid), mm."""
        x, y = np.asarray(s, np.float64), np.asarray(z, np.float64)
        for st in self.stages:
            x, y = st.forward(x, y)
        if self.elastic is not None:
            dx, dy = self.elastic(x, y)
            x, y = x + dx, y + dy
        return x, y

    def forward(self, s, z):
        """Skin mm -> image pixels (pixel centres at integer coordinates)."""
        x, y = self.rigid.forward(*self.to_local(s, z))
        return x * self.ppmm, y * self.ppmm

    def local_from_pixels(self, px, py):
        """Image pixels -> local frame mm (inverse rigid)."""
        return self.rigid.inverse(np.asarray(px, np.float64) / self.ppmm, np.asarray(py, np.float64) / self.ppmm)

    def skin_from_local(self, x, y):
        """Local frame mm -> skin mm (inverse elastic by fixed-point iteration, inverse stages)."""
        if self.elastic is not None:
            px_, py_ = x.copy(), y.copy()
            for _ in range(4):  # |grad D| << 1: the error shrinks tenfold per step
                dx, dy = self.elastic(px_, py_)
                px_, py_ = x - dx, y - dy
            x, y = px_, py_
        for st in reversed(self.stages):
            x, y = st.inverse(x, y)
        return x, y

    def minutiae(self, m: np.ndarray) -> np.ndarray:
        """Move skin minutiae ``(n, 4)`` ``s, z, angle, kind`` into image pixels (angles by the Jacobian)."""
        if len(m) == 0:
            return np.zeros((0, 4))
        x0, y0 = self.forward(m[:, 0], m[:, 1])
        x1, y1 = self.forward(m[:, 0] + _FD_MM * np.cos(m[:, 2]), m[:, 1] - _FD_MM * np.sin(m[:, 2]))
        a = np.mod(np.arctan2(-(y1 - y0), x1 - x0), 2 * np.pi)
        return np.column_stack([x0, y0, a, m[:, 3]])


def soft_inside(distance_inside_mm: np.ndarray, edge_mm: float) -> np.ndarray:
    """0..1 contact weight from a signed distance (positive inside), a ramp ``edge_mm`` wide."""
    return np.clip(distance_inside_mm / edge_mm + 0.5, 0.0, 1.0)
