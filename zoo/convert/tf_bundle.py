"""Read TensorFlow V2 checkpoint bundles without TensorFlow.

A bundle is a prefix ``P`` with two kinds of file (``tensorflow/core/util/tensor_bundle``):

- ``P.index``: an SSTable (the LevelDB table format: prefix-compressed key/value blocks, an index
  block pointing at them, a 48-byte footer ending in the magic number ``0xdb4775248b80fb57``;
  every block is followed by a compression byte and the masked crc32c of block + byte). Its
  empty key holds a ``BundleHeaderProto`` (number of shards, endianness); every other key is a
  variable name whose value is a ``BundleEntryProto`` (dtype, shape, shard, offset, size, the
  masked crc32c of the tensor's bytes).
- ``P.data-SSSSS-of-NNNNN``: the shards, raw little-endian tensors one after another.

Both protobuf messages are decoded by hand from the wire format (a few varint and
length-delimited fields), so neither TensorFlow nor protobuf's generated classes are needed.
Every block checksum and every tensor checksum is verified; a mismatch raises
:class:`BundleError` naming the variable and the file.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import crc32c as _crc32c
import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
_MASK_DELTA = 0xA282EAD8

#: TensorFlow DataType enum values (types.proto) -> numpy dtypes (little endian).
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
          10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
               9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 19: "float16", 22: "uint32", 23: "uint64"}


class BundleError(ValueError):
    """A file that is not a readable TensorFlow V2 checkpoint bundle; the message says which and why."""


def crc32c(data: bytes) -> int:
    return _crc32c.crc32c(data)


def unmask_crc(masked: int) -> int:
    """LevelDB/TensorFlow store ``((crc >> 15) | (crc << 17)) + 0xa282ead8``: undo it."""
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# ---- protobuf wire format ------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise BundleError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise BundleError("varint longer than 64 bits")


def _fields(buf: bytes):
    """(field number, wire type, value) of a protobuf message; value is an int or bytes."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise BundleError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


@dataclass(frozen=True)
class BundleEntry:
    """One variable of a bundle (``BundleEntryProto``)."""
    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int  # as stored: masked
    sliced: bool

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype, f"DataType {self.dtype}")


def _parse_entry(name: str, buf: bytes) -> BundleEntry:
    dtype, shape, shard, offset, size, crc, sliced = 0, [], 0, 0, 0, 0, False
    for number, _, value in _fields(buf):
        if number == 1:
            dtype = value
        elif number == 2:  # TensorShapeProto: repeated Dim dim = 2 {int64 size = 1}
            for dim_number, _, dim in _fields(value):
                if dim_number == 2:
                    size_of_dim = 0
                    for n, _, v in _fields(dim):
                        if n == 1:
                            size_of_dim = v - (1 << 64) if v >= 1 << 63 else v
                    shape.append(size_of_dim)
        elif number == 3:
            shard = value
        elif number == 4:
            offset = value
        elif number == 5:
            size = value
        elif number == 6:
            crc = value
        elif number == 7:
            sliced = True
    return BundleEntry(name, dtype, tuple(shape), shard, offset, size, crc, sliced)


# ---- SSTable -------------------------------------------------------------------------------------


def _read_block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(data):
        raise BundleError(f"{path}: a block runs past the end of the file (truncated index?)")
    block, kind = data[offset:end], data[end]
    stored = struct.unpack_from("<I", data, end + 1)[0]
    if unmask_crc(stored) != crc32c(data[offset:end + 1]):
        raise BundleError(f"{path}: block at byte {offset} fails its crc32c check: the index file is corrupt")
    if kind != 0:
        raise BundleError(f"{path}: block at byte {offset} is compressed (type {kind}); only uncompressed "
                          "bundles (TensorFlow's default for checkpoints) are supported")
    return block


