"""Loading studies into the web app's scene: bundled sample cases, the data folder, browser uploads.

Nothing the browser sends is trusted. A file in the data folder is named by its path relative
to the folder and must be one this module listed (no ``..``, no absolute path, no symbolic link
leading outside); an upload is checked for size and type and written under a fresh temporary
folder with its base name only. Every file is read and checked *before* the scene is touched,
so a bad file leaves the study as it was.

Known trame-slicer quirk, handled here: trame-slicer's effect logics add the segment editor's
effect parameter nodes to the scene when the app is built, before the views exist, so the Paint
and Erase pipelines the views create for them have no view and no brush widget; a volume loaded
from Python then cannot be painted. Clearing the scene makes the segment editor drop those
parameter nodes and create them again, lazily, once the views exist. So a new study always
starts with ``scene.Clear()`` (as trame-slicer's own file loading does), and
:meth:`StudyLoader.paint_ready` tells whether the brush pipelines are sound.
"""

import os
import shutil
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from undo_stack import Signal

from ..data import SAMPLE_CASES, data_dir, sample_case
from ..errors import RadiomicsLabError
from ..imageio import read_image
from ..validation import check_mask_is_label_map

#: Single-file image formats (and the detached-header ones when uploaded with their data file).
IMAGE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha", ".mhd", ".nhdr")
DATA_SUFFIXES = (".raw", ".zraw", ".raw.gz", ".img", ".dat")  # detached data of .mhd / .nhdr
SEGMENTATION_SUFFIXES = (".seg.nrrd",)
STUDY_SUFFIXES = (".mrb",)
DICOM_SUFFIXES = (".dcm",)
PARAMETER_SUFFIXES = (".yaml", ".yml", ".json")
COHORT_SUFFIXES = (".csv",)
#: What the Data panel opens (a cohort file is listed only when asked for, see DataFolder.entries).
STUDY_KINDS = ("image", "segmentation", "study", "dicom")
#: Default upload limit (bytes, all files of one upload together); ``radiomicslab web --max-upload-mb``.
DEFAULT_MAX_UPLOAD = 1024 * 1024 * 1024
#: Volume rendering preset of a new study (hidden until asked for; see StudyLoader._show).
VOLUME_RENDERING_PRESET = "MR-Default"
#: Bounds on the data folder listing (a hospital share can be huge).
MAX_LISTED_FILES, MAX_LISTING_DEPTH = 5000, 6
#: Where the server writes what it computes for files (cohort runs) unless told: ``$RADIOMICSLAB_WEB_OUTPUT``.
OUTPUT_ENVIRONMENT = "RADIOMICSLAB_WEB_OUTPUT"


def default_output_root() -> Path:
    """The server's output folder: ``$RADIOMICSLAB_WEB_OUTPUT``, else ``~/RadiomicsLab/web-output`` (made when first used)."""
    return Path(os.environ.get(OUTPUT_ENVIRONMENT) or Path.home() / "RadiomicsLab" / "web-output").expanduser()


def suffix_of(name: str) -> str:
    """The known (possibly double) suffix of a file name, lower case: ``a.seg.nrrd`` -> ``.seg.nrrd``."""
    lower = name.lower()
    known = SEGMENTATION_SUFFIXES + (".nii.gz", ".raw.gz") + IMAGE_SUFFIXES + DATA_SUFFIXES + STUDY_SUFFIXES \
        + DICOM_SUFFIXES + PARAMETER_SUFFIXES + COHORT_SUFFIXES
    return next((s for s in known if lower.endswith(s)), PurePosixPath(lower).suffix)


@dataclass
class Upload:
    """One uploaded file, written to disk under a server-chosen folder."""

    name: str
    path: Path


