"""The README's console examples, pasted as printed into a headless Python.

The README sections "Python console (desktop Slicer or headless)" and "Scripting from the Slicer Python console"
tell the user to start ``.venv/bin/python`` in the repository root (``RADIOMICSLAB_DATA`` only when the data is not
in ``../shared/data``) and paste the blocks. This test does exactly that: a fresh Python (this one's interpreter)
started in the repository root with this environment, every ```python block typed into a Python console line by
line (``code.InteractiveConsole``: the interactive interpreter's rules, e.g. a blank line ends an indented block)
and Enter pressed after it; the text is neither edited nor wrapped. The blocks of the first section share one
console, in order; the examples of the second say they stand alone, so each gets a fresh console (namespace).
A block fails the test when a statement raises or does not compile.

A block whose paragraph above starts with "Desktop Slicer only:" is not run (it needs the application) but is
checked line by line by the same console without running; any other block that uses desktop-only globals
(``slicer.mrmlScene``, ``slicer.util``, ``slicer.app``, ``slicer.modules``) in its code (comments aside) fails the
test.

After an example has run, a probe reads what it made from its console's namespace (in the same process) and
returns plain values; the tests compare those, and what the example printed, with values obtained another way:
pyradiomics' baseline files and pyradiomics on the files, the documented kernel mean, SimpleITK's overlap measures
and distance map, the known synthetic follow-up of the delta example.
"""

import ast
import code
import contextlib
import csv
import io
import json
import os
import re
import subprocess
import sys
import tokenize
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONSOLE = "## Python console (desktop Slicer or headless)"
SCRIPTING = "## Scripting from the Slicer Python console"
CONSOLE_UNIT = "Python console"
SCRIPTING_EXAMPLES = ["Extraction", "Feature maps", "Observers", "Habitats and a peritumoral ring",
                      "Delta-radiomics (two timepoints as Sequences)", "Cohort (batch on a Dask LocalCluster)",
                      "Study (nested cross-validation into the scene)"]
DESKTOP_MARKER = "Desktop Slicer only:"
DESKTOP_GLOBALS = re.compile(r"\bslicer\.(mrmlScene|util\b|app\b|modules\b)")
TIMEOUT_S = 900


# The README's blocks -----------------------------------------------------------------------------
@dataclass
class Block:
    unit: str          # "Python console" or the example's sub-heading
    line: int          # README line of the block's first line of code
    code: str
    desktop_only: bool


