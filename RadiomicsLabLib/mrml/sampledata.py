"""RadiomicsLab's sample cases in desktop Slicer's Sample Data module.

The cases are pyradiomics' test cases (BSD-3; ``data/`` of github.com/AIM-Harvard/pyradiomics, the
files ``radiomics.getTestCase`` fetches), the same files as ``pyradiomics_cases/`` of the shared
reference data. Slicer downloads them on first use from a commit-pinned URL, checks their SHA-256 and
loads the image as a volume and the label map as a segmentation (one segment per label value).

:func:`register_sample_data` needs desktop Slicer; :func:`sample_data_sources` (the arguments it
passes) and :func:`render_thumbnail` (the Sample Data buttons' pictures) work anywhere.
``python -m RadiomicsLabLib.mrml.sampledata`` re-renders the thumbnails from the reference data.

Getting the files (what the module self-test and the headless scenario tests use, never the reference
data folder): :func:`sample_cases` gives ``{case: (image path, label path)}``.

- In desktop Slicer (:func:`slicer_sample_case`): through the Sample Data module's own download cache.
  ``SampleDataLogic.downloadFileIntoCache(uri, name, checksum)`` (Slicer's
  ``Modules/Scripted/SampleData/SampleData.py``) puts the file in
  ``slicer.mrmlScene.GetCacheManager().GetRemoteCacheDirectory()``, which the application sets to
  ``slicer.app.cachePath``; a file already there is reused when its checksum matches and downloaded
  again when not; a download that fails raises ``ValueError``, one with the wrong checksum is deleted.
  The URLs and checksums are those of the registered source (``sourceForSampleName``).
- Anywhere else (:func:`cached_sample_case`, :func:`sample_file`): the same rule in a cache folder of
  our own (:func:`default_cache_dir`: ``$RADIOMICSLAB_SAMPLE_CACHE``, else
  ``$XDG_CACHE_HOME/RadiomicsLab/SampleData``, else ``~/.cache/RadiomicsLab/SampleData``): a file
  whose SHA-256 matches is used, anything else is downloaded again from its URL, verified, and
  renamed into place (a reader never sees a partial file; a wrong download is never kept).

Offline with no good copy in the cache, both raise :class:`~RadiomicsLabLib.errors.RadiomicsLabError`
saying which URL to fetch and where to save the file.
"""

import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..data import data_dir
from ..errors import RadiomicsLabError
from ..imageio import read_image
from ..provenance import file_sha256

CATEGORY = "RadiomicsLab"
#: pyradiomics commit the URLs are pinned to; its data/*.nrrd are unchanged since abcbc57 (2016-03-21).
PYRADIOMICS_COMMIT = "8ed579383b44806651c463d5e691f3b2b57522ab"
PYRADIOMICS_DATA_URL = f"https://raw.githubusercontent.com/AIM-Harvard/pyradiomics/{PYRADIOMICS_COMMIT}/data/"
#: Slicer reader of each file of a case: the image, then the label map as a segmentation.
LOAD_FILE_TYPES = ("VolumeFile", "SegmentationFile")
THUMBNAIL_SIZE = 128
#: Where the thumbnails are: the built extension installs the module's Resources/ beside RadiomicsLabLib/
#: (Slicer's scripted-modules folder); a source checkout has them in RadiomicsLab/Resources/.
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]
THUMBNAIL_FOLDERS = (_PACKAGE_PARENT / "Resources" / "Icons" / "SampleData",
                     _PACKAGE_PARENT / "RadiomicsLab" / "Resources" / "Icons" / "SampleData")
SOURCE_THUMBNAIL_FOLDER = THUMBNAIL_FOLDERS[1]


