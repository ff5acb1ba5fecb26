"""Overhead of RadiomicsLab's extraction over calling pyradiomics directly, on the real brain1 case.

Run with ``make bench``. Three comparisons, each pair timed alternately in the same run (median of N):
  1. command line: ``radiomicslab extract IMAGE MASK -o f.csv`` vs ``pyradiomics IMAGE MASK -o f.csv -f csv``,
     and (1b) the same with LoG and wavelet image types from one parameter file
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

REPEATS = 15


def alternate(ours, peer, repeats=REPEATS):
    """Timings of ``ours`` and ``peer``, run alternately so drift and noise hit both alike."""
    ours_times, peer_times = [], []
    ours(), peer()  # warm caches
    for _ in range(repeats):
        for function, times in ((ours, ours_times), (peer, peer_times)):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
    return ours_times, peer_times


def report(title, ours_times, peer_times):
    """Print median and best times; the ratio of medians is the figure of merit."""
    ours, peer = statistics.median(ours_times), statistics.median(peer_times)
    ratio = ours / peer
    print(f"{title}\n    radiomicslab median {ours:6.3f} s (best {min(ours_times):6.3f}) | "
          f"pyradiomics median {peer:6.3f} s (best {min(peer_times):6.3f}) | ratio {ratio:5.3f} ({(ratio - 1) * 100:+.1f} %)")
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
    print(f"brain1 ({image.name}), pyradiomics {radiomics.__version__}, {REPEATS} alternating runs of each\n")

    def cli_ours():
        subprocess.run([bin_dir / "radiomicslab", "extract", image, mask, "-o", out / "ours.csv"], check=True,
                       capture_output=True)

    def cli_peer():
        subprocess.run([bin_dir / "pyradiomics", image, mask, "-o", out / "peer.csv", "-f", "csv"], check=True,
                       capture_output=True)

    ratio = report("1. command line (process start, imports, read, extract, CSV)", *alternate(cli_ours, cli_peer))

    filters = out / "filters.yaml"
    filters.write_text("imageType:\n  Original: {}\n  LoG:\n    sigma: [1.0, 3.0]\n  Wavelet: {}\nsetting:\n  binWidth: 25\n")

    def cli_ours_filters():
        subprocess.run([bin_dir / "radiomicslab", "extract", image, mask, "--params", filters, "-o", out / "ours_f.csv"],
                       check=True, capture_output=True)

    def cli_peer_filters():
        subprocess.run([bin_dir / "pyradiomics", image, mask, "--param", filters, "-o", out / "peer_f.csv", "-f", "csv"],
                       check=True, capture_output=True)

    report("1b. command line, Original + LoG (2 sigmas) + Wavelet", *alternate(cli_ours_filters, cli_peer_filters, 5))

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
