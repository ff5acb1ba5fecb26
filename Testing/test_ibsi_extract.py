"""The IBSI engine through extraction, the CLI and the MRML Logic; its bad-input messages."""

import math

import pytest
import SimpleITK as sitk

from RadiomicsLabLib.data import data_dir
from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.extraction import extract
from RadiomicsLabLib.ibsi.configurations import CONFIGURATIONS
from RadiomicsLabLib.ibsi.engine import compute_features
from RadiomicsLabLib.mrml import ExtractionLogic
from RadiomicsLabLib.settings import load_settings

from conftest import read_csv, read_sitk, run_cli
from test_cli import assert_user_error


@pytest.fixture(scope="module")
def sarcoma_ct():
    """A real soft-tissue sarcoma CT and its GTV (IBSI / TCIA STS_001)."""
    folder = data_dir() / "sts" / "STS_001"
    return folder / "CT_image.nii.gz", folder / "CT_mask.nii.gz"


def test_cli_ibsi_preset_on_a_real_ct(sarcoma_ct, tmp_path):
    out = tmp_path / "features.csv"
    done = run_cli("extract", *sarcoma_ct, "--params", "ibsi-C", "-o", out)
    assert done.returncode == 0, done.stderr
    rows = read_csv(out)
    assert all(r["feature"] == r["ibsi_tag"] for r in rows)
    by_tag = {r["ibsi_tag"]: float(r["value"]) for r in rows}
    direct = compute_features(read_sitk(sarcoma_ct[0]), read_sitk(sarcoma_ct[1]), CONFIGURATIONS["C"]).values
    assert by_tag.keys() == direct.keys() and len(by_tag) == 215
    # Moran's I and Geary's C are sums over FFT convolutions; pocketfft's SIMD path depends on the
    # arrays' memory alignment, which differs between processes, so those two agree to rounding only.
    fft_sums = {"morph_moran_i", "morph_geary_c"}
    for tag, value in direct.items():
        if tag in fft_sums:
            assert by_tag[tag] == pytest.approx(value, rel=1e-12), tag
        else:
            assert by_tag[tag] == value or (math.isnan(value) and math.isnan(by_tag[tag])), tag
    assert {r["feature_class"] for r in rows} == {"morphology", "local_intensity", "statistics", "histogram", "ivh",
                                                  "glcm", "glrlm", "glszm", "gldzm", "ngtdm", "ngldm"}
    provenance = (tmp_path / "features.provenance.json").read_text()
    assert '"engine": "ibsi"' in provenance and '"bin_width": 25' in provenance and "int_mask_vox_count_reseg_roi" in provenance