@dataclass(frozen=True)
class SampleCase:
    """One pyradiomics test case: ``<name>_image.nrrd`` and ``<name>_label.nrrd``, with their SHA-256."""

    name: str
    sample_name: str  # unique among all Sample Data sources: SampleData.downloadSample(sample_name)
    image_sha256: str
    label_sha256: str

    @property
    def file_names(self) -> tuple[str, str]:
        return f"{self.name}_image.nrrd", f"{self.name}_label.nrrd"

    @property
    def uris(self) -> tuple[str, str]:
        return tuple(PYRADIOMICS_DATA_URL + name for name in self.file_names)

    @property
    def node_names(self) -> tuple[str, str]:
        return self.name, f"{self.name} segmentation"

    @property
    def checksums(self) -> tuple[str, str]:
        """Slicer's ``<algo>:<digest>`` form."""
        return f"SHA256:{self.image_sha256}", f"SHA256:{self.label_sha256}"


SAMPLE_CASES = (
    SampleCase("brain1", "PyradiomicsBrain1",
               "fffdb111ee8b428ede7256707393c927a7d5be912f0604cf3c6f1bd5fc9644cf",
               "ae6d8e6b84f7e99d68c210ee2fa6aaaefa0b2df0a84f55efca4feebe2b216059"),
    SampleCase("brain2", "PyradiomicsBrain2",
               "d35a1c6a3e1eb72bae97c5515472fbe057fb38ee8e1e199215d1c3c6f292332e",
               "15189c024936ecc337649b9a10c475117c7c40df0d53c22163f9a2023ed741a5"),
    SampleCase("breast1", "PyradiomicsBreast1",
               "0e8b668f3ce9b9aacff20dc3c216866f43069ff96b269fb45b76f5e205a431e2",
               "07085bb0e36a956de5bd1c1c1b5f8bdf2ce80952125b13cbd352412c108c8950"),
)


#: Folder of the headless sample cache (see :func:`default_cache_dir`).
CACHE_ENVIRONMENT = "RADIOMICSLAB_SAMPLE_CACHE"
#: Seconds a download may wait for the server before it is given up.
DOWNLOAD_TIMEOUT_S = 60


def case_named(name: str) -> SampleCase:
    """The :class:`SampleCase` called ``name`` (``brain1``, ``brain2``, ``breast1``)."""
    for case in SAMPLE_CASES:
        if name in (case.name, case.sample_name):
            return case
    raise RadiomicsLabError(f"Unknown sample case '{name}'; choose one of {', '.join(c.name for c in SAMPLE_CASES)}.")


def _sample_file_entry(file_name: str) -> tuple[str, str]:
    """(URL, SHA-256) of one file of the sample cases, by file name (``brain1_image.nrrd``)."""
    for case in SAMPLE_CASES:
        for name, uri, digest in zip(case.file_names, case.uris, (case.image_sha256, case.label_sha256)):
            if name == file_name:
                return uri, digest
    known = ", ".join(name for case in SAMPLE_CASES for name in case.file_names)
    raise RadiomicsLabError(f"'{file_name}' is not a file of RadiomicsLab's sample cases; choose one of {known}.")


def default_cache_dir() -> Path:
    """The headless sample cache: ``$RADIOMICSLAB_SAMPLE_CACHE``, else ``$XDG_CACHE_HOME/RadiomicsLab/SampleData``,
    else ``~/.cache/RadiomicsLab/SampleData``. (Desktop Slicer uses its own cache, see :func:`slicer_sample_case`.)"""
    if os.environ.get(CACHE_ENVIRONMENT):
        return Path(os.environ[CACHE_ENVIRONMENT])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "RadiomicsLab" / "SampleData"


def _download(url: str, destination: Path) -> None:
    """Write what ``url`` serves into ``destination`` (raises ``OSError``, e.g. ``urllib.error.URLError``, on failure)."""
    import http.client
    import shutil
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(destination, "wb") as handle:
            shutil.copyfileobj(response, handle, 1 << 20)
    except http.client.HTTPException as error:  # e.g. IncompleteRead: not an OSError
        raise OSError(f"{type(error).__name__}: {error}") from None


