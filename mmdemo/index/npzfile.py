"""One index file: an uncompressed zip of ``.npy`` arrays and raw blobs (what
``np.savez`` writes, plus members of our own), written atomically.

Members are stored, not deflated, so an array can be memory-mapped straight out of
the file (``mmap_array``): a million 512-d embeddings open in milliseconds and are
paged in only where a search reads them.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from mmdemo.atomic import atomic_write_with

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # the zip local file header, 30 bytes
_LOCAL_MAGIC = 0x04034B50


def write(path: str | Path, arrays: Mapping[str, np.ndarray],
          blobs: Mapping[str, Callable[[object], None]] | None = None) -> Path:
    """Write ``arrays`` as ``<name>.npy`` members and ``blobs`` (name -> writer(stream))."""
    def _write(f) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as m:
                    np.lib.format.write_array(m, np.ascontiguousarray(arr), allow_pickle=False)
            for name, writer in (blobs or {}).items():
                with zf.open(name, "w", force_zip64=True) as m:
                    writer(m)

    return atomic_write_with(path, _write)


def member_span(path: str | Path, name: str) -> tuple[int, int]:
    """(offset of the member's bytes in the file, their length) for a stored member."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{name} is compressed")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
    if fields[0] != _LOCAL_MAGIC:
        raise ValueError("bad zip local header")
    name_len, extra_len = fields[-2], fields[-1]
    return info.header_offset + _LOCAL_HEADER.size + name_len + extra_len, info.file_size


def mmap_array(path: str | Path, name: str) -> np.ndarray:
    """The ``<name>.npy`` member as a read-only memory map (no pickles: plain dtypes only)."""
    offset, _ = member_span(path, f"{name}.npy")
    with open(path, "rb") as f:
        f.seek(offset)
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        data_offset = f.tell()
    if dtype.hasobject:
        raise ValueError("object arrays are not allowed")
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=data_offset, shape=shape, order="F" if fortran else "C")


def read_array(path: str | Path, name: str) -> np.ndarray:
    with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as m:
        return np.lib.format.read_array(m, allow_pickle=False)


def mmap_bytes(path: str | Path, name: str) -> np.ndarray:
    """A raw member as a read-only uint8 memory map."""
    offset, size = member_span(path, name)
    if size == 0:
        return np.zeros(0, np.uint8)
    return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(size,))


def open_member(path: str | Path, name: str):
    """A readable stream over one member (for readers that stream, like faiss's)."""
    zf = zipfile.ZipFile(path)
    stream = zf.open(name)
    stream._mmdemo_zip = zf  # keep the archive open as long as the stream lives
    return stream


def names(path: str | Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()
