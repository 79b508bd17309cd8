"""One index file: an uncompressed zip of ``.npy`` arrays and raw blobs (what
``np.savez`` writes, plus members of our own), written atomically.

Members are stored, not deflated, and each one's data starts on a 64-byte boundary
(padding in the zip header's extra field, as Android's zipalign does; ``.npy`` pads its
own header to 64 bytes), so an array can be memory-mapped straight out of the file
(``IndexFile.mmap_array``) with the alignment numpy's fast matrix products need: a
million 512-d embeddings open in milliseconds and are paged in only where a search
reads them.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from mmdemo.atomic import atomic_write_with

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # the zip local file header, 30 bytes
_LOCAL_MAGIC = 0x04034B50
_ZIP64_EXTRA = 20  # what zipfile adds to a local header written with force_zip64
_PAD_ID = 0xD935  # zipalign's extra-field id for padding
ALIGN = 64


def _aligned(offset: int, name: str) -> zipfile.ZipInfo:
    """A ZipInfo whose data will start at a multiple of ALIGN when its header is at ``offset``."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    start = offset + _LOCAL_HEADER.size + len(name.encode("utf-8")) + _ZIP64_EXTRA + 4
    info.extra = struct.pack("<HH", _PAD_ID, -start % ALIGN) + b"\0" * (-start % ALIGN)
    return info


def write(path: str | Path, arrays: Mapping[str, np.ndarray],
          blobs: Mapping[str, Callable[[object], None]] | None = None) -> Path:
    """Write ``arrays`` as ``<name>.npy`` members and ``blobs`` (name -> writer(stream))."""
    def _write(f) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                with zf.open(_aligned(f.tell(), f"{name}.npy"), "w", force_zip64=True) as m:
                    np.lib.format.write_array(m, np.ascontiguousarray(arr), allow_pickle=False)
            for name, writer in (blobs or {}).items():
                with zf.open(_aligned(f.tell(), name), "w", force_zip64=True) as m:
                    writer(m)

    return atomic_write_with(path, _write)


class IndexFile:
    """One open index file: every member is read through the same file object, so a new
    version swapped in while it is being opened (``os.replace``) is never mixed with the
    old one. Memory maps made from it stay valid after ``close``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = open(self.path, "rb")
        try:
            self._zip = zipfile.ZipFile(self._f)
        except BaseException:
            self._f.close()
            raise

    def __enter__(self) -> "IndexFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()
        self._f.close()

    def names(self) -> list[str]:
        return self._zip.namelist()

    def _span(self, name: str) -> tuple[int, int]:
        """(offset of a stored member's bytes in the file, their length)."""
        info = self._zip.getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{name} is compressed")
        self._f.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(self._f.read(_LOCAL_HEADER.size))
        if fields[0] != _LOCAL_MAGIC:
            raise ValueError("bad zip local header")
        return info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1], info.file_size

    def read_array(self, name: str) -> np.ndarray:
        with self._zip.open(f"{name}.npy") as m:
            return np.lib.format.read_array(m, allow_pickle=False)

    def mmap_array(self, name: str) -> np.ndarray:
        """The ``<name>.npy`` member as a read-only memory map (plain dtypes only, no pickles).
        A member not aligned for its dtype (not written here) is read into memory instead:
        numpy would otherwise take a path many times slower."""
        offset, _ = self._span(f"{name}.npy")
        self._f.seek(offset)
        version = np.lib.format.read_magic(self._f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(self._f)
        data_offset = self._f.tell()
        if dtype.hasobject:
            raise ValueError("object arrays are not allowed")
        if int(np.prod(shape)) == 0 or data_offset % dtype.alignment:
            return self.read_array(name)
        return np.memmap(self._f, dtype=dtype, mode="r", offset=data_offset, shape=shape,
                         order="F" if fortran else "C")

    def mmap_bytes(self, name: str) -> np.ndarray:
        """A raw member as a read-only uint8 memory map."""
        offset, size = self._span(name)
        if size == 0:
            return np.zeros(0, np.uint8)
        return np.memmap(self._f, dtype=np.uint8, mode="r", offset=offset, shape=(size,))

    def open_member(self, name: str):
        """A readable stream over one member (for readers that stream, like faiss's)."""
        return self._zip.open(name)