def _block_entries(block: bytes, path: Path):
    """(key, value) pairs of one block, undoing the prefix compression."""
    if len(block) < 4:
        raise BundleError(f"{path}: block too short")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * n_restarts
    if limit < 0:
        raise BundleError(f"{path}: bad block restart array")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_length, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + value_length]
        pos += value_length


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def read_sstable(path) -> dict[bytes, bytes]:
    """Every key -> value of an uncompressed LevelDB-format table, checksums verified."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < FOOTER_SIZE:
        raise BundleError(f"{path} is too short to be a TensorFlow checkpoint index ({len(data)} bytes)")
    footer = data[-FOOTER_SIZE:]
    if struct.unpack_from("<Q", footer, 40)[0] != TABLE_MAGIC:
        raise BundleError(f"{path} is not a TensorFlow checkpoint index (no SSTable magic number at its end); "
                          "pass the bundle's prefix, e.g. DIR/model.ckpt for DIR/model.ckpt.index")
    _, _, pos = _handle(footer)  # metaindex: unused by TensorFlow bundles
    index_offset, index_size, _ = _handle(footer, pos)
    table = {}
    for _, handle in _block_entries(_read_block(data, index_offset, index_size, path), path):
        offset, size, _ = _handle(handle)
        for key, value in _block_entries(_read_block(data, offset, size, path), path):
            table[key] = value
    return table


# ---- bundle --------------------------------------------------------------------------------------


def bundle_prefix(path) -> Path:
    """The bundle prefix for a prefix, its ``.index`` file, a data shard, or a folder holding one bundle."""
    path = Path(path)
    if path.is_dir():
        indexes = sorted(path.glob("*.index"))
        if len(indexes) != 1:
            found = ", ".join(p.name for p in indexes) or "none"
            raise BundleError(f"{path} should hold exactly one TensorFlow checkpoint (*.index); found {found}. "
                              "Pass the bundle's prefix (DIR/NAME for DIR/NAME.index)")
        return indexes[0].with_suffix("")
    if path.suffix == ".index":
        return path.with_suffix("")
    if ".data-" in path.name:
        return path.with_name(path.name.split(".data-")[0])
    return path


class TensorBundle:
    """``TensorBundle(prefix)``: the variables of a TensorFlow V2 checkpoint as numpy arrays.

    >>> bundle = TensorBundle("../shared/weights/germain2019/se_model.ckpt")
    >>> bundle.names()[:2], bundle["se_conv_0/weights"].shape
    """

    def __init__(self, path):
        self.prefix = bundle_prefix(path)
        self.index_path = self.prefix.with_name(self.prefix.name + ".index")
        if not self.index_path.is_file():
            raise BundleError(f"no checkpoint index {self.index_path}: pass the bundle's prefix, its .index file "
                              "or the folder that holds it")
        table = read_sstable(self.index_path)
        header = table.pop(b"", None)
        if header is None:
            raise BundleError(f"{self.index_path} has no bundle header: not a V2 checkpoint (V1 checkpoints "
                              "are not supported; re-save with TensorFlow >= 1.1)")
        self.num_shards, endianness = 1, 0
        for number, _, value in _fields(header):
            if number == 1:
                self.num_shards = value
            elif number == 2:
                endianness = value
        if endianness != 0:
            raise BundleError(f"{self.index_path}: big-endian bundles are not supported")
        self.entries = {key.decode(): _parse_entry(key.decode(), value) for key, value in table.items()}
        self._shards: dict[int, bytes] = {}

    def shard_path(self, shard_id: int) -> Path:
        return self.prefix.with_name(f"{self.prefix.name}.data-{shard_id:05d}-of-{self.num_shards:05d}")

    def data_files(self) -> list[Path]:
        return [self.shard_path(i) for i in range(self.num_shards)]

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def _shard(self, shard_id: int) -> bytes:
        if shard_id not in self._shards:
            path = self.shard_path(shard_id)
            if not path.is_file():
                raise BundleError(f"the checkpoint's data shard {path} is missing: copy it beside {self.index_path}")
            self._shards[shard_id] = path.read_bytes()
        return self._shards[shard_id]

    def __getitem__(self, name: str) -> np.ndarray:
        """The variable's value, after checking its size and crc32c against the index."""
        try:
            entry = self.entries[name]
        except KeyError:
            raise KeyError(f"{self.prefix} has no variable {name!r}") from None
        if entry.sliced:
            raise BundleError(f"{name}: partitioned (sliced) variables are not supported")
        dtype = DTYPES.get(entry.dtype)
        if dtype is None:
            raise BundleError(f"{name}: unsupported dtype {entry.dtype_name}")
        shard = self._shard(entry.shard_id)
        raw = shard[entry.offset:entry.offset + entry.size]
        if len(raw) != entry.size:
            raise BundleError(f"{name}: {self.shard_path(entry.shard_id)} is truncated "
                              f"({len(shard)} bytes, the variable ends at byte {entry.offset + entry.size})")
        if crc32c(raw) != unmask_crc(entry.crc32c):
            raise BundleError(f"{name}: checksum mismatch in {self.shard_path(entry.shard_id)} "
                              "(the data file is corrupt or belongs to another checkpoint)")
        count = int(np.prod(entry.shape, dtype=np.int64)) if entry.shape else 1
        if count * np.dtype(dtype).itemsize != entry.size:
            raise BundleError(f"{name}: {entry.size} bytes do not hold a {entry.dtype_name} tensor of shape {entry.shape}")
        return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(entry.shape).copy()

    def read(self, names=None) -> dict[str, np.ndarray]:
        """Several variables (all when ``names`` is None), every checksum verified."""
        return {name: self[name] for name in (self.names() if names is None else names)}