def readme_blocks() -> tuple[list[Block], list[str]]:
    """The ```python blocks of the two sections, in order; and any other code fences found there."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, other_fences = [], []
    for heading in (CONSOLE, SCRIPTING):
        assert heading in lines, f"{README.name} has no section '{heading}'"
        start = lines.index(heading) + 1
        end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
        unit = CONSOLE_UNIT if heading == CONSOLE else f"{heading[3:]} (introduction)"
        i = start
        while i < end:
            line = lines[i]
            if line.startswith("### "):
                unit = line[4:].strip()
            elif line.startswith("```"):
                close = next((j for j in range(i + 1, end) if lines[j].strip() == "```"), None)
                assert close is not None, f"README line {i + 1}: code fence never closed"
                if line.strip() != "```python":
                    other_fences.append(f"README line {i + 1}: {line.strip()}")
                else:
                    paragraph, j = [], i - 1
                    while j > start and not lines[j].strip():
                        j -= 1
                    while j > start and lines[j].strip() and not lines[j].startswith("#"):
                        paragraph.insert(0, lines[j].strip())
                        j -= 1
                    blocks.append(Block(unit, i + 2, "\n".join(lines[i + 1:close]) + "\n",
                                        " ".join(paragraph).startswith(DESKTOP_MARKER)))
                i = close
            i += 1
    return blocks, other_fences


def units() -> dict[str, list[Block]]:
    found = {}
    for block in readme_blocks()[0]:
        found.setdefault(block.unit, []).append(block)
    return found


# Pasting into a console (runs in the child process) ----------------------------------------------
class _Console(code.InteractiveConsole):
    """The interactive interpreter, its error reports kept (they would be written to stderr)."""

    def __init__(self, namespace, filename, run=True):
        super().__init__(namespace, filename)
        self.errors = []
        self.run = run

    def write(self, data):
        self.errors.append(data)

    def runcode(self, compiled):
        if self.run:
            super().runcode(compiled)


class _Tee(io.StringIO):
    def write(self, text):
        sys.__stdout__.write(text)
        return super().write(text)


def paste(block: dict, namespace: dict, run: bool = True) -> tuple[str, str | None]:
    """Type a block into a console line by line, then Enter: (what it printed, the error or None)."""
    console = _Console(namespace, f"README.md line {block['line']}", run)
    printed = _Tee()
    first = block["line"]
    with contextlib.redirect_stdout(printed):
        for number, line in enumerate([*block["code"].splitlines(), ""], start=block["line"]):
            if not console.buffer:
                first = number
                console.filename = f"README.md, the statement at line {first}"
            console.push(line)
            if console.errors:
                return printed.getvalue(), f"README.md, the statement at line {first}:\n{''.join(console.errors)}"
    if console.buffer:
        return printed.getvalue(), f"README.md line {first}: the block ends inside a statement"
    return printed.getvalue(), None


def child_main(request_path: str, result_path: str) -> None:
    """Paste each unit's blocks into a fresh console (one namespace per unit), then probe what it made."""
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    results = {}
    for unit in request["units"]:
        record = results[unit["name"]] = {"outputs": [], "error": None, "probe": None}
        namespace = {"__name__": "__main__", "__doc__": None}
        print(f"\n===== {unit['name']}", flush=True)
        for block in unit["blocks"]:
            output, error = paste(block, namespace)
            record["outputs"].append(output)
            if error:
                record["error"] = error
                break
        if record["error"] is None and unit["name"] in PROBES:
            try:
                record["probe"] = PROBES[unit["name"]](namespace)
            except Exception:  # noqa: BLE001 - reported to the test
                record["error"] = f"probe of '{unit['name']}' failed:\n{traceback.format_exc()}"
        Path(result_path).write_text(json.dumps(results), encoding="utf-8")


_runs = {}


def pasted(unit: str, tmp_path_factory) -> dict:
    """What the unit's blocks printed and made, from one child process per README section (cached)."""
    section = CONSOLE if unit == CONSOLE_UNIT else SCRIPTING
    if section not in _runs:
        if not (data_dir() / "pyradiomics_cases").is_dir():
            pytest.fail(f"Reference data not found in {data_dir()}; set RADIOMICSLAB_DATA to the shared data folder.")
        names = [CONSOLE_UNIT] if section == CONSOLE else SCRIPTING_EXAMPLES
        folder = tmp_path_factory.mktemp("readme_console")
        request = {"units": [{"name": name, "blocks": [asdict(b) for b in units().get(name, []) if not b.desktop_only]}
                             for name in names]}
        (folder / "request.json").write_text(json.dumps(request), encoding="utf-8")
        child = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('readme_console', "
                 f"{str(Path(__file__).resolve())!r}); module = importlib.util.module_from_spec(spec); "
                 "spec.loader.exec_module(module); module.child_main(*sys.argv[1:])")
        process = subprocess.run([sys.executable, "-c", child, str(folder / "request.json"),
                                  str(folder / "result.json")],
                                 cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=TIMEOUT_S)
        result = folder / "result.json"
        results = json.loads(result.read_text(encoding="utf-8")) if result.is_file() else {}
        _runs[section] = (process, results)
    process, results = _runs[section]
    record = results.get(unit)
    assert record is not None, (f"The console process ended (exit status {process.returncode}) before '{unit}':\n"
                                f"{process.stdout[-4000:]}\n{process.stderr[-4000:]}")
    assert record["error"] is None, f"README example '{unit}':\n{record['error']}\n{process.stderr[-3000:]}"
    return record


