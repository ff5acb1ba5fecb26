"""Overhead of RadiomicsLab's extraction over calling pyradiomics directly, on the real brain1 case.

Run with ``make bench``. Three comparisons, each pair timed alternately in the same run (median of N):
  1. command line: ``radiomicslab extract IMAGE MASK -o f.csv`` vs ``pyradiomics IMAGE MASK -o f.csv -f csv``
  2. in process: ``RadiomicsLabLib.extraction.extract`` (reads files, checks inputs, provenance) vs
     ``RadiomicsFeatureExtractor().execute(image, mask)``
  3. in process through the MRML scene: ``ExtractionLogic`` (load volume + segmentation, extract to a table)
Target (issue #3): ``radiomicslab extract`` at most 10 % slower than pyradiomics.
"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPEATS = 7


def median_time(function, repeats=REPEATS):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def alternate(ours, peer, repeats=REPEATS):
    """Median seconds of ``ours`` and ``peer``, run alternately so drift hits both alike."""
    ours_times, peer_times = [], []
    ours(), peer()  # warm caches
    for _ in range(repeats):
        for function, times in ((ours, ours_times), (peer, peer_times)):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
    return statistics.median(ours_times), statistics.median(peer_times)


def report(title, ours, peer):
    ratio = ours / peer
    print(f"{title:<58} radiomicslab {ours:7.3f} s | pyradiomics {peer:7.3f} s | ratio {ratio:5.3f} "
          f"({(ratio - 1) * 100:+.1f} %)")
    return ratio


def main():
    import logging

    import radiomics
    from radiomics import featureextractor

    from RadiomicsLabLib.data import sample_case
    from RadiomicsLabLib.extraction import extract
    from RadiomicsLabLib.imageio import read_image
    from RadiomicsLabLib.mrml import ExtractionLogic
    from RadiomicsLabLib.mrml.app import new_headless_app

    radiomics.setVerbosity(logging.ERROR)
    image, mask = sample_case("brain1")
    bin_dir = Path(sys.executable).parent
    out = Path(tempfile.mkdtemp())
    print(f"brain1 ({image.name}), pyradiomics {radiomics.__version__}, median of {REPEATS} alternating runs\n")

    def cli_ours():
        subprocess.run([bin_dir / "radiomicslab", "extract", image, mask, "-o", out / "ours.csv"], check=True,
                       capture_output=True)

    def cli_peer():
        subprocess.run([bin_dir / "pyradiomics", image, mask, "-o", out / "peer.csv", "-f", "csv"], check=True,
                       capture_output=True)

    ratio = report("1. command line (process start, imports, read, extract, CSV)", *alternate(cli_ours, cli_peer))

    def core_ours():
        extract(read_image(image), read_image(mask, "mask"), {"Label_1": 1})

    def core_peer():
        featureextractor.RadiomicsFeatureExtractor().execute(str(image), str(mask), label=1)

    report("2. in process (read, check, extract, provenance)", *alternate(core_ours, core_peer))

    logic = ExtractionLogic(new_headless_app().scene)

    def scene_ours():
        volume = logic.load_volume(image)
        logic.extract(volume, logic.load_segmentation(mask, volume))

    report("3. in process through the MRML scene (load nodes, extract, table)", *alternate(scene_ours, core_peer))
    print(f"\nTarget: command line at most 10 % slower -> {'met' if ratio <= 1.10 else 'NOT met'} (ratio {ratio:.3f})")


if __name__ == "__main__":
    main()