class UploadFolder:
    """Uploaded files checked for size and type, written under a private temporary folder.

    ``kinds`` are the accepted groups: ``"image"`` (image files, detached data files, DICOM
    slices), ``"segmentation"`` (label map images and ``.seg.nrrd``), ``"study"`` (``.mrb``),
    ``"parameters"`` (YAML / JSON), ``"cohort"`` (CSV). Use as a context manager; the folder is removed on exit.
    """

    ACCEPT = {
        "image": IMAGE_SUFFIXES + DATA_SUFFIXES + DICOM_SUFFIXES,
        "segmentation": SEGMENTATION_SUFFIXES + IMAGE_SUFFIXES + DATA_SUFFIXES,
        "study": STUDY_SUFFIXES,
        "parameters": PARAMETER_SUFFIXES,
        "cohort": COHORT_SUFFIXES,
    }

    def __init__(self, files: list[dict], kinds, max_bytes: int = DEFAULT_MAX_UPLOAD):
        self._folder = None
        self.kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        self.files = files
        self.max_bytes = max_bytes

    @classmethod
    def accepted_suffixes(cls, kinds) -> tuple:
        kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        return tuple(dict.fromkeys(s for kind in kinds for s in cls.ACCEPT[kind]))

    def __enter__(self) -> list[Upload]:
        from trame.app.file_upload import ClientFile

        if not self.files:
            raise RadiomicsLabError("Nothing was uploaded; choose a file.")
        if not all(isinstance(f, dict) for f in self.files):
            raise RadiomicsLabError("The upload was not understood (not files); choose the files again.")
        clients = [ClientFile(f) for f in self.files]
        total = sum(content_size(f) for f in self.files)
        if total > self.max_bytes:
            raise RadiomicsLabError(upload_too_large(total, self.max_bytes))
        accepted = self.accepted_suffixes(self.kinds)
        names = []
        for client in clients:
            name = safe_file_name(client.name)
            if suffix_of(name) not in accepted and not self._is_dicom_slice(name, client.content):
                raise RadiomicsLabError(
                    f"'{name}' is not a file type accepted here; use one of {', '.join(accepted)}."
                )
            if not client.content:
                raise RadiomicsLabError(f"'{name}' is empty; choose the file again.")
            if not isinstance(client.content, (bytes, bytearray, memoryview)):
                raise RadiomicsLabError(f"'{name}' did not arrive as file content; choose the file again.")
            names.append(name)
        if len(set(names)) != len(names):
            raise RadiomicsLabError("Two uploaded files have the same name; upload files with distinct names.")
        self._folder = Path(tempfile.mkdtemp(prefix="radiomicslab-upload-"))
        uploads = []
        for name, client in zip(names, clients):
            path = self._folder / name
            path.write_bytes(client.content)
            uploads.append(Upload(name, path))
        return uploads

    def _is_dicom_slice(self, name: str, content) -> bool:
        """A DICOM file without the ``.dcm`` suffix: 128-byte preamble then ``DICM`` (DICOM PS3.10 7.1)."""
        return "image" in self.kinds and "." not in name and bool(content) and content[128:132] == b"DICM"

    def __exit__(self, *_):
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def content_size(file) -> int:
    """Bytes of one trame file dict's ``content`` (bytes, or a list of byte chunks); 0 for anything else."""
    content = file.get("content") if isinstance(file, dict) else None
    if isinstance(content, (bytes, bytearray, memoryview)):
        return len(content)
    if isinstance(content, (list, tuple)):
        return sum(len(c) for c in content if isinstance(c, (bytes, bytearray, memoryview)))
    return len(content.encode("utf-8", "surrogatepass")) if isinstance(content, str) else 0


def upload_too_large(total: int, limit: int, at_least: bool = False) -> str:
    """The message refusing an upload of ``total`` bytes (``at_least``: counted so far) over ``limit``."""
    size = f"at least {total / 2**20:.0f} MB" if at_least else f"{total / 2**20:.0f} MB"
    return (f"The upload is {size}, more than the limit of {limit / 2**20:.0f} MB; put the file in the data "
            "folder instead, or start the server with a larger --max-upload-mb.")