# Helpers -----------------------------------------------------------------------------------------
def data_dir() -> Path:
    from RadiomicsLabLib.data import data_dir as folder

    return folder()


def sample_case(name):
    from RadiomicsLabLib.data import sample_case as case

    return case(name)


def baseline(feature: str, case: str) -> float:
    """pyradiomics' own reference value (``baseline_<class>.csv`` of the shared data)."""
    family = feature.split("_")[1]
    with open(data_dir() / "pyradiomics_cases" / "baseline" / f"baseline_{family}.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["featureName"] == feature:
                return float(row[case])
    raise KeyError(feature)


def pyradiomics_features(image, label, settings=None) -> dict:
    from radiomics import featureextractor

    extractor = featureextractor.RadiomicsFeatureExtractor(settings or {})
    values = extractor.execute(str(image), str(label), label=1)
    return {k: float(np.asarray(v)) for k, v in values.items() if not k.startswith("diagnostics_")}


def in_scene(scene, *nodes) -> bool:
    return all(node is not None and scene.GetNodeByID(node.GetID()) is node for node in nodes)


def mask_array(logic, segmentation, segment, volume) -> np.ndarray:
    import SimpleITK as sitk

    from RadiomicsLabLib.mrml.convert import segment_to_sitk

    return sitk.GetArrayFromImage(segment_to_sitk(segmentation, logic.resolve_segments(segmentation, [segment])[0],
                                                  volume)) > 0


def lines(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines() if line.strip()]


# Probes: what an example made, read in the child process from its namespace ----------------------
def probe_console(ns) -> dict:
    from RadiomicsLabLib.mrml.app import default_scene

    scene = ns["scene"]
    return {"default_scene": scene is default_scene(),
            "in_scene": in_scene(scene, ns["volume"], ns["segmentation"], ns["table"]),
            "background_values": {v.feature: v.value for v in ns["logic"].feature_values(ns["table"])}}


def probe_extraction(ns) -> dict:
    return {"in_scene": in_scene(ns["scene"], ns["volume"], ns["segmentation"], ns["table"]),
            "result": ns["result"], "volume_name": ns["volume"].GetName(),
            "provenance_volume": ns["provenance"]["inputs"]["volume"]}


def probe_feature_maps(ns) -> dict:
    """firstorder_Mean at every tumour voxel against the mean of the tumour voxels of its 3 x 3 x 3 cube
    (pyradiomics' masked kernel), computed with scipy; glcm_Contrast inside and outside the tumour."""
    import SimpleITK as sitk
    from scipy import ndimage

    from RadiomicsLabLib.mrml.convert import volume_to_sitk
    from RadiomicsLabLib.mrml.featuremaps import map_on_volume_grid

    result = ns["result"]
    image, label = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))).astype(np.float64) for p in sample_case("brain1"))
    inside = label == 1
    cube = np.ones((3, 3, 3))
    sums = ndimage.convolve(np.where(inside, image, 0.0), cube, mode="constant")
    counts = ndimage.convolve(inside.astype(np.float64), cube, mode="constant")
    expected = sums[inside] / counts[inside]
    # the map nodes cover Label_1's bounding box; on the volume's whole grid (the README's map_on_volume_grid)
    # they index like the image
    mean = sitk.GetArrayFromImage(map_on_volume_grid(result.maps["firstorder_Mean"]))[inside]
    contrast = sitk.GetArrayFromImage(ns["whole"])
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(inside))
    node_voxels = sitk.GetArrayFromImage(volume_to_sitk(ns["contrast"]))
    return {"maps": sorted(result.maps), "in_scene": in_scene(ns["scene"], *result.maps.values(), result.table),
            "node_is_the_box": node_voxels.shape == inside[box].shape
            and np.array_equal(node_voxels, contrast[box], equal_nan=True),
            "mean_map_max_rel_error": float(np.max(np.abs(mean - expected) / np.abs(expected))),
            "kernel_mean_over_tumour": float(expected.mean()),
            "contrast_defined_inside": bool(np.isfinite(contrast[inside]).all()),
            "contrast_nan_outside": bool(np.isnan(contrast[~inside]).all()),
            "contrast_max": float(np.nanmax(contrast)),
            "coloured": ns["contrast"].GetDisplayNode().GetColorNode() is not None}


