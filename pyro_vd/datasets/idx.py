"""Reading and writing IDX files (the MNIST format), plain or gzip-compressed."""

import gzip
import pathlib
import struct
import zlib

import numpy as np

#: IDX type codes → numpy dtypes (big-endian, as the format stores them).
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


def _open(path):
    path = pathlib.Path(path)
    with path.open("rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else path.open("rb")


def read_idx(path):
    """
    An IDX file as a numpy array: magic ``0x0000 <type> <ndim>``, then ``ndim`` big-endian uint32
    sizes, then the data (gzip-compressed or not).

    :raises ValueError: if the file is not a well-formed IDX file, or a truncated or corrupt gzip
        stream (naming the file).
    """
    try:
        with _open(path) as f:
            header = f.read(4)
            if len(header) != 4 or header[:2] != b"\x00\x00" or header[2] not in _DTYPES:
                raise ValueError(f"{path}: not an IDX file (bad magic number {header.hex()!r})")
            ndim = header[3]
            raw_sizes = f.read(4 * ndim)
            if len(raw_sizes) != 4 * ndim:
                raise ValueError(
                    f"{path}: IDX header announces {ndim} dimensions but the file ends inside their sizes"
                )
            sizes = struct.unpack(f">{ndim}I", raw_sizes)
            dtype = np.dtype(_DTYPES[header[2]])
            data = f.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise ValueError(f"{path}: truncated or corrupt gzip file ({error})") from error
    expected = int(np.prod(sizes, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{path}: IDX header announces {sizes} ({expected} bytes) but {len(data)} bytes follow"
        )
    return np.frombuffer(data, dtype=dtype).reshape(sizes).astype(dtype.newbyteorder("="))


def write_idx(path, array, compress=None):
    """Write ``array`` as an IDX file (gzip-compressed when ``compress`` or the name ends in .gz)."""
    path = pathlib.Path(path)
    array = np.asarray(array)
    dtype = array.dtype if array.dtype.itemsize == 1 else array.dtype.newbyteorder(">")
    if dtype not in _CODES:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    payload = struct.pack(">BBBB", 0, 0, _CODES[dtype], array.ndim)
    payload += struct.pack(f">{array.ndim}I", *array.shape) + array.astype(dtype).tobytes()
    compress = path.suffix == ".gz" if compress is None else compress
    with gzip.open(path, "wb") if compress else path.open("wb") as f:
        f.write(payload)
    return path
