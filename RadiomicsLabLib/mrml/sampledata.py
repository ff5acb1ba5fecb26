"""RadiomicsLab's sample cases in desktop Slicer's Sample Data module.

The cases are pyradiomics' test cases (BSD-3; ``data/`` of github.com/AIM-Harvard/pyradiomics, the
files ``radiomics.getTestCase`` fetches), the same files as ``pyradiomics_cases/`` of the shared
reference data. Slicer downloads them on first use from a commit-pinned URL, checks their SHA-256 and
loads the image as a volume and the label map as a segmentation (one segment per label value).

:func:`register_sample_data` needs desktop Slicer; :func:`sample_data_sources` (the arguments it
passes) and :func:`render_thumbnail` (the Sample Data buttons' pictures) work anywhere.
``python -m RadiomicsLabLib.mrml.sampledata`` re-renders the thumbnails from the reference data.
"""

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..data import data_dir
from ..errors import RadiomicsLabError
from ..imageio import read_image

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