def probe_observers(ns) -> dict:
    import SimpleITK as sitk

    result, logic = ns["result"], ns["logic"]
    masks = result.study.lesions[0].lesion.masks
    pairs = []
    for row in logic.table_rows(result.agreement):
        overlap = sitk.LabelOverlapMeasuresImageFilter()
        overlap.Execute(masks[row["observer_a"]], masks[row["observer_b"]])
        pairs.append({"a": row["observer_a"], "b": row["observer_b"], "dice": row["dice"], "jaccard": row["jaccard"],
                      "dice_sitk": overlap.GetDiceCoefficient(), "jaccard_sitk": overlap.GetJaccardCoefficient()})
    voxels = {name: int((sitk.GetArrayFromImage(mask) > 0).sum()) for name, mask in masks.items()}
    consensus = ns["consensus"]
    return {"observers": list(masks), "pairs": pairs, "voxels": voxels,
            "in_scene": in_scene(the_scene(), consensus, result.agreement, result.features, result.icc),
            "consensus_segments": consensus.GetSegmentation().GetNumberOfSegments()}


def probe_habitats(ns) -> dict:
    """The ring against SimpleITK's distance map of the tumour: outside it and within 5 mm."""
    import SimpleITK as sitk

    from RadiomicsLabLib.mrml import scenarios

    logic, result, gtv, ct = ns["logic"], ns["result"], ns["gtv"], ns["channels"]["CT"]
    rows = logic.table_rows(result.statistics)
    (habitats,) = result.segmentations
    tumour = mask_array(logic, gtv, "Label_1", ct)
    ring = mask_array(logic, gtv, ns["ring"], ct)
    reference = sitk.ReadImage(str(data_dir() / "sts" / "STS_003" / "CT_mask.nii.gz"))
    expected = ~tumour & (scenarios._distance_mm(tumour, reference) <= 5.0)
    return {"in_scene": in_scene(the_scene(), habitats, result.statistics, result.fractions_chart),
            "habitat_segments": sorted(int(h) for h in logic.habitat_segments(habitats)),
            "non_empty_habitats": sorted(int(row["habitat"]) for row in rows if row["voxels"] > 0),
            "ring_is_the_margin": bool(np.array_equal(ring, expected)), "ring_voxels": int(ring.sum()),
            "feature_segments": sorted({v.segment for v in logic.feature_values(ns["features"])}),
            "segments": sorted(["Label_1", gtv.GetSegmentation().GetSegment(ns["ring"]).GetName()])}


def probe_delta(ns) -> dict:
    """The registration found the 5 mm shift: the GTV's centre maps to itself moved by (5, 0, 0) mm."""
    import SimpleITK as sitk

    from RadiomicsLabLib.mrml.convert import transform_node_to_sitk
    from RadiomicsLabLib.registration import affine_matrix

    study, nodes = ns["study"], ns["nodes"]
    mask = sitk.ReadImage(str(data_dir() / "sts" / "STS_002" / "CT_mask.nii.gz"))
    inside = sitk.GetArrayFromImage(mask) > 0
    matrix = affine_matrix(transform_node_to_sitk(nodes.transforms[("STS_002", "week6")]))
    centre = np.array(mask.TransformContinuousIndexToPhysicalPoint(
        [float(c) for c in np.argwhere(inside).mean(axis=0)[::-1]]))
    return {"in_scene": in_scene(the_scene(), study, nodes.table),
            "timepoints": study.GetMasterSequenceNode().GetNumberOfDataNodes(),
            "shift_error_mm": float(np.linalg.norm(matrix[:3, :3] @ centre + matrix[:3, 3] - (centre + (5.0, 0, 0))))}


