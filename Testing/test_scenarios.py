"""The module self-test's scenarios (``RadiomicsLabLib.mrml.scenarios``), one test each, on a fresh headless scene,
and the sample cache they get their cases from (``RadiomicsLabLib.mrml.sampledata``).

Each scenario checks itself against values computed another way (pyradiomics or the IBSI engine, the engine on a
kernel, SimpleITK's distance map and overlap measures, numpy on the habitat channels, the documented synthetic
follow-up, a single extraction) and raises AssertionError when they differ; here every one runs and what it returns
must be nodes of the scene. The desktop module's self-test runs the same functions on ``slicer.mrmlScene``.

The scenarios run as on a Slicer build machine: on the registered Sample Data cases only, from a sample cache
(here filled by copying the reference data's ``pyradiomics_cases/`` files whose SHA-256 is the registered one,
never downloaded: the tests run without network), with ``RADIOMICSLAB_DATA`` pointing to an empty folder, while
every Python-level open of a file under the reference data folder is recorded (there must be none; the logic
verifies each input file from Python before SimpleITK reads it, so a scenario reading one would be seen).
"""

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.mrml import sampledata, scenarios

#: Paths opened (Python audit event "open") under a watched folder while ``_WATCHED`` names it.
_WATCHED: list = []
_OPENED: list = []


def _audit(event, args):
    if event == "open" and _WATCHED and isinstance(args[0], (str, bytes, Path)):
        path = str(args[0] if not isinstance(args[0], bytes) else args[0].decode(errors="replace"))
        if any(path.startswith(folder) for folder in _WATCHED):
            _OPENED.append(path)


sys.addaudithook(_audit)


@pytest.fixture(scope="session")
def sample_cache(tmp_path_factory, data):
    """A sample cache holding the registered files, copied from the reference data after checking their SHA-256."""
    folder = tmp_path_factory.mktemp("sample-cache")
    cached = sampledata.fill_cache(data / "pyradiomics_cases", folder)
    assert sorted(p.name for p in cached) == sorted(n for c in sampledata.SAMPLE_CASES for n in c.file_names)
    return folder


@pytest.fixture
def offline(monkeypatch):
    """No download can happen (CI has no access to GitHub): any attempt fails as an unreachable network does."""
    attempts = []

    def unreachable(url, destination):
        attempts.append(url)
        raise OSError(f"<urlopen error [Errno -3] Temporary failure in name resolution> (test: no network for {url})")

    monkeypatch.setattr(sampledata, "_download", unreachable)
    return attempts


@pytest.fixture
def cases(sample_cache, offline, data, monkeypatch, tmp_path):
    """The sample cases as the scenarios get them, with the reference data out of reach: ``RADIOMICSLAB_DATA`` is an
    empty folder, and opening anything under the real reference data folder is recorded."""
    empty = tmp_path / "empty-reference-data"
    empty.mkdir()
    monkeypatch.setenv("RADIOMICSLAB_DATA", str(empty))
    found = sampledata.sample_cases(cache_dir=sample_cache)
    assert not offline, f"the cache was complete, yet {offline} were downloaded"
    _WATCHED[:] = [str(data.resolve()), str(data)]
    _OPENED.clear()
    yield found
    _WATCHED.clear()
    assert not _OPENED, f"the scenario opened files of the reference data folder: {sorted(set(_OPENED))}"
    assert not list(empty.iterdir()), "something wrote into RADIOMICSLAB_DATA"


def made_nodes(name, produced) -> list:
    """The MRML nodes a scenario returned."""
    if name == "load_sample":
        return list(produced)
    if name in ("extract_sample", "save_and_reload"):
        return [produced]
    if name == "feature_maps_sample":
        return [*produced.maps.values(), produced.table]
    if name == "observers_sample":
        return produced.nodes()
    if name == "habitats_sample":
        return [*produced.segmentations, produced.statistics, produced.cohort, produced.fractions_chart]
    if name == "delta_sample":
        return [produced.table, produced.trajectories, produced.waterfall, *produced.transforms.values()]
    if name == "cohort_sample":
        return [produced["status"], produced["results"]]
    raise AssertionError(f"no test knows what scenario '{name}' makes")


def run(name, scene, cases, tmp_path):
    """Call a scenario as the module self-test does (save_and_reload needs a feature table first)."""
    function = getattr(scenarios, name)
    if name == "save_and_reload":
        scenarios.extract_sample(scene, cases)
        return function(scene, cases, tmp_path / "scenario.mrb")
    if name == "cohort_sample":
        return function(scene, cases, tmp_path)
    return function(scene, cases)


