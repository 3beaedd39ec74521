"""``zoo.convert.tf_bundle``: the TensorFlow V2 checkpoint reader, on the two real releases in
../shared/weights and on damaged copies of them (every checksum must really be checked).

The damaged copies are made in ``tmp_path``; the shared files are never written.
"""
from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from zoo.convert.germain2019 import kind_of
from zoo.convert.tf_bundle import BundleError, TensorBundle, bundle_prefix, read_sstable, unmask_crc

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights"
SENET = WEIGHTS / "germain2019"
LOSSNET = WEIGHTS / "germain2019-lossnet"
SENET_FILES = ("se_model.ckpt.index", "se_model.ckpt.data-00000-of-00001")
LOSSNET_FILES = ("my_test_model.index", "my_test_model.data-00000-of-00001")
# ../shared/weights/germain2019/README.md
SENET_SHA256 = {
    "se_model.ckpt.data-00000-of-00001": "26a265e01e8de5d2b7452ce53628f1eb42efde63f78cfe0de3b8d8bdc60dfba7",
    "se_model.ckpt.index": "077a3c5cc1d12b28851d1cbeda65e610360c7d12c2072ba7b6551e399e164711",
}

pytestmark = pytest.mark.skipif(not (SENET / SENET_FILES[0]).is_file() or not (LOSSNET / LOSSNET_FILES[0]).is_file(),
                                reason=f"the released TensorFlow bundles are not in {WEIGHTS}")


# ---- independent helpers (no zoo code) ----------------------------------------------------------

def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c_reference(data: bytes) -> int:
    """Castagnoli CRC (reflected polynomial 0x82F63B78), byte at a time, pure Python."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB's ``crc32c::Mask``: rotate right by 15 bits, add 0xa282ead8."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def index_block_handle(index: bytes) -> tuple[int, int]:
    """(offset, size) of the SSTable's index block, read from the 48-byte footer."""
    footer = index[-48:]
    assert struct.unpack_from("<Q", footer, 40)[0] == 0xDB4775248B80FB57
    _, pos = varint(footer, 0)  # metaindex offset
    _, pos = varint(footer, pos)  # metaindex size
    offset, pos = varint(footer, pos)
    size, _ = varint(footer, pos)
    return offset, size