def probe_cohort(ns) -> dict:
    summary, status, result = ns["summary"], ns["status"], ns["result"]
    table = result.GetTable()
    rows = {}
    for r in range(result.GetNumberOfRows()):
        rows[table.GetColumnByName("id").GetValue(r)] = {
            table.GetColumnName(c): table.GetColumn(c).GetValue(r) for c in range(table.GetNumberOfColumns())}
    return {"counts": [summary.computed, summary.failed, summary.invalid], "rows": rows,
            "in_scene": in_scene(the_scene(), status, result)}


def probe_study(ns) -> dict:
    results = ns["results"]
    return {"metrics": ns["logic"].table_rows(results.metrics), "tables": {k: str(v) for k, v in ns["tables"].items()},
            "rows": ns["predicted"].GetNumberOfRows(),
            "in_scene": in_scene(the_scene(), results.metrics, results.main_chart, ns["predicted"])}


def the_scene():
    """The scene the examples used: ``default_scene()``, the process's headless scene here."""
    from RadiomicsLabLib.mrml.app import default_scene

    return default_scene()


PROBES = {CONSOLE_UNIT: probe_console, "Extraction": probe_extraction, "Feature maps": probe_feature_maps,
          "Observers": probe_observers, "Habitats and a peritumoral ring": probe_habitats,
          "Delta-radiomics (two timepoints as Sequences)": probe_delta,
          "Cohort (batch on a Dask LocalCluster)": probe_cohort,
          "Study (nested cross-validation into the scene)": probe_study}


# The README as written ---------------------------------------------------------------------------
def test_the_sections_have_the_examples_and_say_how_to_run_them():
    found = units()
    assert list(found) == [CONSOLE_UNIT, *SCRIPTING_EXAMPLES], "one console section, then one example per workflow"
    assert not readme_blocks()[1], f"only ```python blocks belong in these sections: {readme_blocks()[1]}"
    text = README.read_text(encoding="utf-8")
    sections = text.split(CONSOLE, 1)[1].split("\n## Desktop Slicer", 1)[0]
    for needed in (".venv/bin/python", "repository root", "RADIOMICSLAB_DATA", "slicer.mrmlScene",
                   'slicer.util.getModuleLogic("RadiomicsLab")', 'if __name__ == "__main__":', "BackgroundRun(",
                   DESKTOP_MARKER):
        assert needed in sections, f"the README's console sections should mention {needed}"
    for unit, blocks in found.items():
        assert any(not b.desktop_only for b in blocks), f"'{unit}' has no block that runs headless"


def code_without_comments(source: str) -> str:
    """The block's code with its comments removed (a comment may say what the line is in desktop Slicer)."""
    lines = source.splitlines()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, column = token.start
            lines[row - 1] = lines[row - 1][:column]
    return "\n".join(lines) + "\n"


def test_desktop_only_globals_appear_only_in_marked_blocks_and_those_blocks_compile():
    for block in readme_blocks()[0]:
        used = DESKTOP_GLOBALS.search(code_without_comments(block.code))
        assert block.desktop_only or not used, (
            f"README line {block.line}: '{used and used.group(0)}' does not exist headless; give the headless form, "
            f"or put this block under a paragraph starting '{DESKTOP_MARKER}'")
        if block.desktop_only:
            compile(block.code, f"README.md line {block.line}", "exec")
            _, error = paste(asdict(block), {}, run=False)   # also pastes line by line into a console
            assert error is None, error


