"""NIfTI files read with their integrity checked.

Every image nmflow reads is decompressed to its last byte, so the gzip
trailer (CRC-32 and length) of a ``.nii.gz`` is always verified: a flipped bit
anywhere in the file, a truncated file or trailing garbage is an error naming
the file, never garbage values.  The BOLD is still read in one pass, volume by
volume (:func:`read_volumes`), decompressed by a background thread while the
caller works on the previous volumes; small images (masks, atlases) are read
whole (:func:`read_image`).  Decompression is ISA-L's (``isal``: the same
checks as Python's :mod:`gzip`, about twice as fast).  Headers are checked before any array is made: a
supported numeric type, finite scaling, and (for whole reads) as many bytes as
the header declares.  An uncompressed ``.nii`` has no checksum: only its
header and length can be checked.
"""

from __future__ import annotations

import contextlib
import functools
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import nibabel as nib
import numpy as np
from isal import igzip, igzip_threaded, isal_zlib

from nmflow.errors import NmflowInputError

CHUNK = 1 << 20


def load_header(path: str | Path) -> nib.Nifti1Image:
    """The image of ``path`` with its data left on disk, header checked.

    Raises
    ------
    NmflowInputError
        Missing file, unreadable header, not a NIfTI layout, a data type other
        than integers or reals, or non-finite scaling.
    """
    path = Path(path)
    if not path.exists():
        raise NmflowInputError(path, "file not found")
    try:
        img = nib.load(path)
        proxy = img.dataobj
        dtype = np.dtype(proxy.dtype)
        slope, inter = float(proxy.slope), float(proxy.inter)
    except Exception as exc:  # nibabel raises many types on a corrupt header
        raise NmflowInputError(path, f"cannot read image header ({type(exc).__name__}: {exc})") from None
    if getattr(proxy, "order", "F") != "F" or not hasattr(proxy, "offset"):
        raise NmflowInputError(path, "unsupported image layout (expected a NIfTI file)")
    if dtype.kind not in "biuf":
        raise NmflowInputError(path, f"unsupported data type {dtype} in the header")
    if not (np.isfinite(slope) and np.isfinite(inter)):
        raise NmflowInputError(path, f"invalid intensity scaling in the header (slope {slope}, intercept {inter})")
    return img


@contextlib.contextmanager
def verified_stream(path: str | Path, background: bool = False) -> Iterator[BinaryIO]:
    """The file's bytes (decompressed for ``.gz``); corruption found while reading becomes
    :class:`NmflowInputError`.  Read it to the end (:func:`read_to_end`) to verify a gzip CRC.

    ``background``: a ``.gz`` is decompressed ahead by one thread (ISA-L releases the GIL), so a
    caller that processes what it reads overlaps with the decompression."""
    if not str(path).endswith(".gz"):
        opener = functools.partial(open, path, "rb")
    elif background:
        opener = functools.partial(igzip_threaded.open, path, "rb", threads=1)
    else:
        opener = functools.partial(igzip.open, path, "rb")
    try:
        with opener() as stream:
            yield stream
    except (EOFError, OSError, zlib.error, isal_zlib.error) as exc:
        raise NmflowInputError(path, f"truncated or corrupt file ({type(exc).__name__}: {exc})") from None


def read_to_end(stream: BinaryIO) -> None:
    """Read and discard the rest of ``stream`` (a gzip stream checks its CRC and length at the end)."""
    while stream.read(CHUNK):
        pass


def _skip(stream: BinaryIO, n_bytes: int) -> None:
    """Read past ``n_bytes`` (the header) in bounded chunks, whatever the header claims."""
    while n_bytes > 0:
        got = len(stream.read(min(n_bytes, CHUNK)))
        if not got:
            raise EOFError("file ends inside the header")
        n_bytes -= got


def _scaling(img: nib.Nifti1Image) -> tuple[np.dtype, float, float, int]:
    proxy = img.dataobj
    return np.dtype(proxy.dtype), float(proxy.slope), float(proxy.inter), int(proxy.offset)


def read_volumes(img: nib.Nifti1Image, path: str | Path) -> Iterator[np.ndarray]:
    """Yield each volume of a 4D image as a float64 vector ``(n_voxels,)`` in Fortran voxel order.

    One sequential pass over the file (one decompression for ``.nii.gz``),
    the header's scaling applied; after the last volume the file is read to
    its end, so a corrupt ``.nii.gz`` raises :class:`NmflowInputError` before
    the generator finishes.
    """
    dtype, slope, inter, offset = _scaling(img)
    n_bytes = int(np.prod(img.shape[:3])) * dtype.itemsize
    with verified_stream(path, background=True) as stream:
        _skip(stream, offset)
        for _ in range(img.shape[3]):
            raw = stream.read(n_bytes)
            if len(raw) < n_bytes:
                raise EOFError("file ends before the last volume")
            with np.errstate(invalid="ignore", over="ignore"):  # non-finite values are the caller's check
                volume = np.frombuffer(raw, dtype=dtype).astype(float) * slope + inter
            yield volume
        read_to_end(stream)


def read_image(path: str | Path) -> tuple[nib.Nifti1Image, np.ndarray]:
    """An image and its whole data array (float64 if scaled), every byte of the file verified.

    Raises
    ------
    NmflowInputError
        A bad header (:func:`load_header`), a corrupt or truncated file, or
        fewer data bytes than the header declares.
    """
    img = load_header(path)
    dtype, slope, inter, offset = _scaling(img)
    with verified_stream(path) as stream:
        data = stream.read()
    n_values = int(np.prod(img.shape, dtype=np.int64))
    if len(data) < offset + n_values * dtype.itemsize:
        raise NmflowInputError(path, f"truncated image: the header declares {n_values} values of {dtype}, "
                               f"the file holds {max(len(data) - offset, 0)} bytes of data")
    values = np.frombuffer(data, dtype=dtype, count=n_values, offset=offset).reshape(img.shape, order="F")
    if (slope, inter) == (1.0, 0.0):
        return img, values
    with np.errstate(invalid="ignore", over="ignore"):
        return img, values * slope + inter
