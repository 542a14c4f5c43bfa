"""The fingerprint template: an immutable set of minutiae at 500 dpi, and one finger view of a record.

Minutia convention: ``x`` to the right and ``y`` downwards, in pixels at 500 dpi
from the top-left corner of the (resampled) image (as ISO/IEC 19794-2); ``angle`` in
radians in ``[0, 2*pi)``, counter-clockwise from the x axis as the image is displayed,
in the direction ISO/IEC 19794-2 and ANSI/INCITS 378 define: a ridge ending points up its
ridge (from the end into the ridge body) and a bifurcation down the valley between its two
branches (see :mod:`biomatch.formats._fmr` for the sources). NIST's internal representation
(NBIS mindtct's default output, legacy Type-9 fields) points the other way; its readers turn
it by 180 degrees. ``kind`` 1 for a ridge ending and 2 for a bifurcation (0 other);
``quality`` 0-100.

This module holds the value types only. Reading and writing them (the native ``BMT1`` format,
ISO/IEC 19794-2, ANSI 378) is the job of :mod:`biomatch.formats`, which imports this module and
never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import invalid

__all__ = ["MINUTIA_DTYPE", "ENDING", "BIFURCATION", "OTHER", "ORIENTATION_BLOCK_PX", "NO_PRINT", "MAX_MINUTIAE",
           "MAX_SIDE_PX", "Template", "FingerView", "grid_shape", "FINGER_POSITIONS", "POSITION_NAMES",
           "GENERATED_PARAMS_HASH"]

GENERATED_PARAMS_HASH = "synthetic"
"""The ``params_hash`` of templates made by the print generator's template model
(:func:`biomatch.datasets.synthetic.template_impressions`) rather than extracted from an image."""

FINGER_POSITIONS = tuple(range(1, 11))
"""ISO/IEC 19794-2 finger positions: 1 right thumb ... 5 right little, 6 left thumb ... 10 left little."""

POSITION_NAMES = {1: "right thumb", 2: "right index", 3: "right middle", 4: "right ring", 5: "right little",
                  6: "left thumb", 7: "left index", 8: "left middle", 9: "left ring", 10: "left little"}
"""The name of each of :data:`FINGER_POSITIONS`."""

MINUTIA_DTYPE = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("angle", "<f4"), ("kind", "u1"), ("quality", "u1")]
)
"""Structured dtype of one minutia (14 bytes)."""

ENDING, BIFURCATION, OTHER = 1, 2, 0

ORIENTATION_BLOCK_PX = 16
"""Side of one block of :attr:`Template.orientation_grid`, in pixels at 500 dpi (0.8 mm)."""

NO_PRINT = 255
"""Value of an orientation-grid block without print (fewer than half its pixels in the mask)."""

MAX_MINUTIAE = 1000
"""Most minutiae a template holds (ISO/IEC 19794-2 allows 255 per view; anything beyond is corrupt)."""

MAX_SIDE_PX = 20000
"""Largest image side a template describes, in pixels at 500 dpi."""


def _check_minutiae(m: np.ndarray) -> None:
    """Raise InvalidInputError unless every minutia has finite x, y, an angle in [0, 2 pi),
    quality <= 100 and kind <= 2.  ``m``: a packed, C-contiguous MINUTIA_DTYPE array.

    The packed 14-byte records are read as an (n, 14) byte matrix, so that the three float
    columns and the two byte columns are checked by four reductions instead of nine (this runs
    for every template decoded from a gallery's store: ~300 per search).
    """
    if not len(m):
        return
    raw = m.view(np.uint8).reshape(len(m), MINUTIA_DTYPE.itemsize)
    xya = np.ascontiguousarray(raw[:, :12]).view("<f4")  # (n, 3): x, y, angle, as MINUTIA_DTYPE stores them
    if not np.isfinite(xya).all():
        raise invalid("minutiae", "finite x, y and angle", "non-finite values")
    angle = xya[:, 2]
    if angle.min() < 0 or angle.max() >= 2 * np.pi + 1e-6:
        bad = angle[(angle < 0) | (angle >= 2 * np.pi + 1e-6)]
        raise invalid("minutiae['angle']", "radians in [0, 2*pi)", float(bad[0]))
    if raw[:, 13].max() > 100:
        raise invalid("minutiae['quality']", "0-100", int(raw[:, 13].max()))
    if raw[:, 12].max() > 2:
        raise invalid("minutiae['kind']", "0, 1 or 2", int(raw[:, 12].max()))


@dataclass(frozen=True, eq=False)
class Template:
    """An immutable fingerprint template.

    Parameters
    ----------
    minutiae : ndarray of MINUTIA_DTYPE, shape (n,)
        Minutiae at 500 dpi (see the module docstring for the convention).
    width, height : int
        Size of the source image at 500 dpi, in pixels.
    quality : int
        Whole-print quality 0 (unusable) to 100.
    params_hash : str
        Hash of the :class:`~biomatch.params.ExtractionParams` that produced it
        (``""`` for templates from foreign sources).
    orientation_grid : ndarray of uint8, shape (ceil(height / 16), ceil(width / 16)), optional
        Ridge orientation per block of :data:`ORIENTATION_BLOCK_PX` = 16 px (row-major, from the
        top-left corner): degrees 0-179, counter-clockwise from the x axis in image axes (y
        down), so 180 - the minutia angle's orientation; :data:`NO_PRINT` (255) where fewer than
        half of the block's pixels are print.  The matcher uses it as evidence beside the
        minutiae (:attr:`~biomatch.params.MatchParams.orientation_weight`).  ``None`` when
        unknown (templates read from ISO/IEC 19794-2, ANSI 378 or ANSI/NIST-ITL records,
        native files of version 1 or 2, generated templates).

    Notes
    -----
    Thread-safe (immutable). Memory: 14 bytes per minutia, one byte per grid block (about
    600 for a 12.5 x 12.5 mm image) and a small header.
    """

    minutiae: np.ndarray
    width: int
    height: int
    quality: int = 0
    params_hash: str = ""
    orientation_grid: np.ndarray | None = None

    def __post_init__(self):
        m = self.minutiae
        if not isinstance(m, np.ndarray) or m.dtype != MINUTIA_DTYPE or m.ndim != 1:
            raise invalid("minutiae", f"1-d ndarray of {MINUTIA_DTYPE}", getattr(m, "dtype", type(m)))
        if len(m) > MAX_MINUTIAE:
            raise invalid("minutiae", f"at most {MAX_MINUTIAE} minutiae", len(m))
        for name, value in (("width", self.width), ("height", self.height)):
            if not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= MAX_SIDE_PX:
                raise invalid(name, f"an int in [0, {MAX_SIDE_PX}]", value)
        if not isinstance(self.quality, (int, np.integer)) or not 0 <= int(self.quality) <= 100:
            raise invalid("quality", "an int in [0, 100]", self.quality)
        m = m.copy()  # owned, packed: its fields are then read as plain columns in one pass each
        _check_minutiae(m)
        m.flags.writeable = False
        object.__setattr__(self, "minutiae", m)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "quality", int(self.quality))
        g = self.orientation_grid
        if g is not None:
            shape = grid_shape(self.width, self.height)
            if not isinstance(g, np.ndarray) or g.dtype != np.uint8:
                raise invalid("orientation_grid", "None or an ndarray of uint8", getattr(g, "dtype", type(g).__name__))
            if g.shape != shape:
                raise invalid("orientation_grid", f"shape {shape} (ceil(height / 16), ceil(width / 16))", g.shape)
            if np.any((g >= 180) & (g != NO_PRINT)):
                raise invalid("orientation_grid", f"degrees 0-179 or {NO_PRINT}", int(g[(g >= 180) & (g != NO_PRINT)][0]))
            g = np.ascontiguousarray(g).copy()
            g.flags.writeable = False
            object.__setattr__(self, "orientation_grid", g)

    def __len__(self) -> int:
        return len(self.minutiae)

    def __repr__(self) -> str:  # never print coordinates: templates are personal data
        grid = "" if self.orientation_grid is None else ", orientation_grid"
        return (f"Template(n_minutiae={len(self)}, size={self.width}x{self.height}, "
                f"quality={self.quality}, params={self.params_hash or '-'}{grid})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Template):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def _identity(self) -> tuple:
        # Equal exactly when their native (BMT1) encodings are equal: that format keeps the
        # first 16 ASCII bytes of the parameter hash, the rest of the fields byte for byte.
        grid = None if self.orientation_grid is None else self.orientation_grid.tobytes()
        return (self.width, self.height, self.quality, self.params_hash.encode("ascii")[:16].ljust(16, b"\0"),
                self.minutiae.tobytes(), grid)

    @classmethod
    def _checked(cls, minutiae: np.ndarray, width: int, height: int, quality: int, params_hash: str,
                 orientation_grid: np.ndarray | None) -> "Template":
        """A template from fields the caller has already checked as the constructor does: an owned,
        read-only, packed MINUTIA_DTYPE array of valid values, ints in range, an owned read-only
        uint8 grid of the right shape or None (:func:`biomatch.formats.native.decode_stored`,
        which reads ~300 templates per search from a gallery's store)."""
        t = object.__new__(cls)
        for name, value in (("minutiae", minutiae), ("width", width), ("height", height), ("quality", quality),
                            ("params_hash", params_hash), ("orientation_grid", orientation_grid)):
            object.__setattr__(t, name, value)
        return t

    @classmethod
    def empty(cls, width: int = 0, height: int = 0, params_hash: str = "") -> "Template":
        """A template with no minutiae and quality 0 (no usable print)."""
        return cls(np.zeros(0, MINUTIA_DTYPE), width, height, 0, params_hash)

    @classmethod
    def from_arrays(cls, x, y, angle, kind=None, quality=None, *, width: int, height: int,
                    print_quality: int = 0, params_hash: str = "",
                    orientation_grid: np.ndarray | None = None) -> "Template":
        """Build a template from parallel 1-d arrays (angles in radians)."""
        x = np.asarray(x, np.float32)
        n = x.shape[0] if x.ndim == 1 else -1
        m = np.zeros(max(n, 0), MINUTIA_DTYPE)
        for name, arr in (("y", y), ("angle", angle)):
            if np.shape(arr) != (n,):
                raise invalid(name, f"shape ({n},)", np.shape(arr))
        m["x"], m["y"] = x, y
        m["angle"] = np.mod(np.asarray(angle, np.float64), 2 * np.pi).astype(np.float32) % np.float32(2 * np.pi)
        m["kind"] = ENDING if kind is None else kind
        m["quality"] = 100 if quality is None else quality
        return cls(m, width, height, print_quality, params_hash, orientation_grid)

    def as_float_array(self) -> np.ndarray:
        """Minutiae as a C-contiguous ``float32 (n, 4)`` array: x, y, angle (rad), quality/100."""
        m = self.minutiae
        out = np.empty((len(m), 4), np.float32)
        out[:, 0], out[:, 1], out[:, 2] = m["x"], m["y"], m["angle"]
        out[:, 3] = m["quality"].astype(np.float32) / 100.0
        return out


def grid_shape(width: int, height: int) -> tuple[int, int]:
    """Shape ``(rows, cols)`` of the orientation grid of a ``width`` x ``height`` px image."""
    b = ORIENTATION_BLOCK_PX
    return (int(height) + b - 1) // b, (int(width) + b - 1) // b


@dataclass(frozen=True)
class FingerView:
    """One finger view of a (standard) minutiae record.

    Parameters
    ----------
    template : Template
        Minutiae converted to 500 dpi.
    position : int
        Finger position code (ISO/ANSI table): 0 unknown, 1-5 right thumb..little,
        6-10 left thumb..little, 11-15 plain thumbs and four-finger slaps.
    view_number : int
        View (2005, ANSI) or representation (2011) number of that finger, 0-15.
    impression_type : int
        0 live-scan plain, 1 live-scan rolled, 2 non-live plain, 3 non-live rolled, 8 swipe, ...
    dpi : float
        Resolution the record stated (the template itself is at 500 dpi).
    extended_data : bytes
        The view's extended data block, kept raw (ridge counts, cores and deltas, vendor data).
    extended_format : str
        The format ``extended_data`` came from; it is written back only to that format.

    Notes
    -----
    Thread-safe (immutable).
    """

    template: Template
    position: int = 0
    view_number: int = 0
    impression_type: int = 0
    dpi: float = 500.0
    extended_data: bytes = b""
    extended_format: str = ""

    def __post_init__(self):
        if not isinstance(self.template, Template):
            raise invalid("template", "a biomatch Template", type(self.template).__name__)
        for name in ("position", "view_number", "impression_type"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= 255:
                raise invalid(name, "an int in [0, 255]", value)
            object.__setattr__(self, name, int(value))
        if not isinstance(self.extended_data, (bytes, bytearray)):
            raise invalid("extended_data", "bytes", type(self.extended_data).__name__)
        object.__setattr__(self, "extended_data", bytes(self.extended_data))

