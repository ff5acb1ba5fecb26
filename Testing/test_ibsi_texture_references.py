"""IBSI 1 texture families (GLCM, GLRLM, GLSZM, GLDZM, NGTDM, NGLDM) against the IBSI reference values.

Every aggregation (2D, 2.5D, 3D; ``_avg`` and ``_comb`` where the family has them) on the IBSI digital
phantom (its integer intensities are the grey levels, no preprocessing) and on the CT phantom with
configurations A-E (the engine's preprocessing). The digital phantom table gives every value to 3
significant digits with tolerance 0; the pass rule is the project's (``ReferenceValue.passes``), which
accepts a value that rounds to the reference. Family-specific checks are in test_ibsi_glcm_glrlm.py and
test_ibsi_zones.py.
"""

import pytest
from conftest import failing_reference_rows

from RadiomicsLabLib.ibsi.config import IbsiSettings
from RadiomicsLabLib.ibsi.features import gldzm, glcm, glrlm, glszm, ngldm, ngtdm
from RadiomicsLabLib.ibsi.reference import digital_phantom_roi

FAMILIES = {"cm": glcm, "rlm": glrlm, "szm": glszm, "dzm": gldzm, "ngt": ngtdm, "ngl": ngldm}
SETTINGS = IbsiSettings(dimensions=("2D", "2.5D", "3D"), discretisation="none")
#: reference rows per family: on the digital phantom, and on the CT phantom in configurations A-B / C-E (2D rows only in A-B)
DIGITAL_PHANTOM_ROWS = {"cm": 150, "rlm": 96, "szm": 48, "dzm": 48, "ngt": 15, "ngl": 51}
CT_PHANTOM_ROWS = {"AB": 164 + 108, "CDE": 82 + 54}


@pytest.mark.parametrize("prefix", FAMILIES)
def test_digital_phantom_reference(prefix):
    roi = digital_phantom_roi()
    values = FAMILIES[prefix].compute(roi, SETTINGS)
    rows, failing = failing_reference_rows(values, "digital_phantom", prefix)
    assert len(rows) == DIGITAL_PHANTOM_ROWS[prefix]
    assert failing == [], f"{len(failing)} of {len(rows)} {prefix} values differ: {failing}"
    assert list(values) == list(FAMILIES[prefix].FEATURES)  # one value per described tag, in its order
    assert roi.notes == []


@pytest.mark.parametrize("configuration", ["A", "B", "C", "D", "E"])
def test_ct_phantom_configurations(configuration):
    """IBSI 1 CT phantom, configurations A-E (the engine's preprocessing), every texture reference row."""
    from RadiomicsLabLib.ibsi.configurations import CONFIGURATIONS
    from RadiomicsLabLib.ibsi.engine import compute_features
    from RadiomicsLabLib.ibsi.reference import ibsi1_images

    image, mask = ibsi1_images("ct_phantom")
    families = ("glcm", "glrlm", "glszm", "gldzm", "ngtdm", "ngldm")
    result = compute_features(image, mask, CONFIGURATIONS[configuration], families=families)
    rows, failing = failing_reference_rows(result.values, f"config_{configuration}", FAMILIES)
    assert len(rows) == CT_PHANTOM_ROWS["AB" if configuration in "AB" else "CDE"]
    assert failing == [], f"{len(failing)} of {len(rows)} values differ in configuration {configuration}: {failing}"
    assert result.notes == []