def test_engine_option_maps_a_pyradiomics_parameter_file(brain1, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("featureClass:\n  glcm:\n  firstorder:\nsetting:\n  binWidth: 25\n  resegmentRange: [0]\n")
    done = run_cli("extract", *brain1, "--params", params, "--engine", "ibsi", "-o", tmp_path / "f.csv")
    assert done.returncode == 0, done.stderr
    classes = {r["feature_class"] for r in read_csv(tmp_path / "f.csv")}
    assert classes == {"glcm", "statistics", "histogram", "ivh", "local_intensity"}
    settings, families = load_settings(str(params), engine="ibsi").ibsi()
    assert settings.bin_width == 25 and settings.resegment_range == (0.0, None) and settings.dimensions == ("3D",)


def test_additional_info_false_leaves_the_diagnostics_out(brain1, tmp_path):
    """pyradiomics' ``additionalInfo: false`` in a parameter file run with the IBSI engine (or ``diagnostics: false``
    in an ``ibsi:`` section): the same feature values, no IBSI diagnostics in the provenance."""
    rows, provenances = {}, {}
    for info in ("true", "false"):
        params = tmp_path / f"info-{info}.yaml"
        params.write_text(f"setting:\n  binWidth: 25\n  additionalInfo: {info}\n")
        assert load_settings(str(params), engine="ibsi").ibsi()[0].diagnostics is (info == "true")
        out = tmp_path / f"info-{info}.csv"
        done = run_cli("extract", *brain1, "--params", params, "--engine", "ibsi", "-o", out)
        assert done.returncode == 0, done.stderr
        rows[info] = [(r["feature"], r["value"]) for r in read_csv(out)]
        provenances[info] = (tmp_path / f"info-{info}.provenance.json").read_text()
    assert rows["false"] == rows["true"] and len(rows["true"]) > 100
    assert "int_mask_vox_count_reseg_roi" in provenances["true"]
    assert "int_mask_vox_count_reseg_roi" not in provenances["false"] and '"diagnostics": false' in provenances["false"]
    section = tmp_path / "section.yaml"
    section.write_text("engine: ibsi\nibsi:\n  diagnostics: false\n")
    assert load_settings(str(section)).ibsi()[0].diagnostics is False


def test_logic_with_the_ibsi_engine(brain1, scene):
    logic = ExtractionLogic(scene)
    volume = logic.load_volume(brain1[0])
    table = logic.extract(volume, logic.load_segmentation(brain1[1], volume), engine="ibsi")
    values = {v.ibsi_tag: v.value for v in logic.feature_values(table)}
    direct = extract(read_sitk(brain1[0]), read_sitk(brain1[1]), {"Label_1": 1}, load_settings(None, engine="ibsi"))
    assert values == {v.ibsi_tag: v.value for v in direct.values}
    assert logic.provenance(table)["engine"] == "ibsi"


@pytest.mark.parametrize("section, message", [
    ("bin_width: 0", "bin width must be greater than zero"),
    ("discretisation: FBN\n  bin_number: 1", "bin number must be 2 or more"),
    ("resegment_range: [400, -500]", "re-segmentation range is inverted"),
    ("interpolation: quadratic\n  new_spacing: [1, 1, 1]", "Unknown interpolation 'quadratic'"),
    ("dimensions: [4D]", "dimensions must be some of 2D, 2.5D, 3D"),
    ("bin_widht: 25", "Unknown setting 'bin_widht' in section 'ibsi'"),
    ("diagnostics: sometimes", "Invalid value 'sometimes' for setting 'diagnostics' in section 'ibsi'"),
    ("families: [glcm, textures]", "Unknown IBSI families textures"),
    # bad image filters
    ("image_filter: {filter: sharpen}\n  families: [statistics]", "sharpen"),
    ("image_filter: {filter: mean, support: 301, boundary: mirror}\n  families: [statistics]", "larger than the image"),
    ("image_filter: {filter: mean, support: 5, boundary: sideways}\n  families: [statistics]", "sideways"),
])
def test_bad_ibsi_settings_are_refused_before_any_work(brain1, tmp_path, section, message):
    params = tmp_path / "bad.yaml"
    params.write_text(f"engine: ibsi\nibsi:\n  {section}\n")
    out = tmp_path / "f.csv"
    assert_user_error(run_cli("extract", *brain1, "--params", params, "-o", out), message)
    assert not out.exists()


def test_one_voxel_region_gives_nan_with_reasons_not_an_exception(brain1):
    image, mask = read_sitk(brain1[0]), read_sitk(brain1[1])
    single = sitk.Image(mask.GetSize(), sitk.sitkUInt8)
    single.CopyInformation(mask)
    single[180, 100, 14] = 1
    result = compute_features(image, single, load_settings(None, engine="ibsi").ibsi()[0])
    assert result.values["stat_mean"] == image[180, 100, 14]
    undefined = [tag for tag, value in result.values.items() if math.isnan(value)]
    assert "morph_pca_elongation" in undefined and "cm_corr_3D_avg" in undefined
    assert result.notes and all(isinstance(note, str) for note in result.notes)


def test_pyradiomics_engine_refuses_an_ibsi_section():
    with pytest.raises(RadiomicsLabError, match="only the IBSI engine reads; use --engine ibsi"):
        load_settings("ibsi-A", engine="pyradiomics")
