"""The Slicer extension build, checked without building it against Slicer.

(a) The extension metadata of the top-level CMakeLists.txt: ``Testing/cmake/CheckExtensionMetadata.cmake``
    run by the real ``cmake -P`` (also registered as a ctest), on the file and on broken copies of it.
(b) The Python packages desktop Slicer has to pip-install (``RadiomicsLabLib.dependencies``) against
    pyproject.toml and against what the code imports.
(c) The Sample Data registration (``RadiomicsLabLib.mrml.sampledata``): checksums of the real files,
    arguments Slicer's ``registerCustomSampleDataSource`` accepts, label maps that Slicer's segmentation
    reader loads, thumbnails rendered from the real images.
"""

import ast
import hashlib
import importlib.metadata
import logging
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from RadiomicsLabLib import dependencies
from RadiomicsLabLib.mrml import sampledata

ROOT = Path(__file__).resolve().parent.parent
CMAKELISTS = ROOT / "CMakeLists.txt"
CHECK_SCRIPT = ROOT / "Testing" / "cmake" / "CheckExtensionMetadata.cmake"
RAW_URL_PREFIX = "https://raw.githubusercontent.com/RadiomicsLab/RadiomicsLab/main/"


def run_check(cmakelists: Path = CMAKELISTS) -> subprocess.CompletedProcess:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.fail("cmake not found: install it (Debian: apt-get install cmake) to check the extension metadata.")
    return subprocess.run([cmake, f"-DEXTENSION_DIR={ROOT}", f"-DCMAKELISTS={cmakelists}", "-P", str(CHECK_SCRIPT)],
                          capture_output=True, text=True, timeout=60)


def checked_values(output: str) -> dict:
    """EXTENSION_* -> value, as CMake evaluated them (the script's ``-- NAME: value`` lines)."""
    return dict(re.findall(r"^-- (EXTENSION_\w+): (.*)$", output, re.MULTILINE))


# (a) ---------------------------------------------------------------------------------------------
def test_extension_metadata_is_complete():
    result = run_check()
    assert result.returncode == 0, result.stderr
    values = checked_values(result.stdout)
    assert values["EXTENSION_HOMEPAGE"] == "https://github.com/RadiomicsLab/RadiomicsLab"
    assert values["EXTENSION_ICONURL"] == RAW_URL_PREFIX + "RadiomicsLab/Resources/Icons/RadiomicsLab.png"
    assert values["EXTENSION_ENABLED"] == "1" and values["EXTENSION_DEPENDS"] == "NA"
    # The catalogue's one-line description names every workflow of the module.
    description = values["EXTENSION_DESCRIPTION"]
    for workflow in ("IBSI feature extraction", "feature maps", "multi-observer", "habitats", "delta-radiomics",
                     "cohort"):
        assert workflow in description, workflow
    # Screenshots come from Resources/Screenshots (the script checked they exist), and git publishes each image.
    screenshots = values["EXTENSION_SCREENSHOTURLS"].split()
    assert screenshots and all(url.startswith(RAW_URL_PREFIX + "Resources/Screenshots/") for url in screenshots)
    for url in [values["EXTENSION_ICONURL"], *screenshots]:
        path = url.removeprefix(RAW_URL_PREFIX)
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode
        assert ignored == 1, f"{path}: git check-ignore says {ignored} (0: ignored, so the URL would not resolve)"


def test_the_check_is_a_ctest_of_the_extension():
    text = CMAKELISTS.read_text()
    assert "-P ${CMAKE_CURRENT_SOURCE_DIR}/Testing/cmake/CheckExtensionMetadata.cmake" in text
    assert re.search(r"if\(BUILD_TESTING\)\s+add_test\(NAME \$\{PROJECT_NAME\}ExtensionMetadata", text)


TEMPLATE_ICON = "https://www.example.com/Slicer/Extensions/TemplateKey.png"  # Slicer's extension template