def _fetch_by_hand(url: str, path: Path, digest: str) -> str:
    return (f"Download {url} by hand and save it as {path} (its SHA-256 must be {digest}), or set "
            f"{CACHE_ENVIRONMENT} to a folder that holds it.")


def sample_file(file_name: str, cache_dir=None) -> Path:
    """Path of one sample-case file (``brain1_image.nrrd``) in the headless cache, fetched when needed.

    A cached file whose SHA-256 is the registered one is used as it is; a missing file, or one with another
    checksum (refused, logged), is downloaded from its registered URL, checked, and renamed into place.
    Raises :class:`RadiomicsLabError` saying which URL to fetch and where to save it when the download fails or
    brings other content (nothing is then left in the cache).
    """
    from ..fileio import atomic_output

    url, digest = _sample_file_entry(file_name)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / file_name
    refused = ""
    if path.is_file():
        found = file_sha256(path)
        if found == digest:
            return path
        refused = f"The cached {path} has SHA-256 {found}, not {digest}, so it was refused. "
        logging.warning(f"{refused}Downloading {url} again.")
    try:
        with atomic_output(path) as partial:
            try:
                _download(url, partial)
            except OSError as error:  # urllib.error.URLError and socket timeouts are OSErrors
                raise RadiomicsLabError(f"{refused}Could not download {url} ({error}). "
                                        f"{_fetch_by_hand(url, path, digest)}") from None
            found = file_sha256(partial)
            if found != digest:
                raise RadiomicsLabError(f"{refused}{url} served a file with SHA-256 {found}, not {digest}; it was not "
                                        f"kept. {_fetch_by_hand(url, path, digest)}")
    except RadiomicsLabError:
        if refused:
            path.unlink(missing_ok=True)  # as Slicer's Sample Data does: a file with the wrong checksum is never reused
        raise
    return path


def fill_cache(folder, cache_dir=None) -> list[Path]:
    """Copy into the headless cache the sample-case files of ``folder`` (e.g. a copy fetched by hand, or the
    reference data's ``pyradiomics_cases/``) whose SHA-256 is the registered one; returns the cached paths.
    Files with another checksum are skipped (logged); a good cached copy is left as it is."""
    import shutil

    from ..fileio import atomic_output

    folder = Path(folder)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = []
    for case in SAMPLE_CASES:
        for name, digest in zip(case.file_names, (case.image_sha256, case.label_sha256)):
            source, target = folder / name, cache / name
            if not source.is_file():
                continue
            if file_sha256(source) != digest:
                logging.warning(f"{source} is not the registered {name} (SHA-256 {digest}); not cached.")
                continue
            if not (target.is_file() and file_sha256(target) == digest):
                with atomic_output(target) as partial:
                    shutil.copyfile(source, partial)
            cached.append(target)
    return cached


def cached_sample_case(case: str, cache_dir=None) -> tuple[Path, Path]:
    """(image, label map) of a sample case from the headless cache (:func:`sample_file`)."""
    image, label = (sample_file(name, cache_dir) for name in case_named(case).file_names)
    return image, label


