"""Whole-grid NRRD files of values known at a few voxels, written without the whole grid.

A feature map covers a segment's voxels, but its file holds the image's whole grid (NaN elsewhere), so that it
overlays the image in any viewer: in a 512 x 512 x 299 CT that is 600 MB of float64 per map, of which a tumour's
box holds a few percent. SimpleITK writes such a file from a whole-grid image (a numpy array filled, copied into ITK,
then compressed whole: 69 s for the 91 glcm + firstorder maps of STS_001's tumour in such a CT on the 2-vCPU
development VM). :class:`SparseGridWriter` writes the same file (NRRD0004, ``encoding: gzip``, the header SimpleITK
writes) from the values alone, in 1.5 s for those maps (``Testing/benchmarks/bench_map_files.py``):

- The grid is a sequence of rows (x lines). Rows holding values, with short runs of fill rows between them, are
  compressed as they are (one row block at a time, into a small buffer).
- A long run of fill rows is not compressed again for every file: deflate blocks made once per writer from
  2^k rows of the fill value, each ended by ``Z_FULL_FLUSH`` (byte-aligned, referring to nothing before it), are
  copied in. zlib documents that after a full flush "decompression can restart from this point": no later block
  refers to data before it, so blocks from another compressor may stand in between. Each file's compressor is
  full-flushed before such a copy for the same reason.
- The gzip trailer's CRC-32 of the whole data is combined from the parts' CRCs (zlib's ``crc32_combine``: the CRC of
  A followed by B is ``crc(A) * x^(8 |B|) + crc(B)`` over GF(2) modulo the CRC polynomial).

The values read back (SimpleITK, Python's ``gzip`` with its CRC and length checks) are bit for bit those of the
whole-grid image: ``Testing/test_nrrd.py``.
"""

import struct
import zlib
from dataclasses import dataclass

import numpy as np

#: NRRD type names (teem) of the numpy types a map may have.
NRRD_TYPES = {"int8": "signed char", "uint8": "uchar", "int16": "short", "uint16": "ushort", "int32": "int",
              "uint32": "uint", "int64": "longlong", "uint64": "ulonglong", "float32": "float", "float64": "double"}
#: A run of fill rows shorter than this (bytes) is compressed with the rows around it instead of copied in.
COPY_FILL_BYTES = 1 << 20
#: Rows compressed at once (bytes at most, at least one row).
BLOCK_BYTES = 1 << 23
#: zlib level of each file's own compression (values and short fill runs); the copied fill blocks use level 9. On the
#: 91 glcm + firstorder maps of a tumour in a whole CT: level 1 1.6 s and 140 MB, level 6 2.5 s and 134 MB.
LEVEL = 1

_POLY = 0xEDB88320   # CRC-32 (reflected)


def _multiply(a: int, b: int) -> int:
    """a * b modulo the CRC-32 polynomial (reflected bit order; zlib's ``multmodp``)."""
    product, bit = 0, 1 << 31
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


def _power_of_x(bits: int) -> int:
    """x^bits modulo the CRC-32 polynomial (zlib's ``x2nmodp``, by squaring)."""
    result, square = 1 << 31, 1 << 30       # x^0, x^1
    while bits:
        if bits & 1:
            result = _multiply(square, result)
        square = _multiply(square, square)
        bits >>= 1
    return result


@dataclass(frozen=True)
class _Part:
    """Compressed bytes standing for ``length`` bytes of data with CRC-32 ``crc``; ``shift`` = x^(8 length) mod P."""
    data: bytes
    crc: int
    length: int
    shift: int

    def after(self, crc: int) -> int:
        """The CRC-32 of (data whose CRC is ``crc``) followed by this part's data."""
        return _multiply(self.shift, crc) ^ self.crc


def nrrd_header(reference, shape, dtype) -> bytes:
    """The header SimpleITK (ITK 5) writes for a gzip NRRD of ``dtype`` on the (z, y, x) grid ``shape`` (z = 1 for a
    2D ``reference``) with ``reference``'s origin, spacing and direction."""
    dimension = reference.GetDimension()
    size, spacing = tuple(int(n) for n in shape[::-1][:dimension]), reference.GetSpacing()
    direction = reference.GetDirection()
    columns = [tuple(direction[row * dimension + column] * spacing[column] for row in range(dimension))
               for column in range(dimension)]

    def vector(values) -> str:
        return "(" + ",".join("%.17g" % v for v in values) + ")"

    lines = ["NRRD0004", "# Complete NRRD file format specification at:",
             "# http://teem.sourceforge.net/nrrd/format.html", f"type: {NRRD_TYPES[np.dtype(dtype).name]}",
             f"dimension: {dimension}",
             "space: left-posterior-superior" if dimension == 3 else f"space dimension: {dimension}",
             "sizes: " + " ".join(str(n) for n in size),
             "space directions: " + " ".join(vector(c) for c in columns),
             "kinds: " + " ".join(["domain"] * dimension), "endian: little", "encoding: gzip",
             "space origin: " + vector(reference.GetOrigin())]
    return ("\n".join(lines) + "\n\n").encode("ascii")


