"""Benchmark: writing the feature maps' files of a whole-size CT, RadiomicsLab against SimpleITK, in the same run.

The STS_001 CT crop and its GTV pasted into a whole CT's grid (512 x 512 x 299, ``bench_desktop_stalls.whole_ct``);
glcm + firstorder maps (ibsi definition, radius 1: 91 maps of the GTV's 117k voxels) computed once, then their
``<feature>.nrrd`` files (each the whole grid, NaN outside the GTV, gzip) written

1. by ``write_feature_maps`` (what ``radiomicslab maps``, ``FeatureMapLogic.save_results`` and the web panel's zip
   write: :class:`RadiomicsLabLib.nrrd.SparseGridWriter`, from the GTV's values, the maps on the process's threads);
2. the peer: each map as a whole-grid SimpleITK image (``maps[name]``) written by ``sitk.WriteImage(image, path,
   True)``, what ``write_feature_maps`` did before and what a SimpleITK user writes;
3. for reference, each map cropped to the GTV's box (the extent of pyradiomics' voxel-based maps) written by
   SimpleITK: a smaller grid, not the same file.

The files of 1 and 2 are compared (decompressed voxels and geometry). Printed: seconds and megabytes of each, and
the ratio 2 / 1. Then the whole ``radiomicslab maps`` command on the two files in a new process (reading, numba's
start, the computation and the files), for reference.

    .venv/bin/python Testing/benchmarks/bench_map_files.py [--repeats 3]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

FEATURES = "glcm,firstorder"


def folder_megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir()) / 1e6


def write_with_simpleitk(maps, folder: Path, box: bool = False) -> None:
    """Each map written by SimpleITK: the whole-grid image, or with ``box`` the map cropped to the mask's box."""
    folder.mkdir()
    for name in maps:
        if box:
            size = [s.stop - s.start for s in maps.box]
            image = sitk.GetImageFromArray(maps.fill(name, np.empty(int(np.prod(size)), dtype=maps.dtype),
                                                     box=True).reshape(size))
            image.SetSpacing(maps.reference.GetSpacing())
            image.SetDirection(maps.reference.GetDirection())
            image.SetOrigin(maps.reference.TransformIndexToPhysicalPoint([s.start for s in maps.box[::-1]]))
        else:
            image = maps[name]
        sitk.WriteImage(image, str(folder / f"{name}.nrrd"), True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed writes of each kind (median)")
    args = parser.parse_args()

    from bench_desktop_stalls import whole_ct

    from RadiomicsLabLib.featuremaps import feature_maps, write_feature_maps
    from RadiomicsLabLib.limits import compute_threads

    with tempfile.TemporaryDirectory(prefix="bench-map-files-") as tmp:
        tmp = Path(tmp)
        image_path, mask_path, _ = whole_ct(tmp)
        image, mask = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
        maps = feature_maps(image, mask, FEATURES, radius=1, definition="ibsi")
        print(f"{len(maps)} maps '{FEATURES}' of {maps.values.shape[0]} voxels on a {image.GetSize()} grid "
              f"({np.prod(maps.shape) * maps.dtype.itemsize / 1e6:.0f} MB of {maps.dtype} per map); "
              f"{compute_threads()} thread(s)", flush=True)

        def timed(kind: str, write) -> tuple[float, float, Path]:
            seconds = []
            for repeat in range(args.repeats):
                folder = tmp / f"{kind}-{repeat}"
                start = time.perf_counter()
                write(folder)
                seconds.append(time.perf_counter() - start)
            return statistics.median(seconds), folder_megabytes(folder), folder

        ours = timed("ours", lambda folder: write_feature_maps(maps, folder))
        peer = timed("simpleitk", lambda folder: write_with_simpleitk(maps, folder))
        boxed = timed("box", lambda folder: write_with_simpleitk(maps, folder, box=True))
        for name in maps:
            a, b = sitk.ReadImage(str(ours[2] / f"{name}.nrrd")), sitk.ReadImage(str(peer[2] / f"{name}.nrrd"))
            if sitk.GetArrayViewFromImage(a).tobytes() != sitk.GetArrayViewFromImage(b).tobytes() or \
                    (a.GetOrigin(), a.GetSpacing(), a.GetDirection()) != (b.GetOrigin(), b.GetSpacing(),
                                                                          b.GetDirection()):
                raise SystemExit(f"{name}: the two files differ")
        print(f"\n{'files of ' + str(len(maps)) + ' maps':<52} {'seconds':>8} {'MB':>8}")
        print(f"{'RadiomicsLab write_feature_maps (whole grid)':<52} {ours[0]:>8.2f} {ours[1]:>8.1f}")
        print(f"{'SimpleITK, each whole-grid map image (peer)':<52} {peer[0]:>8.2f} {peer[1]:>8.1f}")
        print(f"{'SimpleITK, each map cropped to the box (reference)':<52} {boxed[0]:>8.2f} {boxed[1]:>8.1f}")
        print(f"ratio SimpleITK whole grid / RadiomicsLab: {peer[0] / ours[0]:.1f}x (the same voxels in every file)")

        command = [str(Path(sys.executable).with_name("radiomicslab")), "maps", str(image_path), str(mask_path),
                   "--features", FEATURES, "-o", str(tmp / "cli")]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        print(f"`radiomicslab maps` on the two files, new process (reading, numba's start, computing, writing): "
              f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