def printable(text) -> str:
    """``text`` for a message: control characters and undecodable bytes escaped (``\\x00``), at most 200 characters."""
    text = str(text)
    shown = "".join(c if c.isprintable() or c == " " else ascii(c)[1:-1] for c in text[:200])
    return shown + ("…" if len(text) > 200 else "")


def odd_characters(text: str) -> bool:
    """Control characters (NUL, newline, ...) or undecodable bytes: what a browser-given file name may not hold."""
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in text)


#: Longest file name most file systems take (bytes of UTF-8).
MAX_NAME_BYTES = 255


def safe_file_name(name) -> str:
    """The base name of a browser-given file name; refuses names that are empty, only dots, too long
    for a file system, or that hold control characters (NUL, newline, ...) or undecodable bytes."""
    base = PurePosixPath(str(name or "").replace("\\", "/")).name.strip()
    if not base or set(base) <= {"."}:
        raise RadiomicsLabError(f"'{printable(name)}' is not a usable file name; rename the file.")
    if odd_characters(str(name)):
        raise RadiomicsLabError(f"'{printable(name)}' is not a usable file name: it holds control characters "
                                "(such as NUL or a line break); rename the file.")
    if len(base.encode("utf-8")) > MAX_NAME_BYTES:
        raise RadiomicsLabError(f"'{printable(base)}' is not a usable file name: longer than {MAX_NAME_BYTES} "
                                "bytes; rename the file.")
    return base