class SparseGridWriter:
    """Writes gzip NRRD files of ``reference``'s grid holding ``fill_value`` everywhere but at the voxels ``flat``
    (flat indices of the (z, y, x) grid ``shape``, x fastest), where each file gets its own values.

    Made once for many files of the same voxels (the maps of one run): the rows holding values and the compressed
    fill blocks are found once. ``shape`` is (z, y, x), z = 1 for a 2D ``reference``, whose size is not read (a
    one-voxel image of the geometry will do: :func:`RadiomicsLabLib.featuremaps.geometry_only`)."""

    def __init__(self, reference, shape, flat, dtype=np.float64, fill_value=np.nan):
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.header = nrrd_header(reference, shape, self.dtype)
        self.width = int(shape[-1])
        self.rows = int(np.prod(shape[:-1]))
        self.fill_row = np.full(self.width, fill_value, dtype=self.dtype)
        flat = np.asarray(flat, dtype=np.int64)
        self.order = None if np.all(flat[1:] > flat[:-1]) else np.argsort(flat, kind="stable")
        self.flat = flat if self.order is None else flat[self.order]
        self.row_bytes = self.width * self.dtype.itemsize
        self.pieces = self._pieces()
        self.units = self._units()

    def _pieces(self) -> list:
        """The grid in order as ``("rows", first_row, stop_row, first_value, stop_value)`` blocks to compress and
        ``("fill", rows)`` runs to copy in."""
        rows = self.flat // self.width
        value_rows = np.unique(rows)
        copy_rows = max(1, -(-COPY_FILL_BYTES // self.row_bytes))
        pieces, at = [], 0
        if value_rows.size:
            # runs of rows compressed together: value rows, with fill runs shorter than copy_rows between them
            breaks = np.flatnonzero(np.diff(value_rows) > copy_rows)
            starts = np.concatenate(([value_rows[0]], value_rows[breaks + 1]))
            stops = np.concatenate((value_rows[breaks] + 1, [value_rows[-1] + 1]))
            block_rows = max(1, BLOCK_BYTES // self.row_bytes)
            for start, stop in zip(starts.tolist(), stops.tolist()):
                if start > at:
                    pieces.append(("fill", start - at))
                for first in range(start, stop, block_rows):
                    last = min(first + block_rows, stop)
                    lo, hi = np.searchsorted(rows, [first, last])
                    pieces.append(("rows", first, last, int(lo), int(hi)))
                at = stop
        if self.rows > at:
            pieces.append(("fill", self.rows - at))
        return pieces

    def _units(self) -> list:
        """Compressed fill blocks of 2^k rows (k = 0, 1, ... up to the longest fill run), each from a fresh compressor
        ended by a full flush; unit k + 1 is unit k twice from about 8 MB of data on (no need to compress again)."""
        longest = max([piece[1] for piece in self.pieces if piece[0] == "fill"], default=0)
        units, k = [], 0
        while (1 << k) <= longest:
            rows = 1 << k
            if units and rows * self.row_bytes > BLOCK_BYTES:
                half = units[-1]
                units.append(_Part(half.data + half.data, half.after(half.crc), 2 * half.length,
                                   _multiply(half.shift, half.shift)))
            else:
                raw = np.tile(self.fill_row, rows).tobytes()
                compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
                data = compressor.compress(raw) + compressor.flush(zlib.Z_FULL_FLUSH)
                units.append(_Part(data, zlib.crc32(raw), len(raw), _power_of_x(8 * len(raw))))
            k += 1
        return units

    def write(self, path, values) -> None:
        """Write the file of ``values`` (one per voxel of ``flat``, in its order) to ``path``."""
        values = np.asarray(values)
        if self.order is not None:
            values = values[self.order]
        compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15, 9)
        crc, length = 0, 0
        with open(path, "wb") as handle:
            handle.write(self.header)
            handle.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03")     # gzip member header (as zlib writes it)
            for piece in self.pieces:
                if piece[0] == "rows":
                    _, first, last, lo, hi = piece
                    block = np.tile(self.fill_row, last - first)
                    block[self.flat[lo:hi] - first * self.width] = values[lo:hi]
                    data = block.tobytes()
                    crc, length = zlib.crc32(data, crc), length + len(data)
                    handle.write(compressor.compress(data))
                    continue
                handle.write(compressor.flush(zlib.Z_FULL_FLUSH))   # nothing after refers to what came before
                rows = piece[1]
                for k in range(len(self.units) - 1, -1, -1):
                    unit = self.units[k]
                    while rows >= (1 << k):
                        handle.write(unit.data)
                        crc, length, rows = unit.after(crc), length + unit.length, rows - (1 << k)
            handle.write(compressor.flush(zlib.Z_FINISH))
            handle.write(struct.pack("<II", crc, length & 0xFFFFFFFF))