def test_console_section(tmp_path_factory):
    record = pasted(CONSOLE_UNIT, tmp_path_factory)
    extraction, options, background, core = record["outputs"]
    ((count, mean),) = lines(extraction)
    assert int(count) == 107 and float(mean) == pytest.approx(baseline("original_firstorder_Mean", "brain1"),
                                                              rel=1e-12, abs=0)
    image_types, *echoed, files = options.splitlines()   # the console echoes the paths export and save return
    assert len(echoed) == 2 and "features.provenance.json" in echoed[0] and "study.mrb" in echoed[1]
    assert ast.literal_eval(image_types) == {"Original": {}, "LoG": {"sigma": [1.0, 3.0]}}
    assert ast.literal_eval(files) == ["features.csv", "features.provenance.json", "study.mrb"]
    state, background_mean = background.split()
    assert state == "running" and float(background_mean) == float(mean)
    assert float(core) == pytest.approx(baseline("original_glcm_Contrast", "brain1"), rel=1e-12, abs=0)
    probe = record["probe"]
    assert probe["default_scene"] and probe["in_scene"]
    assert probe["background_values"] == pyradiomics_features(*sample_case("brain1"),
                                                              {"featureClass": {"firstorder": []}})


def test_extraction_example_equals_pyradiomics_on_the_files(tmp_path_factory):
    record = pasted("Extraction", tmp_path_factory)
    probe = record["probe"]
    contrast, volume = record["outputs"][0].split()
    assert probe["in_scene"]
    assert probe["result"] == pyradiomics_features(*sample_case("brain1"))   # every feature, exactly
    assert float(contrast) == probe["result"]["original_glcm_Contrast"]
    assert float(contrast) == pytest.approx(baseline("original_glcm_Contrast", "brain1"), rel=1e-12, abs=0)
    assert volume == probe["volume_name"] == probe["provenance_volume"] == "brain1_image"


def test_feature_maps_example_are_the_kernel_values(tmp_path_factory):
    record = pasted("Feature maps", tmp_path_factory)
    probe = record["probe"]
    assert probe["maps"] == ["firstorder_Mean", "glcm_Contrast"] and probe["in_scene"] and probe["coloured"]
    assert probe["node_is_the_box"]
    assert probe["mean_map_max_rel_error"] < 1e-12
    assert probe["contrast_defined_inside"] and probe["contrast_nan_outside"] and probe["contrast_max"] > 0
    printed = {feature: (float(mean), float(median)) for feature, mean, median in lines(record["outputs"][0])}
    assert sorted(printed) == ["firstorder_Mean", "glcm_Contrast"]
    assert printed["firstorder_Mean"][0] == pytest.approx(probe["kernel_mean_over_tumour"], rel=1e-12)


def test_observers_example_dice_equals_simpleitk(tmp_path_factory):
    record = pasted("Observers", tmp_path_factory)
    probe = record["probe"]
    assert probe["observers"] == ["alice", "p1_grow", "p2_shift"] and probe["in_scene"]
    assert len(probe["pairs"]) == 3
    for pair in probe["pairs"]:
        assert pair["dice"] == pytest.approx(pair["dice_sitk"], abs=1e-12)
        assert pair["jaccard"] == pytest.approx(pair["jaccard_sitk"], abs=1e-12)
    printed = lines(record["outputs"][0])
    assert [(a, b, float(dice)) for a, b, dice, _ in printed] == [(p["a"], p["b"], p["dice"]) for p in probe["pairs"]]
    assert all(0.5 < float(dice) < 1 and float(hd95) > 0 for _, _, dice, hd95 in printed)
    assert probe["voxels"]["p1_grow"] < probe["voxels"]["alice"]   # the 2 mm erosion is smaller
    assert probe["consensus_segments"] == 2


