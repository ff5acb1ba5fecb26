"""Settings: presets, pyradiomics parameter files, image types, and clear errors naming the key."""

import pytest
from radiomics import featureextractor

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.extraction import extract
from RadiomicsLabLib.settings import load_settings, parse_image_types, preset_names

from conftest import read_sitk


def test_default_preset_is_exactly_pyradiomics_default(brain1):
    image, label = brain1
    ours = extract(read_sitk(image), read_sitk(label), {"Label_1": 1}, "pyradiomics-default").as_dict("Label_1")
    theirs = featureextractor.RadiomicsFeatureExtractor().execute(str(image), str(label), label=1)
    theirs = {k: float(v) for k, v in theirs.items() if not k.startswith("diagnostics_")}
    assert ours == theirs
    assert len(ours) == 107


@pytest.mark.parametrize("name", preset_names())
def test_every_shipped_preset_passes_all_checks(name):
    from RadiomicsLabLib.settings import PRESETS_DIR, _read_yaml

    as_dict = load_settings(_read_yaml(PRESETS_DIR / f"{name}.yaml"))  # a dict gets every check presets skip at run time
    assert as_dict.engine == load_settings(name).engine
    if as_dict.engine == "ibsi":
        assert as_dict.ibsi() == load_settings(name).ibsi()


def test_presets_are_listed_and_loadable():
    assert "pyradiomics-default" in preset_names()
    assert load_settings(None).source == "pyradiomics-default"


def test_parameter_file_with_filters_matches_pyradiomics(brain1, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("imageType:\n  LoG:\n    sigma: [2.0]\nfeatureClass:\n  firstorder:\nsetting:\n  binWidth: 10\n")
    image, label = brain1
    ours = extract(read_sitk(image), read_sitk(label), {"Label_1": 1}, str(params)).as_dict("Label_1")
    theirs = featureextractor.RadiomicsFeatureExtractor(str(params)).execute(str(image), str(label), label=1)
    theirs = {k: float(v) for k, v in theirs.items() if not k.startswith("diagnostics_")}
    assert ours == theirs
    assert "log-sigma-2-0-mm-3D_firstorder_Mean" in ours


def test_image_type_option_replaces_image_types():
    settings = load_settings("pyradiomics-default", ["Original", "LoG:sigma=1,3", "Wavelet:wavelet=db2;level=1"])
    assert settings.params["imageType"] == {"Original": {}, "LoG": {"sigma": [1, 3]}, "Wavelet": {"wavelet": "db2", "level": 1}}
    assert parse_image_types(["LoG:sigma=2.5"]) == {"LoG": {"sigma": [2.5]}}


@pytest.mark.parametrize("text, expected", [
    ("setting:\n  binWidht: 25\n", "Unknown setting 'binWidht' in section 'setting'"),
    ("setting:\n  binWidth: 25\n  bogusKey: 1\n", "'bogusKey'"),
    ("bogus: 1\n", "Unknown setting 'bogus' in the top level"),
    ("setting:\n  binWidth: abc\n", "Invalid value 'abc' for setting 'binWidth'"),
    ("imageType:\n  Foo: {}\n", "Image Type Foo is not recognized"),
    ("featureClass:\n  glcm: [Nope]\n", "unrecognized features: {'Nope'}"),
    ("setting: [binWidth: 25\n", "Invalid YAML"),
    ("- just\n- a list\n", "must be a mapping"),
])
def test_bad_parameter_files_name_the_problem(tmp_path, text, expected):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    with pytest.raises(RadiomicsLabError) as error:
        load_settings(str(params))
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_misspelt_setting_gets_a_suggestion(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("setting:\n  binWidht: 25\n")
    with pytest.raises(RadiomicsLabError, match="did you mean 'binWidth'"):
        load_settings(params)


def test_unknown_preset_or_missing_file():
    with pytest.raises(RadiomicsLabError, match="neither a preset .* nor an existing parameter file"):
        load_settings("no-such-preset")