def resolve_inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing absolute paths, ``..``, links that end outside ``root``, and paths
    holding control characters (NUL, ...) or undecodable bytes."""
    text = str(relative or "")
    if odd_characters(text):
        raise RadiomicsLabError(f"'{printable(relative)}' is not a path inside the data folder (it holds control "
                                "characters such as NUL); choose a file from the list.")
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if not text or text.startswith(("/", "\\")) or (parts and (":" in parts[0] or parts[0] == "/")) or ".." in parts:
        raise RadiomicsLabError(f"'{printable(relative)}' is not a path inside the data folder; choose a file from "
                                "the list.")
    root = root.resolve()
    try:
        path = (root / Path(*parts)).resolve()
    except (OSError, ValueError):  # a name too long for the file system, a link loop
        raise RadiomicsLabError(f"'{printable(relative)}' is not a path inside the data folder; choose a file from "
                                "the list.") from None
    if not path.is_relative_to(root):
        raise RadiomicsLabError(f"'{printable(relative)}' is not a path inside the data folder; choose a file from "
                                "the list.")
    return path


@dataclass
class DataEntry:
    """A loadable item of the data folder: ``kind`` is image, segmentation, study, dicom (a series folder) or cohort."""

    path: str
    kind: str


class DataFolder:
    """The folder given by ``radiomicslab web --data``: what it holds, and safe access to it."""

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else data_dir()

    def entries(self, kinds=STUDY_KINDS) -> list[DataEntry]:
        """Loadable files and DICOM series folders of ``kinds``, by relative path (at most :data:`MAX_LISTED_FILES`)."""
        if not self.root.is_dir():
            return []
        root = self.root.resolve()
        found = []
        stack = [(root, 0)]
        while stack and len(found) < MAX_LISTED_FILES:
            folder, depth = stack.pop()
            try:
                children = sorted(folder.iterdir(), key=lambda p: p.name, reverse=True)
            except OSError:
                continue
            has_dicom = False
            for child in children:
                if child.name.startswith(".") or odd_characters(child.name):
                    continue  # hidden, or a name the page cannot show nor send back (control characters, bad bytes)
                if not child.resolve().is_relative_to(root):
                    continue  # a link leading outside the data folder
                if child.is_dir():
                    if depth + 1 < MAX_LISTING_DEPTH:
                        stack.append((child, depth + 1))
                    continue
                kind = self._kind(child.name)
                if kind == "dicom":
                    has_dicom = "dicom" in kinds
                elif kind in kinds:
                    found.append(DataEntry(child.relative_to(root).as_posix(), kind))
            if has_dicom:
                found.append(DataEntry(folder.relative_to(root).as_posix() or ".", "dicom"))
        return sorted(found, key=lambda e: e.path)

    @staticmethod
    def _kind(name: str) -> str:
        suffix = suffix_of(name)
        if suffix in SEGMENTATION_SUFFIXES:
            return "segmentation"
        if suffix in STUDY_SUFFIXES:
            return "study"
        if suffix in DICOM_SUFFIXES:
            return "dicom"
        if suffix in COHORT_SUFFIXES:
            return "cohort"
        if suffix in (".nrrd", ".nii", ".nii.gz", ".mha", ".mhd", ".nhdr"):
            return "image"
        return ""

    def path_of(self, relative: str, kinds=STUDY_KINDS) -> Path:
        """The file or DICOM folder named by ``relative``; it must be one :meth:`entries` lists for ``kinds``."""
        path = resolve_inside(self.root, relative)
        listed = {e.path for e in self.entries(kinds)}
        if str(relative) not in listed or not path.exists():
            raise RadiomicsLabError(f"'{printable(relative)}' is not a loadable file of the data folder; "
                                    "choose one from the list.")
        return path


class StudyLoader:
    """Puts studies into a trame-slicer ``SlicerApp``'s scene and shows them in its views.

    ``study_loaded(volume_node, segmentation_node_or_None)`` is emitted after each new study
    and each added segmentation, so the segment editor and the panels can follow. ``output_root``
    is the folder the server writes files into (cohort runs; :func:`default_output_root`).
    """

    study_loaded = Signal(object, object)

    def __init__(self, slicer_app, data_root=None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD, output_root=None):
        self.slicer_app = slicer_app
        self.data = DataFolder(data_root)
        self.max_upload_bytes = max_upload_bytes
        self.output_root = Path(output_root) if output_root is not None else default_output_root()
        self.study_name = ""

    @property
    def scene(self):
        return self.slicer_app.scene

    # Sources ---------------------------------------------------------------------------------
    @staticmethod
    def sample_names() -> list[str]:
        """The bundled sample cases whose files are present (``brain1``, ``brain2``, ``breast1``, ...)."""
        names = []
        for name in SAMPLE_CASES:
            try:
                sample_case(name)
            except RadiomicsLabError:
                continue
            names.append(name)
        return names

    def load_sample(self, name: str):
        """A bundled pyradiomics sample case (image and label map) as a new study."""
        if name not in self.sample_names():
            raise RadiomicsLabError(f"Unknown sample case '{name}'; choose one of {', '.join(self.sample_names())}.")
        image, label = sample_case(name)
        return self.load_study(image, label, name)

    def load_from_data(self, image: str, segmentation: str | None = None):
        """A file (or DICOM folder) of the data folder as a new study, with an optional segmentation or label map.

        A ``.mrb`` given as ``image`` loads that saved study.
        """
        image_path = self.data.path_of(image)
        if suffix_of(image_path.name) in STUDY_SUFFIXES:
            return self.load_mrb(image_path)
        segmentation_path = self.data.path_of(segmentation) if segmentation else None
        return self.load_study(image_path, segmentation_path, node_name_of(image_path))

    def add_volume_from_data(self, image: str):
        return self.add_volume(self.data.path_of(image))

    def add_segmentation_from_data(self, segmentation: str):
        return self.add_segmentation(self.data.path_of(segmentation))

    def load_upload(self, files: list[dict], kind: str):
        """Uploaded files: ``kind`` ``image`` (a new study: one image file, a detached header with its
        data, or the slices of one DICOM series), ``segmentation`` (added to the study) or ``study`` (``.mrb``)."""
        with UploadFolder(files, kind, self.max_upload_bytes) as uploads:
            folder = uploads[0].path.parent
            try:
                if kind == "study":
                    if len(uploads) != 1:
                        raise RadiomicsLabError("Upload one .mrb study at a time.")
                    return self.load_mrb(uploads[0].path)
                target = self._main_upload(uploads, kind)
                if kind == "segmentation":
                    return self.add_segmentation(target)
                name = dicom_series_name(target) if target.is_dir() else node_name_of(target)
                return self.load_study(target, None, name)
            except RadiomicsLabError as error:  # name the file as the user knows it, not by its server path
                raise RadiomicsLabError(str(error).replace(f"the folder '{folder}'", "the upload")
                                        .replace(f"{folder}/", "").replace(str(folder), "the upload")) from None

    @staticmethod
    def _main_upload(uploads: list[Upload], kind: str) -> Path:
        """The file (or DICOM folder) to read among the uploaded ones."""
        headers = [u for u in uploads if suffix_of(u.name) not in DATA_SUFFIXES + DICOM_SUFFIXES and "." in u.name]
        if not headers and kind == "image":
            return uploads[0].path.parent  # DICOM slices only: read the folder as one series
        if len(headers) != 1:
            raise RadiomicsLabError(
                f"Upload one {kind} file at a time (or a .mhd / .nhdr header with its data file, or DICOM slices); "
                f"got {', '.join(u.name for u in uploads)}."
            )
        return headers[0].path

    # Loading ----------------------------------------------------------------------------------
    def load_study(self, image_path, segmentation_path=None, name: str | None = None):
        """A new study: the scene is cleared (see the module note), then the image and segmentation loaded.

        A DICOM series folder that also holds RTSTRUCT / SEG files (a PACS export) loads each of them as a
        segmentation node, one segment per ROI named by its ROI name (:func:`dicom_masks_in`).
        All files are read and checked first; a bad file raises :class:`RadiomicsLabError` and
        the current study stays as it was. Returns (volume node, first segmentation node or None).
        """
        from ..mrml.scenefiles import add_dicom_segmentation, load_segmentation, load_volume, read_dicom_segmentation

        image_path = Path(image_path)
        read_image(image_path, "image")
        if segmentation_path is not None:
            check_segmentation_file(segmentation_path)
        dicom = [read_dicom_segmentation(mask, image_path) for mask in dicom_masks_in(image_path)]
        self.scene.Clear(0)
        volume = load_volume(self.scene, image_path, name or node_name_of(image_path))
        segmentation = None
        if segmentation_path is not None:
            segmentation = load_segmentation(self.scene, segmentation_path, f"{volume.GetName()} segmentation", volume)
        for read in dicom:
            node = add_dicom_segmentation(self.scene, read, volume,
                                          self.scene.GenerateUniqueName(node_name_of(read.path)))
            segmentation = segmentation or node
        self.study_name = name or volume.GetName()
        self._show(volume, segmentation)
        return volume, segmentation

    def add_volume(self, path, name: str | None = None):
        """Another image added to the study (a channel for habitats, a timepoint for delta); the shown image stays."""
        from ..mrml.scenefiles import load_volume

        if self.current_volume() is None:
            raise RadiomicsLabError("Open a study first; an added image joins the open study.")
        read_image(path, "image")
        volume = load_volume(self.scene, path, self.scene.GenerateUniqueName(name or node_name_of(path)))
        rendering = self.slicer_app.volume_rendering
        (rendering.get_vr_display_node(volume) or rendering.create_display_node(volume, VOLUME_RENDERING_PRESET)) \
            .SetVisibility(False)
        from trame_slicer.core import VolumeWindowLevel

        VolumeWindowLevel.set_volume_node_display_min_max_range(
            volume, *VolumeWindowLevel.get_volume_auto_min_max_range(volume))
        return volume, None

    def add_segmentation(self, path, name: str | None = None):
        """A label map or ``.seg.nrrd`` added to the current study (on the current volume's grid)."""
        from ..mrml.scenefiles import load_segmentation

        volume = self.current_volume()
        if volume is None:
            raise RadiomicsLabError("Load an image first; a segmentation is added to the image's study.")
        check_segmentation_file(path)
        segmentation = load_segmentation(self.scene, path, self.scene.GenerateUniqueName(name or node_name_of(path)),
                                         volume)
        self.study_loaded(volume, segmentation)
        return volume, segmentation

    def load_mrb(self, path):
        """A saved study (``.mrb``). The file is checked first; if Slicer still cannot load it,
        the previous study is put back from a snapshot."""
        from ..mrml.scenefiles import load_scene, save_scene

        path = Path(path)
        check_study_file(path)
        with tempfile.TemporaryDirectory(prefix="radiomicslab-snapshot-") as folder:
            snapshot = None
            if self.current_volume() is not None:
                snapshot = save_scene(self.scene, Path(folder) / "previous.mrb")
            try:
                load_scene(self.scene, path)
                volume = self.current_volume()
                if volume is None:
                    raise RadiomicsLabError(f"The study '{path.name}' holds no image; save a study with an image.")
            except RadiomicsLabError:
                if snapshot is not None:
                    load_scene(self.scene, snapshot)
                    self._show(self.current_volume(), self.first_segmentation())
                else:
                    self.scene.Clear(0)
                raise
        self.study_name = node_name_of(path)
        segmentation = self.first_segmentation()
        self._show(volume, segmentation)
        return volume, segmentation

    # Scene queries ----------------------------------------------------------------------------
    def current_volume(self):
        """The study's image: the largest scalar volume that is not a computed map or label map."""
        volumes = [v for v in nodes_of(self.scene, "vtkMRMLScalarVolumeNode")
                   if not v.IsA("vtkMRMLLabelMapVolumeNode") and v.GetImageData() is not None
                   and not v.GetAttribute("RadiomicsLab.Kind")]
        if not volumes:
            return None
        return max(volumes, key=lambda v: v.GetImageData().GetNumberOfPoints())

    def first_segmentation(self):
        """The study's first segmentation that has segments (else its first one, else None)."""
        found = nodes_of(self.scene, "vtkMRMLSegmentationNode")
        with_segments = [s for s in found if s.GetSegmentation().GetNumberOfSegments()]
        return (with_segments or found or [None])[0]

    # Views ------------------------------------------------------------------------------------
    def _show(self, volume, segmentation):
        """Background volume with automatic window/level, views reset, slices through the first segment.

        Volume rendering is prepared but hidden: without a GPU (Mesa's llvmpipe) one 3D frame of
        it takes seconds, so the 3D view shows the slice planes until the Display panel turns it on.
        """
        from trame_slicer.core import VolumeWindowLevel

        VolumeWindowLevel.set_volume_node_display_min_max_range(
            volume, *VolumeWindowLevel.get_volume_auto_min_max_range(volume))
        display = self.slicer_app.display_manager
        display.show_volume_in_slice_background(volume)
        display.show_volume_in_slice_foreground(None)
        rendering = self.slicer_app.volume_rendering
        vr_node = rendering.get_vr_display_node(volume) or rendering.create_display_node(volume,
                                                                                        VOLUME_RENDERING_PRESET)
        vr_node.SetVisibility(False)
        for view in self.slicer_app.view_manager.get_slice_views():
            view.set_visible_in_3d(True)
        display.reset_views()
        for view in self.slicer_app.view_manager.get_threed_views():
            oblique_camera(view)
        self.study_loaded(volume, segmentation)
        if segmentation is not None and segmentation.GetSegmentation().GetNumberOfSegments():
            self.center_on_segment(segmentation, segmentation.GetSegmentation().GetNthSegmentID(0))

    def center_on_segment(self, segmentation, segment_id: str):
        """Move every slice view through the segment's centre and centre the view on it (Slicer's "jump")."""
        center = segmentation.GetSegmentCenterRAS(segment_id)
        if center is None:
            return
        for view in self.slicer_app.view_manager.get_slice_views():
            view.get_view_node().JumpSliceByCentering(*center)
            view.schedule_render()

    def paint_ready(self) -> bool:
        """True when every Paint brush pipeline the views made has its view and brush widget (see module note)."""
        from trame_slicer.segmentation import SegmentationEffectPaint

        editor = self.slicer_app.segmentation_editor
        was = editor.active_effect
        effect = editor.set_active_effect_type(SegmentationEffectPaint)
        try:
            pipelines = [p() for p in effect.pipelines if p() is not None]
            return bool(pipelines) and all(p.widget is not None for p in pipelines)
        except AttributeError:
            return False
        finally:
            editor.set_active_effect(was)


def oblique_camera(view, azimuth: float = 35.0, elevation: float = 25.0):
    """Turn a 3D view's camera from straight anterior to an oblique view, so the three slice planes show."""
    camera_node = view.get_camera_node()
    if camera_node is None:
        return
    camera = camera_node.GetCamera()
    camera.Azimuth(azimuth)
    camera.Elevation(elevation)
    camera.OrthogonalizeViewUp()
    camera_node.ResetClippingRange()
    view.schedule_render()


def dicom_masks_in(folder) -> list[Path]:
    """The RTSTRUCT and SEG files of a DICOM folder (by their header's Modality), by name; [] for a file."""
    from ..dicom import is_dicom_mask

    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_dicom_mask(p))