@pytest.mark.parametrize("name", scenarios.SCENARIOS)
def test_scenario_runs_on_the_sample_cache_only(name, cases, scene, tmp_path):
    produced = run(name, scene, cases, tmp_path)
    nodes = made_nodes(name, produced)
    assert nodes and all(node is not None and scene.GetNodeByID(node.GetID()) is node for node in nodes), name


def test_the_watch_on_the_reference_data_sees_the_scenarios_reads(data, scene):
    """The audit hook behind the ``cases`` fixture does notice a scenario reading the reference data folder."""
    _WATCHED[:] = [str(data)]
    _OPENED.clear()
    try:
        scenarios.load_sample(scene, data / "pyradiomics_cases")
    finally:
        _WATCHED.clear()
    assert str(data / "pyradiomics_cases" / "brain1_image.nrrd") in _OPENED
    _OPENED.clear()


def test_extraction_agrees_with_the_ibsi_engine_route(cases, scene):
    """The second route extract_sample takes when pyradiomics cannot be imported (here forced: it can)."""
    table = scenarios.extract_sample(scene, cases, reference="ibsi")
    assert scenarios._feature_tables(scene) == [table]  # the IBSI table it compared with is gone
    assert scenarios.ExtractionLogic(scene).provenance(table)["engine"] == "pyradiomics"


@pytest.mark.parametrize("name", ["extract_sample", "delta_sample", "cohort_sample"])
def test_scenario_without_pyradiomics_runs_on_the_native_engine(name, cases, scene, tmp_path, monkeypatch):
    """Desktop Slicer installs no pyradiomics (RadiomicsLabLib.dependencies): the scenarios that extract run on the
    native engine, and extract_sample checks it against the IBSI engine."""
    monkeypatch.setitem(sys.modules, "radiomics", None)  # `import radiomics` fails, as where it is not installed
    assert not scenarios._has_pyradiomics()
    produced = run(name, scene, cases, tmp_path)
    assert made_nodes(name, produced)
    if name == "extract_sample":
        assert scenarios.ExtractionLogic(scene).provenance(produced)["engine"] == "native"


def test_every_public_scenario_is_listed():
    public = {n for n, f in vars(scenarios).items() if callable(f) and getattr(f, "__module__", "") == scenarios.__name__
              and not n.startswith("_") and n not in {"run_all", "sample_paths"}}
    assert public == set(scenarios.SCENARIOS)


def test_scenarios_read_no_reference_data_and_install_nothing():
    source = Path(scenarios.__file__).read_text(encoding="utf-8")
    for word in (r"\bdata_dir\b", "RADIOMICSLAB_DATA", r"shared/data", r"\bpip\b", "pip_install", r"\bsts\b", "STS_"):
        assert not re.search(word, source), word
    assert set(scenarios.COHORT_CASES) | {scenarios.SAMPLE_CASE} <= {c.name for c in sampledata.SAMPLE_CASES}