@pytest.mark.parametrize("broken, message", [  # each breaks one thing; the template icon is also not ours
    (lambda text: re.sub(r"set\(EXTENSION_CATEGORY [^)]*\)\n", "", text),
     "EXTENSION_CATEGORY is not set"),
    (lambda text: re.sub(r"set\(EXTENSION_STATUS [^)]*\)\n", "", text),
     "EXTENSION_STATUS is not set"),
    (lambda text: re.sub(r'set\(EXTENSION_CONTRIBUTORS "[^"]*"\)', 'set(EXTENSION_CONTRIBUTORS "")', text),
     "EXTENSION_CONTRIBUTORS is empty"),
    (lambda text: re.sub(r'set\(EXTENSION_ICONURL "[^"]*"\)', f'set(EXTENSION_ICONURL "{TEMPLATE_ICON}")', text),
     "EXTENSION_ICONURL is a placeholder ('example.com')"),
    (lambda text: text.replace("web_habitats.png", "web_no_such_screenshot.png"),
     "names Resources/Screenshots/web_no_such_screenshot.png, which is not a file"),
    (lambda text: text.replace("RadiomicsLab/Resources/Icons/RadiomicsLab.png", "Resources/Screenshots/web_paint.png"),
     "is 1440 x 900 pixels; Slicer expects a 128 x 128 icon"),
    (lambda text: text.replace("set(EXTENSION_ENABLED 1)", "set(EXTENSION_ENABLED yes)"),
     "EXTENSION_ENABLED must be 0 or 1"),
    (lambda text: re.sub(r"(# Extension meta-information[^\n]*\n)", r"\1# TODO: add a logo\n", text, count=1),
     "left to do in the extension meta-information: 'TODO: add a logo'"),
], ids=["no-category", "no-status", "empty-contributors", "template-icon", "missing-screenshot", "icon-size",
        "enabled-not-boolean", "todo-left"])
def test_the_check_fails_naming_what_is_missing(tmp_path, broken, message):
    text = CMAKELISTS.read_text()
    copy = tmp_path / "CMakeLists.txt"
    copy.write_text(broken(text))
    assert copy.read_text() != text, "the broken copy must differ from CMakeLists.txt"
    result = run_check(copy)
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split()), result.stderr
    problems = re.findall(r"^[ \t]+- (EXTENSION_\w+|left to do)", result.stderr, re.MULTILINE)
    assert len(set(problems)) == 1, f"only the problem made: {result.stderr}"


# (b) ---------------------------------------------------------------------------------------------
#: Import names the desktop code uses that are neither a requirement nor bundled: the Slicer application's
#: own modules, and packages our requirements depend on (requirement, distribution), checked below.
SLICER_APPLICATION = {"slicer", "vtk", "vtkmodules", "qt", "ctk", "SampleData", "SegmentStatistics",
                      "SegmentStatisticsPlugins"}
TRANSITIVE = {"pywt": ("pyradiomics-bhklab", "PyWavelets"), "pykwalify": ("pyradiomics-bhklab", "pykwalify"),
              "threadpoolctl": ("scikit-learn", "threadpoolctl"), "PIL": ("matplotlib", "pillow")}
#: RadiomicsLabLib files desktop Slicer does not run (the command line, the web GUI) and imports that only the
#: headless runtime reaches (mrml/app.py's new_headless_app; inside Slicer default_scene is slicer.mrmlScene).
NOT_IN_SLICER_FILES = ("cli.py", "commands/", "web/")
HEADLESS_ONLY = {("mrml/app.py", "trame_slicer")}


