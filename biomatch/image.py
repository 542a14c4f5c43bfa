"""Image input: read any common format, convert to 8-bit grey, resample to 500 dpi.

The resolution always comes from the caller: scanners and FVC TIFFs write
meaningless resolution tags (1x1 dpi), so metadata is never trusted outside
[250, 2000] dpi, and here it is not read at all.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import ImageError, invalid
from .params import WORKING_DPI

__all__ = ["read_image", "decode_bytes", "to_grey8", "to_working_resolution", "load_fingerprint"]

MIN_DPI = 100.0
MAX_DPI = 2000.0
_MAX_PIXELS = 40_000_000  # a 1000 ppi ten-print card is ~16 Mpx; beyond this is not a finger image
_MAX_FILE_BYTES = 200 * 2**20


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file (TIFF, PNG, BMP, PGM, JPEG, JPEG 2000, WSQ) as an array.

    Returns the decoded pixels unchanged in depth (uint8 or uint16; grey or colour);
    use :func:`to_grey8` to normalise. WSQ files (recognised by their FFA0 marker, whatever
    their name) are decoded by NBIS in an isolated process (:mod:`biomatch.formats.wsq`);
    JPEG 2000 by OpenCV's OpenJPEG.

    Raises
    ------
    ImageError
        Missing, empty, truncated or undecodable file, or an absurd size.
    """
    import cv2

    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ImageError(f"path: cannot read image {str(p)!r}: {exc.strerror}") from exc
    if not p.is_file():
        raise ImageError(f"path: expected an image file, got {str(p)!r} which is not a regular file")
    if size == 0:
        raise ImageError(f"path: image file {str(p)!r} is empty (0 bytes)")
    if size > _MAX_FILE_BYTES:
        raise ImageError(f"path: expected an image under {_MAX_FILE_BYTES} bytes, got {size} bytes")
    data = np.fromfile(p, np.uint8)
    if p.suffix.lower() == ".wsq" or (data.size >= 2 and data[0] == 0xFF and data[1] == 0xA0):
        return decode_bytes(data.tobytes(), str(p))
    img = None
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error:
        img = None
    if img is None and p.suffix.lower() in (".tif", ".tiff"):
        img = _read_tiff_fallback(p)
    if img is None:
        raise ImageError(f"path: cannot decode {str(p)!r} as an image (corrupt, truncated or unknown format)")
    return img


def decode_bytes(data: bytes, name: str = "image") -> np.ndarray:
    """Decode an encoded image held in memory (WSQ, or anything OpenCV reads: PNG, JPEG, JPEG 2000...).

    Raises
    ------
    ImageError
        Undecodable data; a corrupt WSQ raises :class:`~biomatch.errors.FormatError` from
        :mod:`biomatch.formats.wsq`, re-raised as ImageError naming ``name``.
    """
    import cv2

    from .errors import FormatError

    if len(data) >= 2 and data[0] == 0xFF and data[1] == 0xA0:
        from .formats import wsq

        try:
            return wsq.decode(data)[0]
        except FormatError as exc:
            raise ImageError(f"{name}: cannot decode WSQ: {exc}") from exc
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None:
        raise ImageError(f"{name}: cannot decode {len(data)} bytes as an image (corrupt or unknown format)")
    return img


def _read_tiff_fallback(p: Path):
    try:
        from skimage import io

        return np.asarray(io.imread(p))
    except Exception:  # any decoder failure means "not decodable"; reported by the caller
        return None


def to_grey8(image: np.ndarray) -> np.ndarray:
    """Convert a grey or colour image of 8 or 16 bits (or float in [0, 1]) to 8-bit grey.

    Parameters
    ----------
    image : ndarray, shape (h, w) or (h, w, 3|4)
        uint8, uint16 or float; colour channels in BGR(A) order (as OpenCV reads them).

    Returns
    -------
    ndarray of uint8, shape (h, w)
    """
    import cv2

    if not isinstance(image, np.ndarray):
        raise invalid("image", "a numpy array", type(image).__name__)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        elif image.dtype != np.uint8:
            image = _float_to_u8(image, "image")
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        return cv2.cvtColor(np.ascontiguousarray(image), code)
    if image.ndim != 2:
        raise invalid("image", "shape (h, w) or (h, w, 3|4)", image.shape)
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.floating):
        return _float_to_u8(image, "image")
    raise invalid("image.dtype", "uint8, uint16 or float", image.dtype)


def _float_to_u8(image: np.ndarray, name: str) -> np.ndarray:
    if not np.issubdtype(image.dtype, np.floating):
        raise invalid(f"{name}.dtype", "uint8, uint16 or float", image.dtype)
    if not np.all(np.isfinite(image)):
        raise invalid(name, "finite pixel values", "NaN or infinity")
    if image.size and (image.min() < 0 or image.max() > 1):
        raise invalid(name, "float pixels in [0, 1]", (float(image.min()), float(image.max())))
    return np.round(image * 255).astype(np.uint8)


def check_dpi(dpi: object) -> float:
    """Validate a resolution in dots per inch."""
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating)):
        raise invalid("dpi", f"a number in [{MIN_DPI:g}, {MAX_DPI:g}]", dpi)
    value = float(dpi)
    if not math.isfinite(value) or not MIN_DPI <= value <= MAX_DPI:
        raise invalid("dpi", f"a number in [{MIN_DPI:g}, {MAX_DPI:g}]", dpi)
    return value


def to_working_resolution(grey: np.ndarray, dpi: float) -> np.ndarray:
    """Resample an 8-bit grey image from ``dpi`` to the 500 dpi working resolution.

    Area interpolation when shrinking (anti-aliased), cubic when enlarging.
    """
    import cv2

    dpi = check_dpi(dpi)
    if abs(dpi - WORKING_DPI) < 1e-6:
        return grey
    scale = WORKING_DPI / dpi
    h, w = grey.shape
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(grey, (nw, nh), interpolation=interp)


def load_fingerprint(image, dpi: float) -> np.ndarray:
    """Read (if a path) and normalise a fingerprint image to 8-bit grey at 500 dpi."""
    dpi = check_dpi(dpi)
    if isinstance(image, (str, Path)):
        image = read_image(image)
    grey = to_grey8(image)
    if grey.size > _MAX_PIXELS:
        raise invalid("image", f"at most {_MAX_PIXELS} pixels", f"{grey.shape[1]}x{grey.shape[0]}")
    return to_working_resolution(grey, dpi)
