"""Image input: read any common format, convert to 8-bit grey, resample to 500 dpi.

The first stage of the data flow (``imaging`` → ``extract`` → ``formats`` → ``match`` → ...):

=================  ==========================================================================
module             job
=================  ==========================================================================
``limits``         what an input may be: pixels, memory per pixel, resolution (:func:`check_dpi`)
``header``         size, samples and depth from an image's header, without decoding a pixel
``read``           decode a file or a buffer (PNG, JPEG, JPEG 2000, TIFF, BMP, PNM, WebP, WSQ)
``wsq``            FBI WSQ: a validating header parser around NBIS, decoded in its own process
``convert``        8-bit grey from grey or colour images of 8 or 16 bits or floats
``resample``       to the 500 dpi working resolution; :func:`load_fingerprint` does all of it
=================  ==========================================================================

The resolution always comes from the caller: scanners and FVC TIFFs write
meaningless resolution tags (1x1 dpi), so metadata is never trusted outside
[250, 2000] dpi, and here it is not read at all.

Decompression bombs. A 2.6 MB PNG can hold 30000 x 30000 black pixels (2.7 GB decoded), and
a JPEG, TIFF or WSQ header can claim any size. Every read therefore takes the image's header
first (:func:`read_header`, without decoding) and refuses, before any pixel is decoded:

- more than ``max_pixels`` pixels: :data:`MAX_IMAGE_PIXELS` for finger images (here and in
  AN2K finger records), :data:`MAX_FACE_IMAGE_PIXELS` for face photos
  (:func:`biomatch.face.detect.to_bgr`, AN2K Type-10 records);
- a decode whose estimated peak memory (file bytes held + the decoder's buffers + the output,
  from the header's size, samples and depth) exceeds :data:`READ_BYTES_PER_PIXEL` bytes per
  allowed pixel, so that a small image of 16-bit RGBA samples, or with a decoder that keeps
  whole planes (JPEG 2000, progressive JPEG, single-strip TIFF), is bounded too.

So the memory a read adds is at most 64 MiB (codec state, plugins imported on first use) + 8
bytes per allowed pixel; a refused bomb costs a few MiB. (WSQ is decoded by NBIS in its own
process, :mod:`biomatch.imaging.wsq`, within the same pixel limit.) Arrays given directly are
checked against the same pixel count before any conversion. Every entry point that reads an
image goes through :func:`read_image` or :func:`decode_bytes`; new ones (a network service)
must too.
"""

from __future__ import annotations

from .convert import to_grey8
from .header import ImageHeader, check_header, read_header
from .limits import MAX_DPI, MAX_FACE_IMAGE_PIXELS, MAX_IMAGE_PIXELS, MIN_DPI, READ_BYTES_PER_PIXEL, check_dpi
from .read import decode_bytes, read_image
from .resample import load_fingerprint, to_working_resolution

__all__ = ["read_image", "decode_bytes", "read_header", "ImageHeader", "to_grey8", "to_working_resolution",
           "load_fingerprint", "check_header", "check_dpi", "MIN_DPI", "MAX_DPI", "MAX_IMAGE_PIXELS",
           "MAX_FACE_IMAGE_PIXELS", "READ_BYTES_PER_PIXEL"]