def slicer_sample_case(case: str) -> tuple[Path, Path]:
    """(image, label map) of a sample case through desktop Slicer's Sample Data module and its download cache.

    The case's registered source (:func:`register_sample_data`, ``SampleDataLogic.sourceForSampleName``) gives the
    URLs and checksums; ``SampleDataLogic.downloadFileIntoCache`` reuses a cached file whose checksum matches and
    downloads it otherwise. Needs desktop Slicer.
    """
    import slicer
    from SampleData import SampleDataLogic

    wanted = case_named(case)
    logic = SampleDataLogic()
    source = logic.sourceForSampleName(wanted.sample_name)
    if source is None:
        register_sample_data()
        source = logic.sourceForSampleName(wanted.sample_name)
    if source is None:
        raise RadiomicsLabError(f"The sample case '{wanted.name}' ({wanted.sample_name}) is not registered with Sample "
                                "Data and could not be registered (see the log).")
    folder = Path(slicer.mrmlScene.GetCacheManager().GetRemoteCacheDirectory())
    paths = []
    for uri, name, checksum, digest in zip(source.uris, source.fileNames, source.checksums,
                                           (wanted.image_sha256, wanted.label_sha256), strict=True):
        if checksum != f"SHA256:{digest}":
            raise RadiomicsLabError(f"Sample Data's source {wanted.sample_name} has checksum {checksum} for {name}; "
                                    f"RadiomicsLab registers SHA256:{digest}. Restart Slicer to register it again.")
        try:
            path = Path(logic.downloadFileIntoCache(uri, name, checksum))
        except ValueError as error:  # Slicer's SampleDataLogic.downloadFile: the download failed
            raise RadiomicsLabError(f"Sample Data could not download {uri} ({error}). Download it by hand and save it "
                                    f"as {folder / name} (its SHA-256 must be {digest}), then run again.") from None
        if not path.is_file() or file_sha256(path) != digest:  # Slicer deletes a download with the wrong checksum
            raise RadiomicsLabError(f"Sample Data did not get {name} with SHA-256 {digest} from {uri} into {folder}. "
                                    f"Download it by hand and save it as {folder / name}, then run again.")
        paths.append(path)
    return paths[0], paths[1]


def sample_cases(names=None, cache_dir=None) -> dict:
    """``{case: (image path, label path)}`` of the sample cases ``names`` (default all).

    In desktop Slicer (its ``SampleData`` module importable) and without ``cache_dir``: Slicer's Sample Data
    cache (:func:`slicer_sample_case`); otherwise the headless cache (:func:`cached_sample_case`).
    """
    names = [case.name for case in SAMPLE_CASES] if names is None else [names] if isinstance(names, str) else list(names)
    in_slicer = cache_dir is None and _in_desktop_slicer()
    get = slicer_sample_case if in_slicer else (lambda case: cached_sample_case(case, cache_dir))
    return {case_named(name).name: get(name) for name in names}


def _in_desktop_slicer() -> bool:
    import importlib.util
    import sys

    if sys.modules.get("SampleData") is not None:
        return True
    try:
        return importlib.util.find_spec("SampleData") is not None
    except (ImportError, ValueError):
        return False


def thumbnail_folder() -> Path | None:
    """The first of :data:`THUMBNAIL_FOLDERS` that exists (None: the buttons get no picture)."""
    return next((folder for folder in THUMBNAIL_FOLDERS if folder.is_dir()), None)


def sample_data_sources(thumbnails=None) -> list[dict]:
    """Keyword arguments of ``SampleData.SampleDataLogic.registerCustomSampleDataSource``, one dict per case.

    ``thumbnails``: folder of ``<case>.png`` (default :func:`thumbnail_folder`).
    """
    folder = Path(thumbnails) if thumbnails is not None else thumbnail_folder()
    return [{
        "category": CATEGORY,
        "sampleName": case.sample_name,
        "uris": list(case.uris),
        "fileNames": list(case.file_names),
        "nodeNames": list(case.node_names),
        "checksums": list(case.checksums),
        "loadFileTypes": list(LOAD_FILE_TYPES),
        "thumbnailFileName": str(folder / f"{case.name}.png") if folder is not None else None,
    } for case in SAMPLE_CASES]


def register_sample_data(thumbnails=None) -> bool:
    """Add the cases to desktop Slicer's Sample Data module (category "RadiomicsLab"); False, logged, when it cannot.

    Registering twice is harmless (Slicer skips a source already registered).
    """
    try:
        from SampleData import SampleDataLogic
    except ImportError as error:
        logging.warning(f"RadiomicsLab's sample cases are offered only in desktop Slicer's Sample Data module, "
                        f"which is not available here ({error}).")
        return False
    try:
        register = SampleDataLogic.registerCustomSampleDataSource
        # Slicer >= 5.8 names the argument loadFileTypes; 5.6 called it loadFileType (both take a list).
        types_argument = "loadFileTypes" if "loadFileTypes" in inspect.signature(register).parameters else "loadFileType"
        for source in sample_data_sources(thumbnails):
            source[types_argument] = source.pop("loadFileTypes")
            register(**source)
    except Exception:  # a startup hook: never break the RadiomicsLab module
        logging.exception("RadiomicsLab's sample cases could not be registered with Sample Data.")
        return False
    return True


