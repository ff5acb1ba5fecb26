"""What verifying an image costs: RadiomicsLab's read_image (checks the file against its header, the gzip
stream read through to its checksum) against a plain SimpleITK ReadImage, on the real sarcoma images.

Run: .venv/bin/python Testing/benchmarks/bench_read_verify.py [REPEATS]
Prints the median of REPEATS reads (default 9) per image and the ratio to SimpleITK's read.
"""

import statistics
import sys
import time

import SimpleITK as sitk

from RadiomicsLabLib.data import data_dir
from RadiomicsLabLib.imageio import read_image, verify_file


def median_ms(work, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def main(repeats=9):
    files = sorted((data_dir() / "sts").glob("STS_*/*_image.nii.gz"))
    if not files:
        sys.exit(f"No sarcoma images in {data_dir() / 'sts'}; set RADIOMICSLAB_DATA.")
    print(f"{'image':<28} {'MB':>6} {'SimpleITK':>10} {'verify':>8} {'read_image':>11} {'extra':>8} {'ratio':>6}")
    totals = [0.0, 0.0]
    for path in files:
        plain = median_ms(lambda: sitk.ReadImage(str(path)), repeats)
        check = median_ms(lambda: verify_file(path), repeats)
        ours = median_ms(lambda: read_image(path), repeats)
        totals[0] += plain
        totals[1] += ours
        name = f"{path.parent.name}/{path.name}"
        print(f"{name:<28} {path.stat().st_size / 1e6:6.2f} {plain:8.1f}ms {check:6.1f}ms {ours:9.1f}ms "
              f"{ours - plain:+6.1f}ms {ours / plain:6.2f}")
    print(f"{'all ' + str(len(files)):<28} {'':>6} {totals[0]:8.1f}ms {'':>8} {totals[1]:9.1f}ms "
          f"{totals[1] - totals[0]:+6.1f}ms {totals[1] / totals[0]:6.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