@pytest.mark.parametrize("name", [n for n in scenarios.SCENARIOS if n != "save_and_reload"])
@pytest.mark.parametrize("given", ["nothing", "empty folder"])
def test_scenario_without_the_cases_says_how_to_get_them(name, given, scene, tmp_path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    before = scene.GetNumberOfNodes()
    with pytest.raises(AssertionError, match=r"not (given|found) .*sampledata\.sample_cases\(\)"):
        run(name, scene, {} if given == "nothing" else empty, tmp_path)
    assert scene.GetNumberOfNodes() == before  # refused before any node was made


def test_save_and_reload_of_an_empty_scene_says_what_to_run_first(cases, scene, tmp_path):
    with pytest.raises(AssertionError, match="no feature table .*run extract_sample first"):
        scenarios.save_and_reload(scene, cases, tmp_path / "empty.mrb")
    assert not (tmp_path / "empty.mrb").exists()


@pytest.mark.parametrize("mask", ["pyradiomics_cases/brain1_label.nrrd", "sts/STS_002/CT_mask.nii.gz"])
def test_the_scenarios_distance_map_is_the_euclidean_distance_transform(data, mask):
    """The SimpleITK (Maurer) distances the observer, habitat and delta scenarios check against agree with scipy's
    exact Euclidean distance transform on real masks (brain1's: 6.5 mm slices), outside (rings) and inside
    (erosions), to float32."""
    mask = sitk.ReadImage(str(data / mask))
    inside = sitk.GetArrayFromImage(mask) > 0
    spacing = mask.GetSpacing()[::-1]
    outside = scenarios._distance_mm(inside, mask)
    assert np.abs(outside - ndimage.distance_transform_edt(~inside, sampling=spacing)).max() < 1e-4
    to_background = scenarios._distance_mm(~inside, mask, beyond_grid=True)
    exact = ndimage.distance_transform_edt(np.pad(inside, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    assert np.abs(to_background[inside] - exact[inside]).max() < 1e-4
    assert np.all(outside[inside] == 0) and np.all(to_background[~inside] == 0)


# The sample cache ---------------------------------------------------------------------------------
@pytest.fixture
def cache(sample_cache, tmp_path):
    """A private copy of the filled sample cache, to spoil."""
    return Path(shutil.copytree(sample_cache, tmp_path / "cache"))


def registered(file_name):
    case = next(c for c in sampledata.SAMPLE_CASES if file_name in c.file_names)
    index = case.file_names.index(file_name)
    return case.uris[index], (case.image_sha256, case.label_sha256)[index]


def test_a_cached_file_with_the_registered_checksum_is_used_without_network(cache, offline):
    image, label = sampledata.cached_sample_case("brain1", cache)
    assert (image, label) == (cache / "brain1_image.nrrd", cache / "brain1_label.nrrd")
    assert sampledata.file_sha256(image) == registered(image.name)[1] and not offline


def test_a_cached_file_with_a_wrong_checksum_is_refused_offline(cache, offline):
    spoilt = cache / "brain1_label.nrrd"
    spoilt.write_bytes(spoilt.read_bytes() + b"\0")
    url, digest = registered(spoilt.name)
    with pytest.raises(RadiomicsLabError) as raised:
        sampledata.cached_sample_case("brain1", cache)
    message = str(raised.value)
    assert "refused" in message and f"Could not download {url}" in message and str(spoilt) in message and digest in message
    assert offline == [url]
    assert not spoilt.exists()  # never reused
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []  # no partial file left


def test_a_cached_file_with_a_wrong_checksum_is_downloaded_again(cache, data, monkeypatch):
    spoilt = cache / "breast1_image.nrrd"
    spoilt.write_bytes(b"not the image")
    served = []

    def server(url, destination):  # what GitHub serves at the registered URL: the real file
        served.append(url)
        shutil.copyfile(data / "pyradiomics_cases" / url.rsplit("/", 1)[1], destination)

    monkeypatch.setattr(sampledata, "_download", server)
    path = sampledata.sample_file("breast1_image.nrrd", cache)
    assert path == spoilt and served == [registered(path.name)[0]]
    assert sampledata.file_sha256(path) == registered(path.name)[1]


def test_a_download_with_other_content_is_not_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(sampledata, "_download", lambda url, destination: Path(destination).write_bytes(b"<html>rate limited"))
    url, digest = registered("brain2_image.nrrd")
    with pytest.raises(RadiomicsLabError, match=rf"{url} served a file with SHA-256 [0-9a-f]{{64}}, not {digest}"):
        sampledata.sample_file("brain2_image.nrrd", tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())


def test_an_empty_cache_offline_says_which_url_to_fetch_and_where(tmp_path, offline, monkeypatch):
    monkeypatch.setenv(sampledata.CACHE_ENVIRONMENT, str(tmp_path / "cache"))
    assert sampledata.default_cache_dir() == tmp_path / "cache"
    url, digest = registered("brain2_image.nrrd")
    with pytest.raises(RadiomicsLabError) as raised:
        sampledata.sample_cases(["brain2"])
    message = str(raised.value)
    assert f"Could not download {url}" in message and f"save it as {tmp_path / 'cache' / 'brain2_image.nrrd'}" in message
    assert digest in message and sampledata.CACHE_ENVIRONMENT in message
    assert url.startswith(sampledata.PYRADIOMICS_DATA_URL) and offline == [url]


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(sampledata.CACHE_ENVIRONMENT, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert sampledata.default_cache_dir() == tmp_path / "RadiomicsLab" / "SampleData"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert sampledata.default_cache_dir() == Path.home() / ".cache" / "RadiomicsLab" / "SampleData"


def test_fill_cache_copies_only_files_with_the_registered_checksum(tmp_path, sample_cache):
    source = Path(shutil.copytree(sample_cache, tmp_path / "source"))
    (source / "brain2_label.nrrd").write_bytes(b"other")
    cached = sampledata.fill_cache(source, tmp_path / "cache")
    assert "brain2_label.nrrd" not in {p.name for p in cached} and len(cached) == 5
    assert not (tmp_path / "cache" / "brain2_label.nrrd").exists()


def test_unknown_case_or_file_is_an_error(tmp_path):
    with pytest.raises(RadiomicsLabError, match="Unknown sample case 'prostate'.*brain1, brain2, breast1"):
        sampledata.cached_sample_case("prostate", tmp_path)
    with pytest.raises(RadiomicsLabError, match="not a file of RadiomicsLab's sample cases"):
        sampledata.sample_file("prostate_phantom_image.nrrd", tmp_path)


# Desktop Slicer's route, against a stand-in of its Sample Data module --------------------------------------
class FakeSampleDataModule:
    """What slicer_sample_case uses of Slicer's ``SampleData`` module, written after
    Modules/Scripted/SampleData/SampleData.py (Slicer 583e9b37): registered sources by category, and
    ``downloadFileIntoCache`` -> ``downloadFile`` (reuse a cached file whose checksum matches, else download; a failed
    download raises ValueError; a download with the wrong checksum is deleted and its path returned all the same)."""

    def __init__(self, cache_folder: Path, server: dict):
        import hashlib
        import types

        sources, downloads = {}, []

        class SampleDataLogic:
            @staticmethod
            def registerCustomSampleDataSource(category="Custom", sampleName=None, uris=None, fileNames=None,
                                               nodeNames=None, customDownloader=None, thumbnailFileName=None,
                                               loadFileTypes=None, loadFiles=None, loadFileProperties={},
                                               checksums=None, loadFileType=None):
                source = types.SimpleNamespace(sampleName=sampleName, uris=uris, fileNames=fileNames, checksums=checksums)
                if sampleName not in {s.sampleName for s in sources.get(category, [])}:
                    sources.setdefault(category, []).append(source)

            def sourceForSampleName(self, sampleName):
                return next((s for group in sources.values() for s in group if s.sampleName == sampleName), None)

            def downloadFileIntoCache(self, uri, name, checksum=None, forceDownload=False):
                path = cache_folder / name
                algo, digest = checksum.split(":")
                if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == digest:
                    return str(path)
                path.unlink(missing_ok=True)
                if uri not in server:
                    raise ValueError(f"Failed to download {uri} to {path}")
                downloads.append(uri)
                path.write_bytes(server[uri])
                if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                    path.unlink()
                return str(path)

        self.module = types.SimpleNamespace(SampleDataLogic=SampleDataLogic)
        self.sources, self.downloads = sources, downloads
        manager = types.SimpleNamespace(GetRemoteCacheDirectory=lambda: str(cache_folder))
        self.scene = types.SimpleNamespace(GetCacheManager=lambda: manager)


@pytest.fixture
def desktop(monkeypatch, tmp_path, data):
    """slicer_sample_case as desktop Slicer runs it: ``SampleData`` importable, ``slicer.mrmlScene`` its cache manager's
    scene; the "server" holds the real files at their registered URLs."""
    import slicer

    server = {uri: (data / "pyradiomics_cases" / name).read_bytes()
              for case in sampledata.SAMPLE_CASES for uri, name in zip(case.uris, case.file_names)}
    fake = FakeSampleDataModule(tmp_path / "slicer-cache", server)
    (tmp_path / "slicer-cache").mkdir()
    monkeypatch.setitem(sys.modules, "SampleData", fake.module)
    monkeypatch.setattr(slicer, "mrmlScene", fake.scene, raising=False)
    fake.server = server
    return fake


def test_desktop_route_uses_the_registered_sources_and_slicers_cache(desktop, tmp_path):
    cases = sampledata.sample_cases()  # in "desktop Slicer": SampleData importable, no cache folder given
    assert set(cases) == {"brain1", "brain2", "breast1"}
    assert [s.sampleName for s in desktop.sources["RadiomicsLab"]] == [c.sample_name for c in sampledata.SAMPLE_CASES]
    for case in sampledata.SAMPLE_CASES:
        assert cases[case.name] == tuple(tmp_path / "slicer-cache" / name for name in case.file_names)
    assert desktop.downloads == [uri for case in sampledata.SAMPLE_CASES for uri in case.uris]
    sampledata.slicer_sample_case("brain1")  # the second time from the cache
    assert len(desktop.downloads) == 6


def test_desktop_route_offline_says_where_to_put_the_file(desktop, tmp_path):
    desktop.server.clear()
    url = sampledata.SAMPLE_CASES[0].uris[0]
    with pytest.raises(RadiomicsLabError, match=rf"could not download {url} .*save it as "
                                                rf"{tmp_path / 'slicer-cache' / 'brain1_image.nrrd'}"):
        sampledata.slicer_sample_case("brain1")


def test_desktop_route_refuses_a_download_with_another_checksum(desktop, tmp_path):
    url = sampledata.SAMPLE_CASES[1].uris[1]
    desktop.server[url] = b"an error page"
    with pytest.raises(RadiomicsLabError, match=r"did not get brain2_label\.nrrd with SHA-256"):
        sampledata.slicer_sample_case("brain2")
    assert not (tmp_path / "slicer-cache" / "brain2_label.nrrd").exists()
