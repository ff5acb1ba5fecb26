"""Whole-grid NRRD files written from the values alone (RadiomicsLabLib.nrrd.SparseGridWriter): the same header as
SimpleITK writes and, decompressed, the same bytes as the whole-grid image SimpleITK writes (Python's gzip checks the
CRC-32 and length of the trailer), read back by SimpleITK with the same voxels and geometry. Small thresholds make
small grids take every path: fill runs copied in, blocks of doubled fill units, rows cut into several blocks.
"""

import gzip
import zlib

import numpy as np
import pytest
import SimpleITK as sitk

from RadiomicsLabLib import nrrd
from RadiomicsLabLib.featuremaps import feature_maps, write_feature_maps


def reference_image(shape, dimension=3):
    """A one-voxel image with a rotated direction, anisotropic spacing and an odd origin (only its geometry counts)."""
    image = sitk.Image([1] * dimension, sitk.sitkUInt8)
    image.SetSpacing([0.7, 0.9, 2.5][:dimension])
    image.SetOrigin([-1.5, 2.25, 3.1][:dimension])
    image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1) if dimension == 3 else (0, 1, -1, 0))
    return image


def whole_grid_image(reference, shape, flat, values, dtype, fill_value):
    full = np.full(int(np.prod(shape)), fill_value, dtype=dtype)
    full[flat] = values
    image = sitk.GetImageFromArray(full.reshape(shape if reference.GetDimension() == 3 else shape[1:]))
    image.SetOrigin(reference.GetOrigin())
    image.SetSpacing(reference.GetSpacing())
    image.SetDirection(reference.GetDirection())
    return image


def split(path):
    raw = path.read_bytes()
    end = raw.index(b"\n\n") + 2
    return raw[:end], raw[end:]


def assert_same_file(ours, theirs):
    """Same header; the same data once decompressed (gzip checks our CRC-32 and length); SimpleITK reads both alike."""
    our_header, our_data = split(ours)
    their_header, their_data = split(theirs)
    assert our_header == their_header
    assert gzip.decompress(our_data) == gzip.decompress(their_data)
    a, b = sitk.ReadImage(str(ours)), sitk.ReadImage(str(theirs))
    assert sitk.GetArrayViewFromImage(a).tobytes() == sitk.GetArrayViewFromImage(b).tobytes()
    assert (a.GetOrigin(), a.GetSpacing(), a.GetDirection()) == (b.GetOrigin(), b.GetSpacing(), b.GetDirection())


CASES = [  # (shape (z, y, x), number of voxels with values or "all", dtype, fill value, 2D)
    ((7, 9, 11), 40, np.float64, np.nan, False),
    ((30, 20, 17), 3, np.float64, np.nan, False),       # long fill runs
    ((30, 20, 17), 0, np.float64, np.nan, False),       # no value: fill only
    ((6, 5, 4), "all", np.float64, np.nan, False),      # no fill
    ((1, 40, 13), 6, np.float64, np.nan, True),         # 2D
    ((12, 25, 9), 30, np.float32, 0.0, False),          # float32, fill 0
    ((12, 25, 9), 30, np.int16, -1, False),
]


@pytest.mark.parametrize("small", [True, False], ids=["small-thresholds", "default-thresholds"])
@pytest.mark.parametrize("shape, count, dtype, fill_value, flat_2d", CASES)
def test_the_file_is_the_one_simpleitk_writes_of_the_whole_grid(tmp_path, monkeypatch, small, shape, count, dtype,
                                                                 fill_value, flat_2d):
    if small:
        monkeypatch.setattr(nrrd, "COPY_FILL_BYTES", 100)
        monkeypatch.setattr(nrrd, "BLOCK_BYTES", 300)
    rng = np.random.default_rng(sum(shape))
    size = int(np.prod(shape))
    flat = np.arange(size) if count == "all" else np.sort(rng.choice(size, count, replace=False))
    values = (rng.normal(size=flat.size) * 100).astype(dtype)
    reference = reference_image(shape, 2 if flat_2d else 3)
    writer = nrrd.SparseGridWriter(reference, shape, flat, dtype, fill_value)
    writer.write(tmp_path / "ours.nrrd", values)
    sitk.WriteImage(whole_grid_image(reference, shape, flat, values, dtype, fill_value), str(tmp_path / "itk.nrrd"),
                    True)
    assert_same_file(tmp_path / "ours.nrrd", tmp_path / "itk.nrrd")
    if small and count in (3, 0):
        kinds = [piece[0] for piece in writer.pieces]
        assert "fill" in kinds and len(writer.units) > 4    # runs copied in, units doubled past BLOCK_BYTES


def test_voxels_in_any_order_and_several_files_from_one_writer(tmp_path):
    shape = (8, 10, 12)
    rng = np.random.default_rng(3)
    flat = rng.choice(int(np.prod(shape)), 50, replace=False)       # not sorted
    reference = reference_image(shape)
    writer = nrrd.SparseGridWriter(reference, shape, flat)
    for k in range(2):
        values = rng.normal(size=flat.size)
        writer.write(tmp_path / f"ours{k}.nrrd", values)
        sitk.WriteImage(whole_grid_image(reference, shape, flat, values, np.float64, np.nan),
                        str(tmp_path / f"itk{k}.nrrd"), True)
        assert_same_file(tmp_path / f"ours{k}.nrrd", tmp_path / f"itk{k}.nrrd")


def test_crc_of_joined_parts_is_zlibs():
    """crc(A + B) from crc(A), crc(B) and |B| (zlib's crc32_combine), for lengths from 0 to several MB."""
    rng = np.random.default_rng(5)
    for length_a, length_b in [(0, 0), (1, 0), (0, 7), (13, 1), (1000, 4096), (3, 5_000_001)]:
        a, b = rng.bytes(length_a), rng.bytes(length_b)
        part = nrrd._Part(b"", zlib.crc32(b), len(b), nrrd._power_of_x(8 * len(b)))
        assert part.after(zlib.crc32(a)) == zlib.crc32(a + b)


def test_written_maps_are_the_whole_grid_maps(brain1, tmp_path):
    """The brain1 case's whole MR (its label in a 256 x 256 x 25 grid: long fill runs copied in with the default
    thresholds) through write_feature_maps: each file is the one SimpleITK writes of ``maps[name]``."""
    image, mask = (sitk.ReadImage(str(path)) for path in brain1)
    maps = feature_maps(image, mask, "firstorder_Mean,glcm_Contrast", radius=1, definition="pyradiomics")
    writer = nrrd.SparseGridWriter(maps.reference, maps.shape, maps.flat, maps.dtype, maps.fill_value)
    assert "fill" in [piece[0] for piece in writer.pieces]
    write_feature_maps(maps, tmp_path / "maps")
    for name in maps:
        sitk.WriteImage(maps[name], str(tmp_path / f"{name}.itk.nrrd"), True)
        assert_same_file(tmp_path / "maps" / f"{name}.nrrd", tmp_path / f"{name}.itk.nrrd")
