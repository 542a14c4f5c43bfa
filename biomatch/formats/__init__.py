"""Foreign interchange formats, read and written exactly, every parser bounded by its input.

Templates (through the codec registry of :mod:`biomatch.template`: ``load``, ``load_views``, ``dump``):

- :mod:`~biomatch.formats.iso19794_2` — ISO/IEC 19794-2:2005 and :2011 finger minutiae records;
- :mod:`~biomatch.formats.ansi378` — ANSI/INCITS 378-2004 finger minutiae records;
- :mod:`~biomatch.formats.foreign` — explicit converters for known non-conformant writers (afis,
  nbis-py), applied only when the caller asks.

Images and transactions:

- :mod:`~biomatch.formats.wsq` — FBI WSQ images (NBIS through the ``wsq`` package);
- :mod:`~biomatch.formats.an2k` — ANSI/NIST-ITL 1-2011 transactions (.an2k, .eft).

Every decoder reads through :class:`~biomatch.formats._reader.Reader`, which checks each length
against the bytes that remain *before* slicing or allocating, and raises
:class:`~biomatch.errors.FormatError` naming the record, the field and the byte offset.
"""