def dicom_series_name(folder) -> str:
    """A node name for the image series of an uploaded DICOM folder: its Series Description, else "DICOM series"."""
    import pydicom

    for path in sorted(Path(folder).iterdir()):
        try:
            header = pydicom.dcmread(str(path), stop_before_pixels=True,
                                     specific_tags=["Modality", "SeriesDescription"])
        except Exception:  # noqa: BLE001 - not DICOM: the series reader already judged the folder
            continue
        if str(header.get("Modality", "")).upper() not in ("RTSTRUCT", "SEG", "SR", ""):
            description = str(header.get("SeriesDescription", "")).strip()
            return printable(description)[:64] if description and not odd_characters(description) else "DICOM series"
    return "DICOM series"


def check_segmentation_file(path):
    """Read a label map or ``.seg.nrrd`` and check it, without touching any scene."""
    path = Path(path)
    image = read_image(path, "segmentation")
    if suffix_of(path.name) not in SEGMENTATION_SUFFIXES:
        check_mask_is_label_map(image, where=f"label map '{path.name}'")
    return path


def check_study_file(path):
    """A ``.mrb`` must be a zip archive holding one ``.mrml`` scene description, all members readable."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise RadiomicsLabError(f"'{path.name}' is not a Slicer study (.mrb); save the study from Slicer as .mrb.")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if not any(n.lower().endswith(".mrml") for n in names):
            raise RadiomicsLabError(f"'{path.name}' holds no scene (.mrml); save the study from Slicer as .mrb.")
        if any(PurePosixPath(n).is_absolute() or ".." in PurePosixPath(n).parts for n in names):
            raise RadiomicsLabError(f"'{path.name}' has members outside its folder; it is not a Slicer study.")
        bad = archive.testzip()
        if bad is not None:
            raise RadiomicsLabError(f"'{path.name}' is damaged ({bad} does not read back); save the study again.")
    return path


def node_name_of(path) -> str:
    from ..mrml.scenefiles import node_name_from_path

    return node_name_from_path(path)


def nodes_of(scene, class_name: str) -> list:
    """The nodes of one class in a scene, in scene order."""
    collection = scene.GetNodesByClass(class_name)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