def canonical(requirement: str) -> str:
    """PEP 503 name of a requirement, extras and versions dropped."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()


def test_requirements_account_for_every_pyproject_dependency():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    groups = [set(dependencies.SLICER_REQUIREMENTS), set(dependencies.BUNDLED_WITH_SLICER),
              set(dependencies.NOT_USED_IN_SLICER)]
    assert set.union(*groups) == set(declared), "pyproject.toml and RadiomicsLabLib.dependencies disagree"
    assert sum(map(len, groups)) == len(declared), "a dependency is in more than one group"


def test_import_names_belong_to_the_requirements():
    owners = importlib.metadata.packages_distributions()
    named = {**dependencies.SLICER_REQUIREMENTS, **{r: (name,) for r, name in dependencies.BUNDLED_WITH_SLICER.items()}}
    for requirement, modules in named.items():
        extras = re.search(r"\[(.*)\]", requirement)  # dask[distributed]: the extra is the distributed package
        distributions = {canonical(requirement), *(canonical(e) for e in (extras[1].split(",") if extras else []))}
        for module in modules:
            assert {canonical(d) for d in owners.get(module, [])} & distributions, (requirement, module)
    for module, (requirement, distribution) in TRANSITIVE.items():
        requires = {canonical(r) for r in importlib.metadata.requires(canonical(requirement)) or [] if "extra ==" not in r}
        assert canonical(distribution) in requires, f"{requirement} does not bring {distribution} ({module})"
        assert canonical(distribution) in {canonical(d) for d in owners.get(module, [])}, module


def test_code_run_in_slicer_imports_only_required_bundled_or_slicer_packages():
    package = ROOT / "RadiomicsLabLib"
    known = ({m for modules in dependencies.SLICER_REQUIREMENTS.values() for m in modules}
             | set(dependencies.BUNDLED_WITH_SLICER.values()) | SLICER_APPLICATION | set(TRANSITIVE))
    unknown = set()
    for path in package.rglob("*.py"):
        name = path.relative_to(package).as_posix()
        if name.startswith(NOT_IN_SLICER_FILES):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for top in {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names) - {"RadiomicsLabLib"}:
                if top not in known and (name, top) not in HEADLESS_ONLY:
                    unknown.add((name, top))
    assert not unknown, f"imports desktop Slicer would lack; add them to RadiomicsLabLib.dependencies: {sorted(unknown)}"


NOT_INSTALLED = """
import importlib, sys
for name in sys.argv[1].split():
    sys.modules[name] = None  # import raises ModuleNotFoundError, importlib.util.find_spec returns None
from RadiomicsLabLib.dependencies import missing_requirements
print(" ".join(missing_requirements()))
for module in sys.argv[2:]:
    importlib.import_module(module)