def test_habitats_example_fills_the_tumour_and_the_ring_is_the_5_mm_margin(tmp_path_factory):
    record = pasted("Habitats and a peritumoral ring", tmp_path_factory)
    probe = record["probe"]
    printed = [line.rsplit(" ", 2) for line in record["outputs"][0].splitlines() if line.strip()]
    assert len(printed) == 3 and all(name for name, _, _ in printed)
    assert sum(float(fraction) for _, _, fraction in printed) == pytest.approx(1.0, abs=1e-12)
    assert all(float(volume) >= 0 for _, volume, _ in printed)
    assert probe["in_scene"] and probe["habitat_segments"] == probe["non_empty_habitats"]
    assert probe["ring_is_the_margin"] and probe["ring_voxels"] > 0
    assert probe["feature_segments"] == probe["segments"]


def test_delta_example_volume_change_is_the_erosion_and_the_shift_is_found(tmp_path_factory):
    import SimpleITK as sitk

    from RadiomicsLabLib.mrml import scenarios

    record = pasted("Delta-radiomics (two timepoints as Sequences)", tmp_path_factory)
    probe = record["probe"]
    assert probe["in_scene"] and probe["timepoints"] == 2
    assert probe["shift_error_mm"] < 1.0
    printed = {feature: (float(value), float(delta)) for feature, value, delta in lines(record["outputs"][0])}
    assert sorted(printed) == ["original_firstorder_Mean", "original_shape_VoxelVolume"]
    mask = sitk.ReadImage(str(data_dir() / "sts" / "STS_002" / "CT_mask.nii.gz"))
    inside = sitk.GetArrayFromImage(mask) > 0
    eroded = inside & (scenarios._distance_mm(~inside, mask, beyond_grid=True) > 2.0)   # SimpleITK, not regions.grow
    volume, delta = printed["original_shape_VoxelVolume"]
    assert delta == pytest.approx(100.0 * (eroded.sum() - inside.sum()) / inside.sum(), rel=1e-9)
    assert volume == pytest.approx(eroded.sum() * np.prod(mask.GetSpacing()), rel=1e-9)


def test_cohort_example_equals_pyradiomics_on_each_case(tmp_path_factory):
    record = pasted("Cohort (batch on a Dask LocalCluster)", tmp_path_factory)
    probe = record["probe"]
    assert probe["counts"] == [2, 0, 0] and probe["in_scene"]
    counts, *cases = lines(record["outputs"][0])
    assert counts == ["2", "0", "2"]
    assert [case for case, _ in cases] == ["brain2", "breast1"] == sorted(probe["rows"])
    for case, mean in cases:
        assert float(mean) == pytest.approx(baseline("original_firstorder_Mean", case), rel=1e-12, abs=0)
        expected = pyradiomics_features(*sample_case(case))
        assert {name: float(probe["rows"][case][name]) for name in expected} == expected, case


def test_study_example_equals_radiomicslab_study_on_the_files(tmp_path_factory):
    """The console's metrics table is the metrics.csv that the study core writes for the same files and seed."""
    record = pasted("Study (nested cross-validation into the scene)", tmp_path_factory)
    probe = record["probe"]
    assert probe["in_scene"] and probe["rows"] == 569
    from RadiomicsLabLib.study.run import run_study

    out = tmp_path_factory.mktemp("study-core") / "out"
    run_study(probe["tables"]["features"], probe["tables"]["clinical"], out, outcome="diagnosis",
                       positive="malignant", batch="site", covariates=["mean radius"], repeats=1, outer=3, inner=3,
                       workers=1)
    with open(out / "metrics.csv", newline="") as handle:
        expected = list(csv.DictReader(handle))
    assert [{k: str(v) for k, v in row.items()} for row in probe["metrics"]] == expected
    primary, auc = lines(record["outputs"][0])[1]
    assert primary == "clinical+logistic_l1" and auc == next(
        r["estimate"] for r in expected if r["model"] == primary and r["metric"] == "auc")