def copy_bundle(src: Path, names, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(src / name, dst / name)
    return dst


def flip_byte(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


# ---- the real bundles ---------------------------------------------------------------------------

def test_shared_senet_files_are_the_documented_release():
    for name, digest in SENET_SHA256.items():
        assert hashlib.sha256((SENET / name).read_bytes()).hexdigest() == digest, name


def test_senet_bundle_variables_as_documented():
    """58 variables: se_conv_0..12 and se_conv_last (weights, w0, w1, BatchNorm/beta) and se_fc_last."""
    bundle = TensorBundle(SENET / "se_model.ckpt")
    assert bundle.num_shards == 1 and kind_of(bundle) == "can"
    layers = [f"se_conv_{i}" for i in range(13)] + ["se_conv_last"]
    expected = {}
    for i, layer in enumerate(layers):
        expected[f"{layer}/weights"] = (1, 3, 1 if i == 0 else 64, 64)
        expected[f"{layer}/w0"] = ()
        expected[f"{layer}/w1"] = ()
        expected[f"{layer}/BatchNorm/beta"] = (64,)
    expected["se_fc_last/weights"] = (1, 1, 64, 1)
    expected["se_fc_last/biases"] = (1,)
    assert set(bundle.names()) == set(expected) and len(expected) == 58
    variables = bundle.read()
    for name, shape in expected.items():
        entry = bundle.entries[name]
        assert entry.dtype_name == "float32" and entry.shape == shape and not entry.sliced, name
        value = variables[name]
        assert value.dtype == np.float32 and value.shape == shape and np.isfinite(value).all(), name
    # trained values, not an initialisation: non-trivial weights and adaptive-normalisation scalars
    assert all(np.abs(variables[f"{layer}/weights"]).max() > 1e-3 for layer in layers)
    assert len({float(variables[f"{layer}/w1"]) for layer in layers}) == len(layers)


def test_lossnet_bundle_has_the_56_loss_conv_tensors():
    bundle = TensorBundle(LOSSNET)
    assert kind_of(bundle) == "loss_network"
    loss_conv = [n for n in bundle.names() if n.startswith("loss_conv_")]
    assert len(loss_conv) == 56
    variables = bundle.read(loss_conv)
    channels_in = 1
    for i in range(14):
        width = 32 * 2 ** (i // 5)
        scope = f"loss_conv_{i}"
        assert variables[f"{scope}/weights"].shape == (1, 3, channels_in, width)
        for stat in ("beta", "moving_mean", "moving_variance"):
            assert variables[f"{scope}/BatchNorm/{stat}"].shape == (width,)
        assert (variables[f"{scope}/BatchNorm/moving_variance"] > 0).all()
        channels_in = width
    for name, value in variables.items():
        assert value.dtype == np.float32 and np.isfinite(value).all(), name
    # the later project's variables are there too (ignored by the conversion)
    assert {"dense/kernel", "beta1_power", "weights_0/Adam"} <= set(bundle.names())


@pytest.mark.parametrize("folder,files", [(SENET, SENET_FILES), (LOSSNET, LOSSNET_FILES)])
def test_entries_tile_the_data_shard_and_match_an_independent_crc(folder, files):
    """Offsets/sizes decoded from the index tile the data file exactly, and every tensor's stored
    (masked) crc32c matches a pure-Python crc32c of its bytes."""
    bundle = TensorBundle(folder / files[0])
    data = (folder / files[1]).read_bytes()
    entries = sorted(bundle.entries.values(), key=lambda e: e.offset)
    position = 0
    for entry in entries:
        assert entry.offset == position and entry.shard_id == 0, entry.name
        position += entry.size
        raw = data[entry.offset:entry.offset + entry.size]
        assert mask_crc(crc32c_reference(raw)) == entry.crc32c, entry.name
        assert np.array_equal(bundle[entry.name].reshape(-1), np.frombuffer(raw, "<f4")), entry.name
    assert position == len(data)


# ---- checksums ----------------------------------------------------------------------------------

def test_unmask_crc_against_the_leveldb_formula():
    assert crc32c_reference(b"123456789") == 0xE3069283  # the CRC-32C check value
    from zoo.convert.tf_bundle import crc32c

    assert crc32c(b"123456789") == 0xE3069283
    masked = mask_crc(0xE3069283)
    assert masked != 0xE3069283
    assert unmask_crc(masked) == 0xE3069283
    rng = np.random.default_rng(0)
    for crc in [0, 1, 0xFFFFFFFF, 0x80000000, *rng.integers(0, 2**32, 50).tolist()]:
        assert unmask_crc(mask_crc(int(crc))) == crc


def test_flipped_byte_in_a_tensor_names_the_variable(tmp_path):
    folder = copy_bundle(SENET, SENET_FILES, tmp_path / "bundle")
    original = TensorBundle(SENET)
    victim = original.entries["se_conv_5/weights"]
    flip_byte(folder / SENET_FILES[1], victim.offset + victim.size // 2)
    damaged = TensorBundle(folder)  # the index is intact
    with pytest.raises(BundleError, match=r"se_conv_5/weights: checksum mismatch") as error:
        damaged["se_conv_5/weights"]
    assert SENET_FILES[1] in str(error.value)
    with pytest.raises(BundleError, match="se_conv_5/weights"):
        damaged.read()
    # the other variables are untouched and still read
    assert np.array_equal(damaged["se_conv_4/weights"], original["se_conv_4/weights"])
    assert np.array_equal(damaged["se_conv_6/weights"], original["se_conv_6/weights"])


def test_flipped_byte_in_a_scalar_is_caught(tmp_path):
    """A one-bit change in a 4-byte scalar (w1 of the last layer) is also detected."""
    folder = copy_bundle(SENET, SENET_FILES, tmp_path / "bundle")
    victim = TensorBundle(SENET).entries["se_conv_last/w1"]
    flip_byte(folder / SENET_FILES[1], victim.offset)
    with pytest.raises(BundleError, match=r"se_conv_last/w1: checksum mismatch"):
        TensorBundle(folder)["se_conv_last/w1"]


def test_truncated_data_shard_names_the_variable(tmp_path):
    folder = copy_bundle(SENET, SENET_FILES, tmp_path / "bundle")
    data = folder / SENET_FILES[1]
    data.write_bytes(data.read_bytes()[:-10])
    with pytest.raises(BundleError, match=r"se_fc_last/weights: .*truncated"):
        TensorBundle(folder)["se_fc_last/weights"]


def _index_positions(index: bytes) -> dict[str, int]:
    """A byte inside the first data block, inside the index block, and in a block's stored crc."""
    offset, size = index_block_handle(index)
    return {"data block": 7, "index block": offset + size // 2, "block crc": offset + size + 2}


@pytest.mark.parametrize("where", ["data block", "index block", "block crc"])
@pytest.mark.parametrize("folder,files", [(SENET, SENET_FILES), (LOSSNET, LOSSNET_FILES)])
def test_flipped_byte_in_the_index_fails_the_block_checksum(tmp_path, folder, files, where):
    copy = copy_bundle(folder, files, tmp_path / "bundle")
    index = copy / files[0]
    flip_byte(index, _index_positions(index.read_bytes())[where])
    with pytest.raises(BundleError, match=r"fails its crc32c check: the index file is corrupt") as error:
        TensorBundle(copy)
    assert files[0] in str(error.value)
    with pytest.raises(BundleError, match="crc32c"):
        read_sstable(index)


def test_truncated_or_foreign_index_is_refused_clearly(tmp_path):
    copy = copy_bundle(SENET, SENET_FILES, tmp_path / "bundle")
    index = copy / SENET_FILES[0]
    good = (SENET / SENET_FILES[0]).read_bytes()

    index.write_bytes(good[:20])  # shorter than a footer
    with pytest.raises(BundleError, match=r"too short to be a TensorFlow checkpoint index \(20 bytes\)"):
        TensorBundle(copy)

    index.write_bytes(good[:-1])  # the last byte of the magic number missing
    with pytest.raises(BundleError, match=r"not a TensorFlow checkpoint index \(no SSTable magic number"):
        TensorBundle(copy)

    index.write_bytes(good[:-8] + struct.pack("<Q", 0x0123456789ABCDEF))  # wrong magic
    with pytest.raises(BundleError, match="no SSTable magic number"):
        TensorBundle(copy)

    index.write_bytes(good[:100] + good[-48:])  # the footer survives, the blocks it points at do not
    with pytest.raises(BundleError, match=r"runs past the end of the file \(truncated index\?\)"):
        TensorBundle(copy)

    index.write_bytes(b"RIFF" + bytes(200))  # something else under the name
    with pytest.raises(BundleError, match="not a TensorFlow checkpoint index"):
        TensorBundle(copy)


def test_missing_data_shard_names_the_file(tmp_path):
    copy = copy_bundle(SENET, SENET_FILES[:1], tmp_path / "bundle")
    bundle = TensorBundle(copy)  # the index alone lists the variables
    assert len(bundle.names()) == 58
    assert bundle.data_files() == [copy / SENET_FILES[1]]
    with pytest.raises(BundleError, match=r"data shard .*se_model\.ckpt\.data-00000-of-00001 is missing"):
        bundle["se_conv_0/weights"]


def test_missing_index_and_unknown_variable(tmp_path):
    with pytest.raises(BundleError, match="no checkpoint index"):
        TensorBundle(tmp_path / "nothing.ckpt")
    with pytest.raises(KeyError, match="no variable 'se_conv_99/weights'"):
        TensorBundle(SENET)["se_conv_99/weights"]


# ---- path forms ---------------------------------------------------------------------------------

def test_folder_prefix_index_and_shard_paths_all_name_the_same_bundle():
    prefix = SENET / "se_model.ckpt"
    forms = [SENET, prefix, SENET / SENET_FILES[0], SENET / SENET_FILES[1], str(prefix)]
    for form in forms:
        assert bundle_prefix(form) == prefix, form
    reference = TensorBundle(prefix).read()
    for form in forms:
        bundle = TensorBundle(form)
        assert bundle.prefix == prefix and bundle.index_path == SENET / SENET_FILES[0]
        assert bundle.names() == sorted(reference)
        assert np.array_equal(bundle["se_conv_12/weights"], reference["se_conv_12/weights"])


def test_folder_with_two_bundles_or_none_is_refused(tmp_path):
    both = tmp_path / "both"
    copy_bundle(SENET, SENET_FILES, both)
    copy_bundle(LOSSNET, LOSSNET_FILES, both)
    with pytest.raises(BundleError, match=r"exactly one TensorFlow checkpoint") as error:
        TensorBundle(both)
    assert "my_test_model.index" in str(error.value) and "se_model.ckpt.index" in str(error.value)
    # naming one of them still works
    assert kind_of(TensorBundle(both / "se_model.ckpt")) == "can"
    assert kind_of(TensorBundle(both / "my_test_model.index")) == "loss_network"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleError, match="found none"):
        TensorBundle(empty)