"""


def test_startup_hooks_work_in_a_slicer_without_the_requirements():
    """At startup (before the module can pip-install anything) RadiomicsLab.py checks the requirements and
    registers its sample data and Segment Statistics plugin: that works in a Python with only what Slicer
    ships, every requirement's (and the command line's and web GUI's) import names absent, and all of the
    requirements are then reported missing. (test_slicer_module checks RadiomicsLab.py's own imports.)"""
    modules = ["RadiomicsLabLib.dependencies", "RadiomicsLabLib.mrml.sampledata", "RadiomicsLabLib.mrml.segmentstatistics"]
    absent = ({m for names in dependencies.SLICER_REQUIREMENTS.values() for m in names} | set(TRANSITIVE)
              | {"trame", "trame_slicer", "trame_server", "click", "tqdm"})
    result = subprocess.run([sys.executable, "-c", NOT_INSTALLED, " ".join(sorted(absent)), *modules],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == list(dependencies.SLICER_REQUIREMENTS)  # all missing, in install order


def test_nothing_is_missing_here_and_pins_name_the_bundled_versions():
    import scipy

    assert dependencies.missing_requirements() == []
    assert dependencies.bundled_pins() == [f"numpy=={np.__version__}", f"scipy=={scipy.__version__}",
                                           f"SimpleITK=={sitk.__version__}"]


# (c) ---------------------------------------------------------------------------------------------
#: Parameters of SampleData.SampleDataLogic.registerCustomSampleDataSource, read in Slicer's
#: Modules/Scripted/SampleData/SampleData.py at v5.8.1 (11eaf62e5a70b828021ff8beebbdd14d10d4f51c) and
#: main (583e9b37d50ead7daf7b783dce465ccaecec8809): identical. v5.6.2 (f10cd8c2) has loadFileType, no loadFileTypes.
REGISTER_PARAMETERS = {"category", "sampleName", "uris", "fileNames", "nodeNames", "customDownloader",
                       "thumbnailFileName", "loadFileTypes", "loadFiles", "loadFileProperties", "checksums",
                       "loadFileType"}
#: File types of Slicer's readers (qSlicerVolumesReader, qSlicerSegmentationsReader: fileType()).
SLICER_FILE_TYPES = {"VolumeFile", "SegmentationFile"}


@pytest.fixture(scope="module")
def cases_folder(data):
    return data / "pyradiomics_cases"


def test_checksums_match_the_reference_files(cases_folder):
    for case in sampledata.SAMPLE_CASES:
        for name, checksum in zip(case.file_names, case.checksums):
            digest = hashlib.sha256((cases_folder / name).read_bytes()).hexdigest()
            assert checksum == f"SHA256:{digest}", name
    assert re.fullmatch(r"https://raw\.githubusercontent\.com/AIM-Harvard/pyradiomics/[0-9a-f]{40}/data/",
                        sampledata.PYRADIOMICS_DATA_URL)


def test_sources_are_arguments_slicer_accepts():
    sources = sampledata.sample_data_sources()
    assert [s["sampleName"] for s in sources] == ["PyradiomicsBrain1", "PyradiomicsBrain2", "PyradiomicsBreast1"]
    for source in sources:
        assert set(source) <= REGISTER_PARAMETERS, set(source) - REGISTER_PARAMETERS
        assert source["category"] == "RadiomicsLab"
        per_file = ("uris", "fileNames", "nodeNames", "checksums", "loadFileTypes")
        assert len({len(source[key]) for key in per_file}) == 1, "SampleDataSource raises ValueError on unequal lengths"
        assert [uri.rsplit("/", 1)[1] for uri in source["uris"]] == source["fileNames"]
        assert all(re.fullmatch(r"SHA256:[0-9a-f]{64}", c) for c in source["checksums"])
        assert source["loadFileTypes"] == ["VolumeFile", "SegmentationFile"]
        assert set(source["loadFileTypes"]) <= SLICER_FILE_TYPES
        assert Path(source["thumbnailFileName"]).is_file()


def test_thumbnails_are_where_the_extension_installs_them():
    module_cmake = (ROOT / "RadiomicsLab" / "CMakeLists.txt").read_text()
    installed, source = sampledata.THUMBNAIL_FOLDERS
    # Built, the module's resources are in <scripted modules>/Resources/ and RadiomicsLabLib in <scripted modules>/
    # (RadiomicsLab/CMakeLists.txt), as the checkout has RadiomicsLabLib/ in ROOT.
    assert installed == ROOT / "Resources" / "Icons" / "SampleData"
    assert source == ROOT / "RadiomicsLab" / "Resources" / "Icons" / "SampleData"
    assert sampledata.thumbnail_folder() == source  # a source checkout
    for case in sampledata.SAMPLE_CASES:
        assert re.search(rf"^\s*Resources/Icons/SampleData/{case.name}\.png\s*$", module_cmake, re.MULTILINE), case.name


def test_thumbnails_are_renders_of_the_real_cases(cases_folder):
    from PIL import Image

    for case in sampledata.SAMPLE_CASES:
        with Image.open(sampledata.SOURCE_THUMBNAIL_FOLDER / f"{case.name}.png") as picture:
            assert (picture.format, picture.size) == ("PNG", (128, 128))
            stored = np.asarray(picture.convert("RGB")).astype(int)
        image, label = (cases_folder / name for name in case.file_names)
        rendered = sampledata.render_thumbnail(image, label)
        assert rendered.shape == (128, 128, 3)
        assert np.abs(stored - rendered).max() <= 1, case.name
        outline = np.all(stored == (255, 200, 0), axis=2)
        assert 5 < outline.sum() < 0.05 * 128 * 128, case.name  # the lesion's outline, not a flat picture
        assert len(np.unique(stored.reshape(-1, 3), axis=0)) > 50, case.name


def test_label_maps_load_as_segmentations(cases_folder):
    """What Slicer's SegmentationFile reader does with a plain label map: one segment per label value."""
    import slicer
    from vtkmodules.util.numpy_support import vtk_to_numpy

    scene = slicer.vtkMRMLScene()
    for case in sampledata.SAMPLE_CASES:
        path = cases_folder / case.file_names[1]
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        storage = slicer.vtkMRMLSegmentationStorageNode()
        storage.SetFileName(str(path))
        assert storage.ReadData(node), path
        segmentation = node.GetSegmentation()
        assert segmentation.GetNumberOfSegments() == 1, path
        labelmap = slicer.vtkOrientedImageData()
        node.GetBinaryLabelmapRepresentation(segmentation.GetNthSegmentID(0), labelmap)
        voxels = int((vtk_to_numpy(labelmap.GetPointData().GetScalars()) > 0).sum())
        assert voxels == int((sitk.GetArrayViewFromImage(sitk.ReadImage(str(path))) > 0).sum()) > 0, path


def test_registration_outside_desktop_slicer_says_why(caplog):
    with caplog.at_level(logging.WARNING):
        assert sampledata.register_sample_data() is False
    assert "only in desktop Slicer's Sample Data module" in caplog.text