def render_thumbnail(image_path, label_path, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """``size`` x ``size`` RGB (uint8) picture of an image and its label map, as Slicer's axial view shows it.

    The axial plane through the middle of the label's bounding box, resampled (linear; label: nearest)
    onto a square LPS-aligned grid covering the image's whole field of view (patient right on the left,
    anterior at the top, outside the image black), grey levels stretched between the image's 1st and
    99th percentiles in that plane, the label tinted and outlined.
    """
    from scipy.ndimage import binary_erosion

    image = read_image(image_path)
    label = read_image(label_path, "label map")
    voxels = np.argwhere(sitk.GetArrayViewFromImage(label) > 0)[:, ::-1]  # (i, j, k)
    if not len(voxels):
        raise RadiomicsLabError(f"The label map '{label_path}' is empty; give one with a labelled region.")
    centre = label.TransformContinuousIndexToPhysicalPoint(((voxels.min(0) + voxels.max(0)) / 2).tolist())
    corners = np.array([image.TransformContinuousIndexToPhysicalPoint([-0.5 + n * bit for n, bit in zip(image.GetSize(), bits)])
                        for bits in np.ndindex(2, 2, 2)])
    low, high = corners.min(0)[:2], corners.max(0)[:2]
    side = float((high - low).max())
    spacing = side / size
    origin = [*((low + high) / 2 - side / 2 + spacing / 2), centre[2]]
    grid = dict(size=[size, size, 1], outputOrigin=origin, outputSpacing=[spacing, spacing, 1.0],
                outputDirection=[1, 0, 0, 0, 1, 0, 0, 0, 1], defaultPixelValue=0)

    def plane(volume, interpolator, pixel_type):
        resampled = sitk.Resample(volume, transform=sitk.Transform(), interpolator=interpolator,
                                  outputPixelType=pixel_type, **grid)
        return sitk.GetArrayFromImage(resampled)[0]  # rows: +y (anterior to posterior), columns: +x (right to left)

    grey = plane(image, sitk.sitkLinear, sitk.sitkFloat64)
    inside = plane(sitk.Cast(image == image, sitk.sitkUInt8), sitk.sitkNearestNeighbor, sitk.sitkUInt8) > 0
    mask = plane(label, sitk.sitkNearestNeighbor, sitk.sitkUInt8) > 0
    lowest, highest = np.percentile(grey[inside], [1, 99])
    grey = np.where(inside, np.clip((grey - lowest) / max(highest - lowest, 1e-12), 0, 1) * 255, 0)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    colour = np.array([255.0, 200.0, 0.0])
    rgb[mask] = 0.65 * rgb[mask] + 0.35 * colour
    rgb[mask & ~binary_erosion(mask)] = colour
    return np.rint(rgb).astype(np.uint8)


def write_thumbnails(folder=SOURCE_THUMBNAIL_FOLDER, data=None) -> list[Path]:
    """Render every case's thumbnail from ``<data>/pyradiomics_cases`` into ``folder/<case>.png``."""
    from PIL import Image

    cases = Path(data if data is not None else data_dir()) / "pyradiomics_cases"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for case in SAMPLE_CASES:
        image, label = (cases / name for name in case.file_names)
        Image.fromarray(render_thumbnail(image, label), "RGB").save(folder / f"{case.name}.png", optimize=True)
        written.append(folder / f"{case.name}.png")
    return written


if __name__ == "__main__":
    for path in write_thumbnails():
        print(path)
