"""The bad-input suite: every subcommand of ``radiomicslab`` and the web loader fed wrong files, wrong geometry,
wrong parameters and wrong option values.

Each case of :data:`CLI_CASES` runs the real command line in this process (``RadiomicsLabLib.cli.main(argv)``,
exactly what the console script calls; stderr and stdout captured at the file-descriptor level, so ITK's and
the libraries' own output counts too) and asserts: exit status 2, exactly one line on stderr starting
``radiomicslab: error:`` and naming what was wrong (a cohort file's problems are listed under it, one indented
line each, by design of the batch layer), no traceback, nothing on stdout, every input file's SHA-256
unchanged, and nothing new in the working folder (where the outputs would go) or in the temporary folder.
Cases in :data:`KNOWN_ISSUES` fail today in modules others are changing; they are marked xfail with the fix.
:func:`test_in_process_runs_match_the_console_script` checks, on a few cases, that the installed console script
in a fresh process prints the same line and exit status.

Each case of :data:`LOADER_CASES` calls the web loader (``RadiomicsLabLib.web.loader``) the way the browser's
requests do and asserts: a :class:`RadiomicsLabError` whose message is one line with what to do, the data
folder and the file outside it unchanged, the scene unchanged, and no upload folder left behind.

Cut-short files, outputs that are inputs, wrong output suffixes and ``-o -`` are the other suite's
(``test_bad_inputs_files.py``); the cohort modes of ``delta`` and ``habitats`` are only checked for a missing
cohort file here (they are covered by their own tests). The inputs are the real breast1 MR case of
``pyradiomics_cases`` (45 x 120 x 21 voxels) and files made from it; each made file says how. The ``study``,
``harmonise`` and ``predict`` cases use 60 patients of scikit-learn's breast cancer table and bad variants of it
(:func:`write_study_tables`); every one of them is refused before anything is fitted. The suite prints
its count ("bad-input suite: N cases") in pytest's terminal summary.
"""

import collections
import re
import shlex
import socket
import subprocess
import tempfile
import types
import warnings
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk

from dicom_data import write_seg_independently, write_series
from pydicom.sr.codedict import codes

from RadiomicsLabLib.errors import RadiomicsLabError

from test_bad_inputs_files import snapshot  # every file and folder with its SHA-256

from conftest import CLI

#: Cases that passed in this run, by subcommand (printed in the terminal summary).
PASSED = collections.Counter()


# ---------------------------------------------------------------------------------------------------
# The inputs: the real breast1 case and files made from it
# ---------------------------------------------------------------------------------------------------
def written(image, folder, name):
    sitk.WriteImage(image, str(folder / name), True)


def like(array, reference):
    """``array`` (z, y, x) as an image on ``reference``'s grid."""
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


#: Parameter files (name: YAML text): typos, wrong types, values out of range, wrong shapes.
PARAMETER_FILES = {
    "typo_key.yaml": "setting:\n  binWidht: 25\n",
    "typo_section.yaml": "settings:\n  binWidth: 25\n",
    "binwidth_text.yaml": "setting:\n  binWidth: abc\n",
    "binwidth_0.yaml": "setting:\n  binWidth: 0\n",
    "binwidth_negative.yaml": "setting:\n  binWidth: -1\n",
    "binwidth_1e-9.yaml": "setting:\n  binWidth: 1.0e-9\n",
    "bincount_0.yaml": "setting:\n  binCount: 0\n",
    "bincount_fraction.yaml": "setting:\n  binCount: 2.5\n",
    "spacing_negative.yaml": "setting:\n  resampledPixelSpacing: [-1, 1, 1]\n",
    "spacing_two_values.yaml": "setting:\n  resampledPixelSpacing: [1, 1]\n",
    "spacing_text.yaml": "setting:\n  resampledPixelSpacing: abc\n",
    "unknown_image_type.yaml": "imageType:\n  Foo: {}\n",
    "log_sigma_negative.yaml": "imageType:\n  LoG:\n    sigma: [-1.0]\n",
    "log_sigma_text.yaml": "imageType:\n  LoG:\n    sigma: [abc]\n",
    "log_without_sigma.yaml": "imageType:\n  LoG: {}\n",
    "log_sigma_empty.yaml": "imageType:\n  LoG:\n    sigma: []\n",
    "unknown_feature_class.yaml": "featureClass:\n  glcmm: []\n",
    "unknown_feature.yaml": "featureClass:\n  glcm: [Contrasst]\n",
    "invalid.yaml": "setting: [binWidth: 25\n",
    "list.yaml": "- binWidth\n- 25\n",
    "scalar.yaml": "binWidth 25\n",
    "broken.json": '{"setting": {"binWidth": 25}\n',
    "interpolator.yaml": "setting:\n  interpolator: sitkFoo\n",
    "resegment_mode.yaml": "setting:\n  resegmentMode: foo\n",
    "resegment_range_empty.yaml": "setting:\n  resegmentRange: [5000, 6000]\n",
    "wavelet.yaml": "imageType:\n  Wavelet:\n    wavelet: coif99\n",
    "engine.yaml": "engine: foo\n",
    "ibsi_section.yaml": "ibsi:\n  bin_width: 25\n",
    "ibsi_list.yaml": "ibsi: [bin_width, 25]\n",
    "ibsi_bin_width_0.yaml": "ibsi:\n  bin_width: 0\n",
    "ibsi_unknown_key.yaml": "ibsi:\n  bin_widht: 25\n",
    "ibsi_spacing_two_values.yaml": "ibsi:\n  new_spacing: [1, 1]\n",
    "ibsi_discretisation.yaml": "ibsi:\n  discretisation: foo\n",
    "ibsi_resampling.yaml": "engine: ibsi\nibsi:\n  new_spacing: [1, 1, 1]\n",
    "ibsi_families_number.yaml": "ibsi:\n  families: 5\n",
    "ibsi_spacing_text.yaml": "ibsi:\n  new_spacing: abc\n",
    "ibsi_bin_width_text.yaml": "ibsi:\n  bin_width: abc\n",
    "ibsi_resegment_three_values.yaml": "ibsi:\n  resegment_range: [1, 2, 3]\n",
    "ibsi_bin_number_fraction.yaml": "ibsi:\n  discretisation: FBN\n  bin_number: 2.5\n",
    "ibsi_round_maybe.yaml": "ibsi:\n  round_intensities: maybe\n",
}

#: Cohort files of ``batch`` (name: text; paths relative to the file).
COHORT_FILES = {
    "cohort.csv": "id,image,mask\np1,image.nrrd,mask.nrrd\n",
    "observers.csv": "id,image,mask,observer\nlesion,image.nrrd,mask.nrrd,a\nlesion,image.nrrd,mask2.nrrd,b\n",
    "cohort_empty.csv": "",
    "cohort_header_only.csv": "id,image,mask\n",
    "cohort_no_mask_column.csv": "id,image\np1,image.nrrd\n",
    "cohort_missing_file.csv": "id,image,mask\np1,image.nrrd,nosuch.nrrd\n",
    "cohort_duplicate_id.csv": "id,image,mask\np1,image.nrrd,mask.nrrd\np1,image.nrrd,mask.nrrd\n",
    "cohort_bad_label.csv": "id,image,mask,label\np1,image.nrrd,mask.nrrd,abc\n",
    # DICOM masks in cohort files (seg.dcm: the SEG of GTV and GTV_grown on dicom_series, made in `inputs`)
    "cohort_dicom_nrrd_image.csv": "id,image,mask,roi\np1,image.nrrd,seg.dcm,GTV\n",
    "cohort_dicom_unknown_roi.csv": "id,image,mask,roi\np1,dicom_series,seg.dcm,Tumour\n",
    "cohort_roi_of_a_label_map.csv": "id,image,mask,roi\np1,image.nrrd,mask.nrrd,GTV\n",
    "habitats_dicom_two_segments.csv": "id,image,mask,channel\np1,dicom_series,seg.dcm,MR\n",
}


def write_study_tables(folder):
    """The study inputs of ``study``, ``harmonise`` and ``predict``, and bad variants of them.

    study_features.csv: the first 60 patients of scikit-learn's breast cancer Wisconsin table (real features of
    digitised images), ids P01..P60, all 30 features. study_clinical.csv: id; malignant (the real diagnosis,
    1 = malignant: 47 patients, 0 = benign: 13); batch A, B, C in turn (made up); time and event: a made-up
    follow-up (100 + 30 k days, an event every 3rd patient: 20 events), only to reach the survival checks, which
    all fail before anything is fitted. Each bad variant changes one thing, said beside it.
    """
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    n = 60
    ids = [f"P{k + 1:02d}" for k in range(n)]
    names = [str(name) for name in bunch.feature_names]
    features = [[i, *map(repr, row.tolist())] for i, row in zip(ids, bunch.data[:n])]
    clinical = [[i, str(1 - int(t)), "ABC"[k % 3], str(100 + 30 * k), str(int(k % 3 == 0))]
                for k, (i, t) in enumerate(zip(ids, bunch.target[:n]))]
    header = ["id", "malignant", "batch", "time", "event"]

    def table(name, head, rows):
        (folder / name).write_text("\n".join(",".join(map(str, row)) for row in [head, *rows]) + "\n")

    def changed(rows, k, column, value):  # row k with ``column`` set to ``value``
        rows = [list(row) for row in rows]
        rows[k][header.index(column)] = value
        return rows

    table("study_features.csv", ["id", *names], features)
    table("study_clinical.csv", header, clinical)
    bad = [list(row) for row in features]
    bad[4][3] = "abc"  # P05's 'mean perimeter' is text (file row 6)
    table("study_features_text.csv", ["id", *names], bad)
    table("study_clinical_one_class.csv", header, [[*row[:1], "1", *row[2:]] for row in clinical])  # all malignant
    table("study_clinical_duplicate.csv", header, clinical + [clinical[2]])  # P03 twice (rows 4 and 62)
    table("study_clinical_fewer.csv", header, clinical[:-2])  # P59 and P60 left out
    table("study_clinical_lonely_batch.csv", header, changed(clinical, 6, "batch", "D"))  # P07 alone in batch D
    table("study_clinical_time0.csv", header, changed(changed(clinical, 1, "time", "0"), 2, "time", "-5"))  # P02, P03
    table("study_clinical_event2.csv", header, changed(clinical, 3, "event", "2"))  # P04's event is 2
    table("study_clinical_no_batch.csv", header[:2] + header[3:], [row[:2] + row[3:] for row in clinical])
    (folder / "study_icc_no_feature.csv").write_text("name,icc,ci_low,ci_high\nmean radius,0.9,0.8,0.95\n")


@pytest.fixture(scope="module")
def inputs(data, tmp_path_factory):
    """A folder of inputs: the real breast1 image and label map, and the bad files made from them."""
    folder = tmp_path_factory.mktemp("bad-inputs")
    cases = data / "pyradiomics_cases"
    (folder / "image.nrrd").write_bytes((cases / "breast1_image.nrrd").read_bytes())
    (folder / "mask.nrrd").write_bytes((cases / "breast1_label.nrrd").read_bytes())
    image, mask = sitk.ReadImage(str(folder / "image.nrrd")), sitk.ReadImage(str(folder / "mask.nrrd"))
    voxels, labels = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(mask)
    written(sitk.BinaryDilate(mask, [1, 1, 1]), folder, "mask2.nrrd")  # a second reader: the mask grown by 1 voxel
    # DICOM: the real image as an MR series (Testing/dicom_data.py), its label and the grown label as a SEG (highdicom)
    series = write_series(folder / "image.nrrd", folder / "dicom_series", "MR")
    write_seg_independently(series, [("GTV", mask, (codes.SCT.Tissue, codes.SCT.Neoplasm)),
                                     ("GTV_grown", sitk.BinaryDilate(mask, [1, 1, 1]), (codes.SCT.Tissue, codes.SCT.Neoplasm))],
                            folder / "seg.dcm")  # the two segments overlap
    # Wrong file types
    (folder / "table.csv").write_text("id,value\np1,1\n")
    written(sitk.Cast(sitk.RescaleIntensity(image[:, :, 10], 0, 255), sitk.sitkUInt8), folder, "slice.png")
    (folder / "text.nrrd").write_text("This is a text file, not an image.\n")
    (folder / "empty.nrrd").write_bytes(b"")
    (folder / "nodicom").mkdir()
    (folder / "nodicom" / "notes.txt").write_text("no DICOM here\n")
    (folder / "notafolder").write_text("a file\n")
    # Masks that are not label maps of this image
    written(like(labels.astype(np.float32) * 0.5, mask), folder, "float_mask.nrrd")  # values 0 and 0.5
    written(like(voxels.astype(np.int16) - 100, mask), folder, "image_as_mask.nrrd")  # intensities, some negative
    written(like(np.zeros_like(labels), mask), folder, "empty_mask.nrrd")
    written(mask[:, :, 10], folder, "mask_2d.nrrd")
    written(sitk.GetImageFromArray(np.stack([voxels, voxels]), isVector=False), folder, "image_4d.nrrd")  # two timepoints
    written(sitk.Compose(image, image), folder, "image_vector.nrrd")  # 2 components a voxel
    for aspect, change in (("spacing", lambda m: m.SetSpacing((1.0, 1.0, 3.0))),
                           ("origin", lambda m: m.SetOrigin((100.0, 100.0, 100.0))),
                           ("direction", lambda m: m.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1)))):
        moved = sitk.Image(mask)
        change(moved)
        written(moved, folder, f"mask_{aspect}.nrrd")
    written(mask[:, :, :15], folder, "mask_size.nrrd")  # 15 of the 21 slices
    # Not-finite voxels inside the ROI: the real image as float with one ROI voxel NaN (or +Inf)
    inside = tuple(np.argwhere(labels > 0)[0])
    for name, value in (("image_nan.nrrd", np.nan), ("image_inf.nrrd", np.inf)):
        changed = voxels.astype(np.float32)
        changed[inside] = value
        written(like(changed, image), folder, name)
    for name, text in {**PARAMETER_FILES, **COHORT_FILES}.items():
        (folder / name).write_text(text)
    (folder / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    (folder / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    (folder / "cohort_folder").mkdir()
    (folder / "icc_columns.csv").write_text("name,value\nfoo,1\n")
    (folder / "icc_text.csv").write_text("feature,icc,ci_low,ci_high\noriginal_firstorder_Mean,high,0.8,0.95\n")
    write_study_tables(folder)
    # A saved study (.mrb) of the real case, made by the command itself
    study_output = tmp_path_factory.mktemp("study-output")
    code, _, _ = run_in_process(["extract", str(folder / "image.nrrd"), str(folder / "mask.nrrd"), "--scene",
                                 str(folder / "study.mrb"), "-o", str(study_output / "features.csv")])
    assert code == 0 and (folder / "study.mrb").is_file()
    return folder


@pytest.fixture(scope="module")
def taken_port():
    """A loopback port some other program listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def run_in_process(argv, capfd=None):
    """``radiomicslab ARGV`` as the console script runs it (``cli.main``): (exit status, stdout, stderr).
    Every warning is let through to stderr (``always``): a refused command prints its error line only."""
    from RadiomicsLabLib.cli import main

    if capfd is not None:
        capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as done:
            code = done.code
    if capfd is None:
        return code, "", ""
    out, err = capfd.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------------
# The command line: name -> (command line, fragments of the error line[, number of lines])
# ---------------------------------------------------------------------------------------------------
# In a command line, @NAME is the input file NAME and {port} a port another program listens on. The working
# folder is empty: a relative output (-o out) would be written there.
def case(command_line, *fragments, lines=1):
    return command_line, fragments, lines


EXTRACT = "extract @image.nrrd @mask.nrrd"
MAPS = "maps @image.nrrd @mask.nrrd -o maps"
RINGS = "rings @mask.nrrd -o ring.nrrd"
OBSERVERS = "observers @image.nrrd @mask.nrrd @mask2.nrrd -o agreement"
HABITATS = "habitats @mask.nrrd --channel MR=@image.nrrd -o habitats"
DELTA = "delta --timepoint 2020-01-01:@image.nrrd:@mask.nrrd --timepoint 2020-03-01:@image.nrrd:@mask2.nrrd -o delta"
BATCH = "batch @cohort.csv -o batch"
STUDY = "study @study_features.csv --clinical @study_clinical.csv --outcome malignant -o out"
SURVIVAL = "study @study_features.csv --clinical @study_clinical.csv --time time --event event -o out"
NOT_AN_IMAGE = "is not an image RadiomicsLab can read"
GRIDS = "Image and mask are on different grids"
PYRADIOMICS_SCHEMA = "less than or equals to min limit(exclusive) '0'"

CLI_CASES = {
    # extract: wrong file types
    "extract: a CSV table as image": case("extract @table.csv @mask.nrrd", "table.csv", NOT_AN_IMAGE),
    "extract: a PNG picture as image": case("extract @slice.png @mask.nrrd", "dimension (image 2D, mask 3D)"),
    "extract: a text file named .nrrd": case("extract @text.nrrd @mask.nrrd", "text.nrrd", NOT_AN_IMAGE),
    "extract: an empty file": case("extract @empty.nrrd @mask.nrrd", "empty.nrrd", "is empty (0 bytes)"),
    "extract: a folder without DICOM": case("extract @nodicom @mask.nrrd", "holds no DICOM series"),
    "extract: a CSV table as mask": case("extract @image.nrrd @table.csv", "The mask", NOT_AN_IMAGE),
    "extract: a missing image": case("extract @nosuch.nrrd @mask.nrrd", "Cannot read image", "no such file"),
    "extract: a missing mask": case("extract @image.nrrd @nosuch.nrrd", "Cannot read mask", "no such file"),
    "extract: a 4D image": case("extract @image_4d.nrrd @mask.nrrd", "is 4D; give a 2D or 3D image"),
    "extract: a vector image": case("extract @image_vector.nrrd @mask.nrrd", "2 components per voxel"),
    # extract: masks
    "extract: a float mask": case("extract @image.nrrd @float_mask.nrrd", "non-integer values", "give a label map"),
    "extract: an image as mask": case("extract @image.nrrd @image_as_mask.nrrd", "negative label values"),
    "extract: an empty mask": case("extract @image.nrrd @empty_mask.nrrd", "No segment to extract", "mask is empty"),
    "extract: a 2D mask of a 3D image": case("extract @image.nrrd @mask_2d.nrrd", GRIDS, "image 3D, mask 2D"),
    "extract: mask of another spacing": case("extract @image.nrrd @mask_spacing.nrrd", GRIDS, "spacing", "--resample-mask"),
    "extract: mask of another origin": case("extract @image.nrrd @mask_origin.nrrd", GRIDS, "origin"),
    "extract: mask of another direction": case("extract @image.nrrd @mask_direction.nrrd", GRIDS, "direction"),
    "extract: mask of another size": case("extract @image.nrrd @mask_size.nrrd", GRIDS, "size"),
    "extract: NaN in the ROI": case("extract @image_nan.nrrd @mask.nrrd", "1 NaN or infinite voxel(s)", "Label_1"),
    "extract: Inf in the ROI": case("extract @image_inf.nrrd @mask.nrrd", "1 NaN or infinite voxel(s)"),
    "extract: --label 7 (absent)": case(f"{EXTRACT} --label 7", "no voxels with label 7", "labels present: 1"),
    "extract: --label 1 --label 7": case(f"{EXTRACT} --label 1 --label 7", "no voxels with label 7"),
    "extract: --label -1": case(f"{EXTRACT} --label -1", "--label -1", "not negative"),
    "extract: --label x": case(f"{EXTRACT} --label x", "'--label'", "not a valid integer", "radiomicslab extract --help"),
    # extract: engines and presets
    "extract: --engine foo": case(f"{EXTRACT} --engine foo", "'--engine'", "'foo' is not one of"),
    "extract: --engine IBSI (upper case)": case(f"{EXTRACT} --engine IBSI", "'IBSI' is not one of"),
    "extract: --engine ''": case(f"{EXTRACT} --engine ''", "'' is not one of"),
    "extract: --engine ibsi with Wavelet": case(f"{EXTRACT} --engine ibsi --image-type Wavelet", "pyradiomics filters"),
    "extract: --engine native with LBP3D": case(f"{EXTRACT} --engine native --image-type LBP3D",
                                               "not available in the native engine"),
    "extract: --engine pyradiomics with an IBSI preset": case(f"{EXTRACT} --params ibsi-A --engine pyradiomics",
                                                              "only the IBSI engine reads"),
    "extract: unknown preset": case(f"{EXTRACT} --params nosuchpreset", "neither a preset", "pyradiomics-default"),
    # extract: parameter files
    "extract: a typo in a setting": case(f"{EXTRACT} --params @typo_key.yaml", "Unknown setting 'binWidht'",
                                         "did you mean 'binWidth'?"),
    "extract: a typo in a section": case(f"{EXTRACT} --params @typo_section.yaml", "did you mean 'setting'?"),
    "extract: binWidth text": case(f"{EXTRACT} --params @binwidth_text.yaml", "Invalid value 'abc'", "binWidth"),
    "extract: binWidth 0": case(f"{EXTRACT} --params @binwidth_0.yaml", PYRADIOMICS_SCHEMA, "binWidth"),
    "extract: binWidth -1": case(f"{EXTRACT} --params @binwidth_negative.yaml", PYRADIOMICS_SCHEMA, "binWidth"),
    "extract: binWidth 1e-9": case(f"{EXTRACT} --params @binwidth_1e-9.yaml", "grey levels", "use a larger binWidth"),
    "extract: binCount 0": case(f"{EXTRACT} --params @bincount_0.yaml", PYRADIOMICS_SCHEMA, "binCount"),
    "extract: binCount 2.5": case(f"{EXTRACT} --params @bincount_fraction.yaml", "Invalid value '2.5'", "expected int"),
    "extract: resampledPixelSpacing negative": case(f"{EXTRACT} --params @spacing_negative.yaml", "resampledPixelSpacing"),
    "extract: resampledPixelSpacing of 2 values": case(f"{EXTRACT} --params @spacing_two_values.yaml",
                                                       "resampledPixelSpacing", "3-D required"),
    "extract: resampledPixelSpacing of 2 values (native)": case(
        f"{EXTRACT} --params @spacing_two_values.yaml --engine native", "must give 3 spacings"),
    "extract: resampledPixelSpacing text": case(f"{EXTRACT} --params @spacing_text.yaml", "is not a list"),
    "extract: unknown image type (file)": case(f"{EXTRACT} --params @unknown_image_type.yaml", "Image Type Foo"),
    "extract: unknown image type (--image-type)": case(f"{EXTRACT} --image-type Foo", "Image Type Foo"),
    "extract: LoG sigma -1": case(f"{EXTRACT} --params @log_sigma_negative.yaml", "/imageType/LoG/sigma"),
    "extract: LoG sigma text": case(f"{EXTRACT} --params @log_sigma_text.yaml", "Invalid value 'abc'", "expected float"),
    "extract: LoG without sigma": case(f"{EXTRACT} --params @log_without_sigma.yaml", "LoG", "has no sigma"),
    "extract: LoG with no sigma values": case(f"{EXTRACT} --params @log_sigma_empty.yaml --engine native", "has no sigma"),
    "extract: --image-type LoG:sigma=0": case(f"{EXTRACT} --image-type LoG:sigma=0", "/imageType/LoG/sigma"),
    "extract: --image-type LoG:sigma (no value)": case(f"{EXTRACT} --image-type LoG:sigma", "needs the form key=value"),
    "extract: unknown feature class": case(f"{EXTRACT} --params @unknown_feature_class.yaml", "Feature Class glcmm"),
    "extract: unknown feature": case(f"{EXTRACT} --params @unknown_feature.yaml", "Contrasst"),
    "extract: invalid YAML": case(f"{EXTRACT} --params @invalid.yaml", "Invalid YAML", "line 2"),
    "extract: a YAML list": case(f"{EXTRACT} --params @list.yaml", "must be a mapping", "holds a list"),
    "extract: a YAML scalar": case(f"{EXTRACT} --params @scalar.yaml", "must be a mapping", "holds a str"),
    "extract: broken JSON": case(f"{EXTRACT} --params @broken.json", "Invalid YAML", "broken.json"),
    "extract: a binary parameter file": case(f"{EXTRACT} --params @binary.yaml", "Cannot read parameter file"),
    "extract: unknown interpolator": case(f"{EXTRACT} --params @interpolator.yaml", "sitkFoo"),
    "extract: unknown resegmentMode": case(f"{EXTRACT} --params @resegment_mode.yaml", "Enum 'foo' does not exist"),
    "extract: resegmentRange outside the ROI": case(f"{EXTRACT} --params @resegment_range_empty.yaml",
                                                    "Resegmentation excluded too many voxels"),
    "extract: unknown wavelet": case(f"{EXTRACT} --params @wavelet.yaml", "coif99"),
    "extract: unknown engine in the file": case(f"{EXTRACT} --params @engine.yaml", "Unknown engine 'foo'"),
    "extract: ibsi section, pyradiomics engine": case(f"{EXTRACT} --params @ibsi_section.yaml",
                                                      "only the IBSI engine reads", "--engine ibsi"),
    "extract: ibsi section that is a list": case(f"{EXTRACT} --params @ibsi_list.yaml --engine ibsi",
                                                 "'ibsi' section", "must be a mapping", "holds a list"),
    "extract: ibsi bin_width 0": case(f"{EXTRACT} --params @ibsi_bin_width_0.yaml --engine ibsi",
                                      "bin width must be greater than zero"),
    "extract: ibsi unknown key": case(f"{EXTRACT} --params @ibsi_unknown_key.yaml --engine ibsi",
                                      "Unknown setting 'bin_widht'"),
    "extract: ibsi new_spacing of 2 values": case(f"{EXTRACT} --params @ibsi_spacing_two_values.yaml --engine ibsi",
                                                  "three values"),
    "extract: ibsi families a number": case(f"{EXTRACT} --params @ibsi_families_number.yaml --engine ibsi",
                                           "Invalid value 5 for setting 'families'"),
    "extract: ibsi new_spacing text": case(f"{EXTRACT} --params @ibsi_spacing_text.yaml --engine ibsi",
                                           "Invalid value 'abc' for setting 'new_spacing'", "list of 3 numbers"),
    "extract: ibsi bin_width text": case(f"{EXTRACT} --params @ibsi_bin_width_text.yaml --engine ibsi",
                                         "Invalid value 'abc' for setting 'bin_width'", "expected a number"),
    "extract: ibsi resegment_range of 3 values": case(
        f"{EXTRACT} --params @ibsi_resegment_three_values.yaml --engine ibsi", "setting 'resegment_range'",
        "[lower, upper]"),
    "extract: ibsi bin_number 2.5": case(f"{EXTRACT} --params @ibsi_bin_number_fraction.yaml --engine ibsi",
                                         "Invalid value 2.5 for setting 'bin_number'", "whole number"),
    "extract: ibsi round_intensities maybe": case(f"{EXTRACT} --params @ibsi_round_maybe.yaml --engine ibsi",
                                                  "'round_intensities'", "true or false"),
    "extract: ibsi unknown discretisation": case(f"{EXTRACT} --params @ibsi_discretisation.yaml --engine ibsi",
                                                 "discretisation must be one of"),
    # extract: saved studies
    "extract: --scene of a missing file": case("extract --scene @nosuch.mrb", "Cannot read scene", "no such file"),
    "extract: --scene of a CSV table": case("extract --scene @table.csv", "not a Slicer data bundle (.mrb)"),
    "extract: --scene without the segment": case("extract --scene @study.mrb --segment Nope", "has no segment Nope",
                                                 "its segments are: Label_1"),
    "extract: --scene with --label": case("extract --scene @study.mrb --label 1", "need IMAGE and MASK"),
    "extract: --segment with IMAGE MASK": case(f"{EXTRACT} --segment Nope", "--segment is for --scene alone"),
    "extract: IMAGE without MASK": case("extract @image.nrrd", "Give both IMAGE and MASK"),
    "extract: unknown option": case(f"{EXTRACT} --bogus", "No such option '--bogus'"),

    # maps
    "maps: unknown feature (typo)": case(f"{MAPS} -f glcm_Contrst", "Unknown feature 'glcm_Contrst'",
                                         "did you mean 'glcm_Contrast'?"),
    "maps: unknown family": case(f"{MAPS} -f nosuchfamily", "Unknown feature 'nosuchfamily'", "choose feature names"),
    "maps: a shape feature": case(f"{MAPS} -f shape_Volume", "Unknown feature 'shape_Volume'"),
    "maps: only commas": case(f"{MAPS} -f ,,,", "No feature chosen"),
    "maps: no features": case("maps @image.nrrd @mask.nrrd -o maps", "Give --features"),
    "maps: --radius 0": case(f"{MAPS} -f firstorder_Mean --radius 0", "radius must be 1 or more", "got 0"),
    "maps: --radius -1": case(f"{MAPS} -f firstorder_Mean --radius -1", "radius must be 1 or more", "got -1"),
    "maps: --radius 1000": case(f"{MAPS} -f firstorder_Mean --radius 1000", "larger than the image along z",
                                "at most 10"),
    "maps: --radius 10^12": case(f"{MAPS} -f firstorder_Mean --radius 1000000000000", "larger than the image"),
    "maps: --radius x": case(f"{MAPS} -f firstorder_Mean --radius x", "'--radius'", "not a valid integer"),
    "maps: --label 7": case(f"{MAPS} -f firstorder_Mean --label 7", "no voxels with label 7"),
    "maps: a typo in the parameters": case(f"{MAPS} -f firstorder_Mean --params @typo_key.yaml", "did you mean 'binWidth'?"),
    "maps: unknown preset": case(f"{MAPS} -f firstorder_Mean --params nosuchpreset", "neither a preset"),
    "maps: resampling in the settings": case(f"{MAPS} -f firstorder_Mean --params @ibsi_resampling.yaml",
                                             "resampling (new_spacing) is not available"),
    "maps: --definition foo": case(f"{MAPS} -f firstorder_Mean --definition foo", "'--definition'"),
    "maps: --dtype int8": case(f"{MAPS} -f firstorder_Mean --dtype int8", "'--dtype'"),
    "maps: an IBSI-only family with pyradiomics": case(f"{MAPS} -f local_intensity --definition pyradiomics",
                                                       "which pyradiomics does not have"),
    "maps: an empty mask": case("maps @image.nrrd @empty_mask.nrrd -f firstorder_Mean -o maps", "The mask is empty"),
    "maps: a float mask": case("maps @image.nrrd @float_mask.nrrd -f firstorder_Mean -o maps", "non-integer values"),
    "maps: mask of another spacing": case("maps @image.nrrd @mask_spacing.nrrd -f firstorder_Mean -o maps", GRIDS),
    "maps: a CSV table as image": case("maps @table.csv @mask.nrrd -f firstorder_Mean -o maps", NOT_AN_IMAGE),
    "maps: Inf in the ROI": case("maps @image_inf.nrrd @mask.nrrd -f firstorder_Mean -o maps", "NaN or infinite"),
    "maps: -o a file": case("maps @image.nrrd @mask.nrrd -f firstorder_Mean -o @table.csv", "it is a file",
                            "-o is a folder"),
    "maps: no -o": case("maps @image.nrrd @mask.nrrd -f firstorder_Mean", "Give the output folder with -o DIR"),
    "maps: a DICOM SEG with a NRRD image": case("maps @image.nrrd @seg.dcm -f firstorder_Mean -o maps",
                                                "is a DICOM segmentation", "folder of the DICOM series"),
    "maps: an unknown --roi": case("maps @dicom_series @seg.dcm --roi Tumour -f firstorder_Mean -o maps",
                                   "has no segment named 'Tumour'", "'GTV', 'GTV_grown'"),
    "maps: --roi with a label map": case(f"{MAPS} -f firstorder_Mean --roi GTV", "--roi picks ROIs", "--label"),
    "maps: overlapping ROIs together": case("maps @dicom_series @seg.dcm -f firstorder_Mean -o maps", "overlap",
                                            "pick one of them with --roi"),

    # rings
    "rings: --from > --to": case(f"{RINGS} --from 5 --to 2", "from 5 mm to 2 mm is empty", "--from must be less"),
    "rings: --from = --to": case(f"{RINGS} --from 2 --to 2", "is empty"),
    "rings: negative ring, --from > --to": case(f"{RINGS} --from -1 --to -3", "is empty"),
    "rings: --from nan": case(f"{RINGS} --from nan --to 2", "finite numbers of millimetres"),
    "rings: --to inf": case(f"{RINGS} --from 0 --to inf", "finite numbers of millimetres"),
    "rings: --from abc": case(f"{RINGS} --from abc --to 2", "'--from'", "not a valid float"),
    "rings: no --to": case(f"{RINGS} --from 0", "Missing option '--to'"),
    "rings: --label 7": case(f"{RINGS} --from 0 --to 2 --label 7", "no voxels with label 7"),
    "rings: --clip-label -3": case(f"{RINGS} --from 0 --to 2 --clip-label -3", "--clip-label -3", "not negative"),
    "rings: --clip on another grid": case(f"{RINGS} --from 0 --to 2 --clip @mask_spacing.nrrd", "different grid",
                                          "spacing"),
    "rings: --clip-label 7 (absent)": case(f"{RINGS} --from 0 --to 2 --clip @mask2.nrrd --clip-label 7",
                                           "clip mask has no voxels with label 7"),
    "rings: an empty --clip": case(f"{RINGS} --from 0 --to 2 --clip @empty_mask.nrrd", "clip mask has no non-zero"),
    "rings: an empty mask": case("rings @empty_mask.nrrd --from 0 --to 2 -o ring.nrrd", "no non-zero voxels"),
    "rings: a float mask": case("rings @float_mask.nrrd --from 0 --to 2 -o ring.nrrd", "non-integer values"),
    "rings: a CSV table as mask": case("rings @table.csv --from 0 --to 2 -o ring.nrrd", NOT_AN_IMAGE),
    "rings: a missing mask": case("rings @nosuch.nrrd --from 0 --to 2 -o ring.nrrd", "no such file"),
    "rings: overlapping ROIs together": case("rings @dicom_series @seg.dcm --roi GTV --roi GTV_grown --from 0 --to 2 "
                                             "-o ring.nrrd", "'GTV' and 'GTV_grown'", "overlap"),
    "rings: --seg without a DICOM series": case("rings @mask.nrrd --from 0 --to 2 --seg ring.dcm",
                                                "--seg writes a DICOM SEG", "give IMAGE as the folder"),
    "rings: --seg not .dcm": case("rings @dicom_series @seg.dcm --roi GTV --from 0 --to 2 --seg ring.nrrd",
                                  "must end in .dcm"),
    "rings: --clip-roi with a label map": case(f"{RINGS} --from 0 --to 2 --clip @mask2.nrrd --clip-roi GTV",
                                               "--clip-roi picks ROIs", "--clip-label"),

    # observers
    "observers: --label 7": case(f"{OBSERVERS} --label 7", "is empty (no voxels with label 7)"),
    "observers: one mask": case("observers @image.nrrd @mask.nrrd -o agreement", "at least 2 observers", "--perturb"),
    "observers: --names too few": case(f"{OBSERVERS} --names a", "--names gives 1 name(s) for 2 mask(s)"),
    "observers: --names twice the same": case(f"{OBSERVERS} --names a,a", "used twice"),
    "observers: --readers too few": case(f"{OBSERVERS} --readers r1", "--readers gives 1 name(s)"),
    "observers: unknown perturbation": case(f"{OBSERVERS} --perturbation foo:mm=1", "Unknown perturbation 'foo'"),
    "observers: perturbation value text": case(f"{OBSERVERS} --perturbation grow:mm=abc", "needs a number"),
    "observers: perturbation unknown option": case(f"{OBSERVERS} --perturbation grow:foo=1", "is not one of mm="),
    "observers: perturbation grow:mm=nan": case(f"{OBSERVERS} --perturbation grow:mm=nan", "needs a finite number"),
    "observers: perturbation grow:mm=inf": case(f"{OBSERVERS} --perturbation grow:mm=inf", "needs a finite number"),
    "observers: perturbation shift:mm=nan": case(f"{OBSERVERS} --perturbation shift:mm=nan", "needs a finite number"),
    "observers: --perturb --seed -1": case("observers @image.nrrd @mask.nrrd -o agreement --no-features --perturb "
                                           "--seed -1", "-1 is not in the range x>=0"),
    "observers: robust rule with a bad operator": case(f"{OBSERVERS} --robust-rule 'icc2 >>> 3'", "Robust-feature rule"),
    "observers: robust rule with an unknown column": case(f"{OBSERVERS} --robust-rule 'nosuch >= 0.5'",
                                                          "Robust-feature rule 'nosuch >= 0.5'"),
    "observers: --icc-type icc9": case(f"{OBSERVERS} --icc-type icc9", "'--icc-type'"),
    "observers: a typo in the parameters": case(f"{OBSERVERS} --params @typo_key.yaml", "did you mean 'binWidth'?"),
    "observers: --engine foo": case(f"{OBSERVERS} --engine foo", "'--engine'"),
    "observers: --workers without --cohort": case(f"{OBSERVERS} --workers 2", "give --cohort"),
    "observers: a lesion name with a slash": case(f"{OBSERVERS} --lesion a/b", "cannot name a folder"),
    "observers: --seg without a DICOM series": case(f"{OBSERVERS} --seg consensus.dcm", "--seg writes a DICOM SEG"),
    "observers: --seg with --cohort": case("observers --cohort @observers.csv -o agreement --seg consensus.dcm",
                                           "--seg writes one lesion's consensus"),
    "observers: an unknown --roi": case("observers @dicom_series @seg.dcm --roi GTV --roi Tumour -o agreement",
                                        "has no segment named 'Tumour'"),
    "observers: --roi for 2 of 3 masks": case(f"{OBSERVERS.replace('-o', '@mask.nrrd -o')} --roi a --roi b",
                                              "--roi gives 2 ROI names for 3 masks"),
    "observers: an empty mask": case("observers @image.nrrd @mask.nrrd @empty_mask.nrrd -o agreement --no-features",
                                     "observer 'empty_mask'", "is empty"),
    "observers: a float mask": case("observers @image.nrrd @mask.nrrd @float_mask.nrrd -o agreement --no-features",
                                    "non-integer values"),
    "observers: --strict, mask of another spacing": case(
        "observers @image.nrrd @mask.nrrd @mask_spacing.nrrd -o agreement --no-features --strict", "another grid"),
    "observers: Inf in the ROI": case("observers @image_inf.nrrd @mask.nrrd @mask2.nrrd -o agreement", "NaN or infinite"),
    "observers: a CSV table as image": case("observers @table.csv @mask.nrrd @mask2.nrrd -o agreement --no-features",
                                            NOT_AN_IMAGE),
    "observers: a missing mask": case("observers @image.nrrd @mask.nrrd @nosuch.nrrd -o agreement --no-features",
                                      "no such file"),
    "observers: a missing cohort": case("observers -o agreement --cohort @nosuch.csv", "Cannot read cohort",
                                        "no such file"),
    "observers: a cohort without its columns": case("observers -o agreement --cohort @table.csv", "needs a header"),
    "observers: --memory-limit nonsense": case("observers -o agreement --cohort @observers.csv --memory-limit lots",
                                               "Invalid memory limit 'lots'"),
    "observers: --scheduler nonsense": case("observers -o agreement --cohort @observers.csv --scheduler nonsense",
                                            "Invalid scheduler address 'nonsense'"),
    "observers: --workers -2": case("observers -o agreement --cohort @observers.csv --workers -2", "'--workers'"),
    "observers: IMAGE and --cohort": case(f"{OBSERVERS} --cohort @observers.csv", "not both"),

    # habitats (one patient; the cohort mode only for a missing cohort file)
    "habitats: -k 0": case(f"{HABITATS} -k 0", "-k 0", "at least 1"),
    "habitats: -k -3": case(f"{HABITATS} -k -3", "-k -3"),
    "habitats: -k 100": case(f"{HABITATS} -k 100", "100 habitats", "choose fewer habitats"),
    "habitats: -k abc": case(f"{HABITATS} -k abc", "is not a number of habitats"),
    "habitats: -k 2.5": case(f"{HABITATS} -k 2.5", "is not a number of habitats"),
    "habitats: --k-range 5:2": case(f"{HABITATS} -k auto --k-range 5:2", "need 2 <= LOW <= HIGH"),
    "habitats: --k-range 1:3": case(f"{HABITATS} -k auto --k-range 1:3", "need 2 <= LOW <= HIGH"),
    "habitats: --k-range abc": case(f"{HABITATS} -k auto --k-range abc", "is not LOW:HIGH"),
    "habitats: BIC with k-means": case(f"{HABITATS} -k auto --criterion bic", "BIC needs a likelihood"),
    "habitats: unknown method": case(f"{HABITATS} --method dbscan", "'--method'", "'dbscan' is not one of"),
    "habitats: --label 7": case(f"{HABITATS} --label 7", "no voxels with label 7"),
    "habitats: --smooth -1": case(f"{HABITATS} --smooth -1", "Smoothing must be 0"),
    "habitats: --min-island -5": case(f"{HABITATS} --min-island -5", "island size"),
    "habitats: --smooth nan": case(f"{HABITATS} --smooth nan", "Smoothing must be 0"),
    "habitats: --smooth inf": case(f"{HABITATS} --smooth inf", "Smoothing"),
    "habitats: --seed -1": case(f"{HABITATS} --seed -1", "seed"),
    "habitats: --supervoxels abc": case(f"{HABITATS} --supervoxels abc", "--supervoxels 'abc'"),
    "habitats: --supervoxels 0": case(f"{HABITATS} --supervoxels 0", "at least 1"),
    "habitats: --order-by an unknown channel": case(f"{HABITATS} --order-by CT", "Cannot order habitats by 'CT'"),
    "habitats: unknown feature map": case(f"{HABITATS} --feature-map glcm_Contrst", "Unknown feature 'glcm_Contrst'"),
    "habitats: feature map of an unknown channel": case(f"{HABITATS} --feature-map CT:glcm_Contrast", "names channel 'CT'"),
    "habitats: --map-radius 0": case(f"{HABITATS} --feature-map firstorder_Mean --map-radius 0",
                                     "radius must be 1 or more"),
    "habitats: a typo in --features": case(f"{HABITATS} --features @typo_key.yaml", "did you mean 'binWidth'?"),
    "habitats: --max-samples 1": case(f"{HABITATS} --max-samples 1", "max_samples must be a whole number >= 2"),
    "habitats: --workers without --cohort": case(f"{HABITATS} --workers 3", "give --cohort"),
    "habitats: --channel without a name": case("habitats @mask.nrrd --channel @image.nrrd -o habitats",
                                               "is not NAME=IMAGE"),
    "habitats: a channel name twice": case(f"{HABITATS} --channel MR=@image.nrrd", "'MR' is given twice"),
    "habitats: no channel": case("habitats @mask.nrrd -o habitats", "Give at least one channel"),
    "habitats: an empty mask": case("habitats @empty_mask.nrrd --channel MR=@image.nrrd -o habitats",
                                    "no non-zero voxels"),
    "habitats: mask of another spacing": case("habitats @mask_spacing.nrrd --channel MR=@image.nrrd -o habitats",
                                              "different grid", "--registration resample"),
    "habitats: NaN in the ROI": case("habitats @mask.nrrd --channel MR=@image_nan.nrrd -o habitats",
                                     "1 NaN or infinite voxel(s)", "NaN policy"),
    "habitats: a CSV table as channel": case("habitats @mask.nrrd --channel MR=@table.csv -o habitats", NOT_AN_IMAGE),
    "habitats: a missing channel": case("habitats @mask.nrrd --channel MR=@nosuch.nrrd -o habitats", "no such file"),
    "habitats: a missing cohort": case("habitats --cohort @nosuch.csv -o habitats --workers 0", "nosuch.csv"),
    "habitats: a DICOM SEG with a NRRD channel": case("habitats @seg.dcm --roi GTV --channel MR=@image.nrrd -o habitats",
                                                      "is a DICOM segmentation", "folder of the DICOM series"),
    "habitats: an unknown --roi": case("habitats @seg.dcm --roi Tumour --channel MR=@dicom_series -o habitats",
                                       "has no segment named 'Tumour'", "'GTV', 'GTV_grown'"),
    "habitats: a SEG of two segments without --roi": case("habitats @seg.dcm --channel MR=@dicom_series -o habitats",
                                                          "holds the ROIs 'GTV', 'GTV_grown'", "--roi"),
    "habitats: --roi with a label map": case(f"{HABITATS} --roi GTV", "--roi picks ROIs of a DICOM RTSTRUCT or SEG"),
    "habitats: --seg without a DICOM series": case(f"{HABITATS} --seg habitats.dcm", "--seg writes a DICOM SEG",
                                                   "the first --channel"),
    "habitats: --seg not .dcm": case("habitats @seg.dcm --roi GTV --channel MR=@dicom_series -o habitats --seg h.nrrd",
                                     "must end in .dcm"),
    "habitats: --seg with --cohort alone": case("habitats --cohort @habitats_dicom_two_segments.csv -o habitats "
                                                "--workers 0 --seg habitats.dcm", "describe MASK"),
    "habitats: a cohort SEG of two segments without roi": case("habitats --cohort @habitats_dicom_two_segments.csv "
                                                               "-o habitats --workers 0", "has 1 problem", lines=2),

    # delta (timepoints; the cohort mode only for a missing cohort file)
    "delta: month 13": case(DELTA.replace("2020-01-01", "2020-13-01"), "'2020-13-01' is not a date", "YYYY-MM-DD"),
    "delta: 30 February": case(DELTA.replace("2020-01-01", "2020-02-30"), "'2020-02-30' is not a date"),
    "delta: a word as date": case(DELTA.replace("2020-01-01", "yesterday"), "'yesterday' is not a date"),
    "delta: a day missing": case(DELTA.replace("2020-03-01", "2020-03-0"), "'2020-03-0' is not a date"),
    "delta: a five-digit year": case(DELTA.replace("2020-01-01", "99999-01-01"), "is not a date"),
    "delta: dates out of order": case(DELTA.replace("2020-01-01", "2020-06-01"), "out of date order"),
    "delta: the same date twice": case(DELTA.replace("2020-01-01", "2020-03-01"), "the same date 2020-03-01"),
    "delta: no date and no DICOM": case(DELTA.replace("2020-01-01", ""), "has no date"),
    "delta: a DICOM SEG with a NRRD image": case("delta --timepoint 2020-01-01:@image.nrrd:@seg.dcm --roi GTV --timepoint "
                                                 "2020-03-01:@image.nrrd:@mask2.nrrd -o delta", "is a DICOM segmentation"),
    "delta: an unknown --roi": case("delta --timepoint 2020-01-01:@dicom_series:@seg.dcm --roi Tumour --timepoint "
                                    "2020-03-01:@image.nrrd:@mask2.nrrd -o delta", "has no segment named 'Tumour'"),
    "delta: --seg without a DICOM series": case("delta --timepoint 2020-01-01:@image.nrrd:@mask.nrrd --timepoint "
                                                "2020-03-01:@image.nrrd --register rigid --propagate --seg segs_ -o delta",
                                                "--seg writes a DICOM SEG", "the image of timepoint 'T1'"),
    "delta: --seg without --propagate": case(f"{DELTA} --seg segs_", "--seg writes the masks delta propagates"),
    "delta: one timepoint": case("delta --timepoint 2020-01-01:@image.nrrd:@mask.nrrd -o delta",
                                 "at least two timepoints"),
    "delta: a timepoint without colons": case("delta --timepoint garbage --timepoint 2020-03-01:@image.nrrd:@mask.nrrd"
                                              " -o delta", "must be DATE:IMAGE:MASK"),
    "delta: a baseline without mask": case("delta --timepoint 2020-01-01:@image.nrrd --timepoint "
                                           "2020-03-01:@image.nrrd:@mask.nrrd -o delta", "has no mask"),
    "delta: unknown --reference": case(f"{DELTA} --reference T9", "Unknown reference timepoint 'T9'"),
    "delta: --lesion 7": case(f"{DELTA} --lesion 7", "no voxels with label 7"),
    "delta: --lesion 0": case(f"{DELTA} --lesion 0", "--lesion 0", "background"),
    "delta: a typo in the parameters": case(f"{DELTA} --params @typo_key.yaml", "did you mean 'binWidth'?"),
    "delta: --engine foo": case(f"{DELTA} --engine foo", "'--engine'"),
    "delta: --register warp": case(f"{DELTA} --register warp", "'--register'"),
    "delta: --propagate without --register": case(f"{DELTA} --propagate", "needs a registration"),
    "delta: --maps without --register": case(f"{DELTA} --maps", "need the images registered"),
    "delta: --registration-shrink abc": case(f"{DELTA} --register rigid --registration-shrink abc", "whole numbers"),
    "delta: --registration-shrink 0": case(f"{DELTA} --register rigid --registration-shrink 0", "at least 1"),
    "delta: --registration-iterations 0": case(f"{DELTA} --registration-iterations 0", "'--registration-iterations'"),
    "delta: --registration-margin -1": case(f"{DELTA} --registration-margin -1", "'--registration-margin'"),
    "delta: an ICC table without its columns": case(f"{DELTA} --icc @icc_columns.csv", "needs the columns feature"),
    "delta: an ICC table with text": case(f"{DELTA} --icc @icc_text.csv", "'high' in column icc"),
    "delta: a missing ICC table": case(f"{DELTA} --icc @nosuch.csv", "Cannot read the ICC table"),
    "delta: one --label for two timepoints": case(f"{DELTA} --label a", "one --label per --timepoint"),
    "delta: a --label twice": case(f"{DELTA} --label a --label a", "labelled 'a'"),
    "delta: unknown --plot-feature": case(f"{DELTA} --plot-feature nosuch", "No feature nosuch to plot"),
    "delta: unknown --waterfall-feature": case(f"{DELTA} --waterfall-feature nosuch", "No feature nosuch to plot"),
    "delta: --workers without --cohort": case(f"{DELTA} --workers 2", "give --cohort"),
    "delta: a CSV table as image": case("delta --timepoint 2020-01-01:@table.csv:@mask.nrrd --timepoint "
                                        "2020-03-01:@image.nrrd:@mask.nrrd -o delta", NOT_AN_IMAGE),
    "delta: Inf in the ROI": case(DELTA.replace("@image.nrrd", "@image_inf.nrrd", 1), "NaN or infinite"),
    "delta: a missing cohort": case("delta --cohort @nosuch.csv -o delta --workers 0", "nosuch.csv"),

    # batch
    "batch: --workers -1": case(f"{BATCH} --workers -1", "'--workers'", "-1 is not in the range"),
    "batch: --workers abc": case(f"{BATCH} --workers abc", "'--workers'"),
    "batch: --scheduler nonsense": case(f"{BATCH} --scheduler nonsense", "Invalid scheduler address", "tcp://HOST:PORT"),
    "batch: --scheduler http://": case(f"{BATCH} --scheduler http://127.0.0.1:8786", "Invalid scheduler address"),
    "batch: --scheduler nobody listens on": case(f"{BATCH} --scheduler tcp://127.0.0.1:1",
                                                 "Cannot reach the Dask scheduler", "Connection refused"),
    "batch: --scheduler and --workers": case(f"{BATCH} --scheduler tcp://127.0.0.1:1 --workers 2", "not both"),
    "batch: --memory-limit nonsense": case(f"{BATCH} --memory-limit nonsense", "Invalid memory limit 'nonsense'"),
    "batch: --memory-limit -4GiB": case(f"{BATCH} --memory-limit -4GiB", "Invalid memory limit '-4GiB'"),
    "batch: --memory-limit 4XB": case(f"{BATCH} --memory-limit 4XB", "Invalid memory limit '4XB'"),
    "batch: a typo in the parameters": case(f"{BATCH} --workers 0 --params @typo_key.yaml", "did you mean 'binWidth'?"),
    "batch: unknown preset": case(f"{BATCH} --workers 0 --params nosuchpreset", "neither a preset"),
    "batch: --engine foo": case(f"{BATCH} --engine foo", "'--engine'"),
    "batch: unknown --image-type": case(f"{BATCH} --workers 0 --image-type Foo", "Image Type Foo"),
    "batch: a missing cohort": case("batch @nosuch.csv -o batch --workers 0", "Cannot read cohort", "no such file"),
    "batch: an image as cohort": case("batch @image.nrrd -o batch --workers 0", "is not UTF-8 text"),
    "batch: a binary cohort": case("batch @binary.csv -o batch --workers 0", "is not UTF-8 text"),
    "batch: a cohort with a header only": case("batch @cohort_header_only.csv -o batch --workers 0", "has no cases"),
    # A cohort's problems are listed one a line under the error line (every row's problem at once, by design)
    "batch: an empty cohort file": case("batch @cohort_empty.csv -o batch --workers 0", "has 1 problem", lines=2),
    "batch: a cohort without a mask column": case("batch @cohort_no_mask_column.csv -o batch --workers 0",
                                                  "has 1 problem", lines=2),
    "batch: a cohort naming a missing file": case("batch @cohort_missing_file.csv -o batch --workers 0",
                                                  "has 1 problem", lines=2),
    "batch: a cohort with an id twice": case("batch @cohort_duplicate_id.csv -o batch --workers 0", "has 1 problem",
                                             "--keep-going", lines=2),
    "batch: a cohort with a text label": case("batch @cohort_bad_label.csv -o batch --workers 0", "has 1 problem",
                                              lines=2),
    "batch: an empty cohort folder": case("batch @cohort_folder -o batch --workers 0", "has 1 problem", lines=2),
    "batch: --channel of no case": case(f"{BATCH} --workers 0 --channel CT", "has 1 problem", lines=2),
    "batch: a DICOM mask with a NRRD image": case("batch @cohort_dicom_nrrd_image.csv -o batch --workers 0",
                                                  "has 1 problem", lines=2),
    "batch: an unknown roi": case("batch @cohort_dicom_unknown_roi.csv -o batch --workers 0", "has 1 problem", lines=2),
    "batch: a roi of a label map": case("batch @cohort_roi_of_a_label_map.csv -o batch --workers 0", "has 1 problem",
                                        lines=2),

    # demo, ibsi, presets
    "demo: unknown case": case("demo --case nosuch -o demo", "Unknown sample case 'nosuch'", "brain1"),
    "demo: an empty case name": case("demo --case '' -o demo", "Unknown sample case ''"),
    "demo: -o a file": case("demo -o @table.csv", "it is a file"),
    "ibsi: unknown data set": case("ibsi --dataset config_F -o ibsi", "Unknown IBSI data set config_F"),
    "ibsi: an empty data set name": case("ibsi --dataset '' -o ibsi", "Unknown IBSI data set"),
    "ibsi: -o a file": case("ibsi --dataset digital_phantom -o @table.csv", "it is a file"),
    "presets: an extra argument": case("presets extra", "unexpected extra argument"),
    "presets: unknown option": case("presets --all", "No such option '--all'"),

    # study, harmonise, predict (the breast cancer tables of write_study_tables; every refusal comes before any fit)
    "study: no --clinical": case("study @study_features.csv --outcome malignant -o out", "Missing option '--clinical'"),
    "study: an unknown outcome column": case(f"{STUDY.replace('malignant', 'diagnosis')}", "no column 'diagnosis'"),
    "study: a one-class outcome": case(f"{STUDY.replace('clinical.csv', 'clinical_one_class.csv')}",
                                       "has one class only ('1', 60 patients)"),
    "study: an id twice in the clinical table": case(f"{STUDY.replace('clinical.csv', 'clinical_duplicate.csv')}",
                                                     "rows 4, 62", "id 'P03' appears 2 times"),
    "study: ids in the features table only": case(f"{STUDY.replace('clinical.csv', 'clinical_fewer.csv')}",
                                                  "2 id(s) have no row in study_clinical_fewer.csv: 'P59', 'P60'"),
    "study: a text feature cell": case(f"{STUDY.replace('features.csv', 'features_text.csv')}",
                                       "row 6", "feature 'mean perimeter' is not numeric: 'abc'"),
    "study: a batch of one patient": case(f"{STUDY.replace('clinical.csv', 'clinical_lonely_batch.csv')} --batch batch",
                                          "row 8", "batch 'D' has 1 patient"),
    "study: survival times <= 0": case(f"{SURVIVAL.replace('clinical.csv', 'clinical_time0.csv')}",
                                       "the time 'time' must be > 0: 0 on row 3, -5 on row 4"),
    "study: an event that is not 0/1": case(f"{SURVIVAL.replace('clinical.csv', 'clinical_event2.csv')}",
                                            "the event 'event' must be 0 (censored) or 1 (event): '2' on row 5"),
    "study: --outer above the smallest class": case(f"{STUDY} --outer 14", "class '0' (0) has 13 patient(s)",
                                                    "use at most 13 folds (--outer)"),
    "study: an unknown --model": case(f"{STUDY} --model logistic_l3", "Unknown model 'logistic_l3'; choose one of"),
    "study: a binary model for survival": case(f"{SURVIVAL} --model logistic_l1",
                                               "Model 'logistic_l1' is for a binary outcome but this outcome is survival"),
    "study: mrmr for survival": case(f"{SURVIVAL} --select mrmr", "Feature selection 'mrmr' is for a binary outcome"),
    "study: --risk-cutoffs abc": case(f"{STUDY} --risk-cutoffs abc", "--risk-cutoffs",
                                      "'abc' is not a comma-separated list of probabilities"),
    "study: --risk-cutoffs decreasing": case(f"{STUDY} --risk-cutoffs 0.5,0.2", "--risk-cutoffs",
                                             "give increasing probabilities between 0 and 1"),
    "study: --icc-threshold 2": case(f"{STUDY} --icc @study_icc_no_feature.csv --icc-threshold 2",
                                     "--icc-threshold must be between 0 and 1; got 2."),
    "study: --icc without a feature column": case(f"{STUDY} --icc @study_icc_no_feature.csv", "study_icc_no_feature.csv",
                                                  "has no 'feature' column"),
    "study: --workers with --scheduler": case(f"{STUDY} --workers 2 --scheduler tcp://127.0.0.1:1",
                                              "Give --workers", "or --scheduler", "not both"),
    "study: a PNG as the features table": case("study @binary.csv --clinical @study_clinical.csv -o out",
                                               "cannot read the features table", "binary.csv", "as UTF-8 text"),
    "study: a PNG picture as the features table": case("study @slice.png --clinical @study_clinical.csv -o out",
                                                       "cannot read the features table", "slice.png", "as UTF-8 text"),
    "study: -o is the features table": case("study @study_features.csv --clinical @study_clinical.csv "
                                            "-o @study_features.csv", "it is the features table this command reads"),
    "study: -o is the clinical table": case("study @study_features.csv --clinical @study_clinical.csv "
                                            "-o @study_clinical.csv", "it is the clinical table this command reads"),
    "harmonise: no batch column in the table": case("harmonise @study_features.csv --clinical @study_clinical_no_batch.csv"
                                                    " --batch batch -o harmonised.csv", "no column 'batch'"),
    "harmonise: a batch of one patient": case("harmonise @study_features.csv --clinical @study_clinical_lonely_batch.csv"
                                              " --batch batch -o harmonised.csv", "batch 'D' has 1 patient"),
    "harmonise: -o is the clinical table": case("harmonise @study_features.csv --clinical @study_clinical.csv "
                                                "--batch batch -o @study_clinical.csv",
                                                "it is the clinical table this command reads"),
    "predict: a CSV as the model file": case("predict @study_clinical.csv @study_features.csv -o predictions.csv",
                                             "study_clinical.csv' is a text file, not a model",
                                             "MODEL first, then the FEATURES table"),
    "predict: a missing model file": case("predict @nosuch.joblib @study_features.csv -o predictions.csv",
                                          "No model file", "nosuch.joblib", "model.joblib written by radiomicslab study"),

    # web (nothing is served: a case that gets past the checks fails the test)
    "web: --port taken": case("web --port {port} --data @nodicom", "Cannot listen on 127.0.0.1 port {port}",
                              "Address already in use"),
    "web: --port -1": case("web --port -1 --data @nodicom", "'--port'", "0<=x<=65535"),
    "web: --port 70000": case("web --port 70000 --data @nodicom", "70000 is not in the range"),
    "web: --port abc": case("web --port abc --data @nodicom", "'--port'"),
    "web: --host ''": case("web --host '' --data @nodicom", "--host is empty"),
    "web: --host 256.0.0.1": case("web --host 256.0.0.1 --data @nodicom", "--host 256.0.0.1: no such address"),
    "web: --host with a port": case("web --host 127.0.0.1:8080 --data @nodicom", "no such address"),
    "web: --host of another machine": case("web --host 192.0.2.1 --data @nodicom", "Cannot listen on 192.0.2.1"),
    "web: --data missing": case("web --data @nosuch", "does not exist", "--data"),
    "web: --data a file": case("web --data @notafolder", "does not exist", "--data"),
    "web: --max-upload-mb 0": case("web --max-upload-mb 0 --data @nodicom", "'--max-upload-mb'"),
    "web: --output a file": case("web --output @notafolder --data @nodicom", "'--output'", "is a file"),
    "web: --allow-origin not an origin": case("web --allow-origin ftp://x --data @nodicom", "is not a web origin"),

    # the command itself
    "radiomicslab: unknown subcommand": case("extrakt @image.nrrd @mask.nrrd", "No such command 'extrakt'"),
    "radiomicslab: unknown option": case("--verbose extract", "No such option '--verbose'"),
}


#: Cases that fail today, in modules being changed by others; the reason says what is wrong and where to fix it.
KNOWN_ISSUES: dict = {}  # case name -> what fails and the fix, for a case marked xfail (none open)


def _cases(table):
    return [pytest.param(name, marks=pytest.mark.xfail(reason=KNOWN_ISSUES[name], strict=False))
            if name in KNOWN_ISSUES else name for name in table]


def command_line(text, inputs, port):
    """The argv of a case: @NAME (alone, or after = or :) -> the input file NAME, {port} -> the taken port."""
    return [re.sub(r"(^|[=:])@", lambda m: f"{m.group(1)}{inputs}/", word)
            for word in shlex.split(text.replace("{port}", str(port)))]


def _no_serving(*_args, **_kwargs):
    raise AssertionError("the web server would start: the command accepted a bad input")


@pytest.mark.parametrize("name", _cases(CLI_CASES))
def test_bad_input_is_refused(name, inputs, taken_port, tmp_path, monkeypatch, capfd):
    text, fragments, lines = CLI_CASES[name]
    argv = command_line(text, inputs, taken_port)
    work, temporary = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    temporary.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() installs its own
    if argv[0] == "web":
        monkeypatch.setattr("RadiomicsLabLib.web.app.serve", _no_serving)
    before = snapshot(inputs)

    code, out, err = run_in_process(argv, capfd)

    shown = err.strip().splitlines()
    assert code == 2, (argv, code, err)
    assert "Traceback" not in err, err
    assert len(shown) == lines and shown[0].startswith("radiomicslab: error: "), err
    assert all(line.startswith("  ") for line in shown[1:]), err  # listed problems, indented
    for fragment in fragments:
        assert fragment.replace("{port}", str(taken_port)) in shown[0], (fragment, shown[0])
    assert out == "", out
    assert snapshot(inputs) == before, "an input file was changed"
    assert snapshot(work) == {}, "a file was written"
    left = {path: what for path, what in snapshot(temporary).items() if what != "folder"}
    assert left == {}, "a temporary file was left behind"  # (an empty folder is trame-slicer's cache, removed at exit)
    PASSED[name.split(":")[0]] += 1


def test_in_process_runs_match_the_console_script(inputs, taken_port, tmp_path, monkeypatch, capfd):
    """The console script in a fresh process prints the same line and status as the in-process run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    for name in ("extract: --label x", "extract: a typo in a setting", "rings: --from > --to"):
        argv = command_line(CLI_CASES[name][0], inputs, taken_port)
        code, _, err = run_in_process(argv, capfd)
        done = subprocess.run([str(CLI), *argv], capture_output=True, text=True, encoding="utf-8", timeout=120)
        assert (done.returncode, done.stderr, done.stdout) == (code, err, ""), name
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# The web loader: what the browser's requests call
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def web(data, tmp_path_factory):
    """A data folder (the real breast1 image and label map, a cut-short copy, a float label map, a text file,
    broken studies, a symbolic link to a file outside it and one to the folder above it), a secret file outside
    it, and a StudyLoader on a headless scene that holds the real image as the open study."""
    from RadiomicsLabLib.mrml.app import new_headless_app
    from RadiomicsLabLib.mrml.scenefiles import load_volume
    from RadiomicsLabLib.web.loader import DataFolder, StudyLoader

    root = tmp_path_factory.mktemp("web")
    folder = root / "data"
    (folder / "case").mkdir(parents=True)
    cases = data / "pyradiomics_cases"
    image_bytes = (cases / "breast1_image.nrrd").read_bytes()
    (folder / "case" / "image.nrrd").write_bytes(image_bytes)
    (folder / "case" / "label.nrrd").write_bytes((cases / "breast1_label.nrrd").read_bytes())
    (folder / "case" / "cut.nrrd").write_bytes(image_bytes[: len(image_bytes) // 2])
    mask = sitk.ReadImage(str(folder / "case" / "label.nrrd"))
    written(like(sitk.GetArrayFromImage(mask).astype(np.float32) * 0.5, mask), folder / "case", "float_label.nrrd")
    (folder / "case" / "notes.txt").write_text("not loadable\n")
    (folder / "case" / "broken.mrb").write_bytes(b"PK\x03\x04 not really a zip archive")
    with zipfile.ZipFile(folder / "case" / "noscene.mrb", "w") as archive:
        archive.writestr("study/readme.txt", "no scene in here")
    with zipfile.ZipFile(folder / "case" / "escaping.mrb", "w") as archive:
        archive.writestr("study/study.mrml", "<MRML></MRML>")
        archive.writestr("../../outside.txt", "written outside the folder")
    (root / "secret.nrrd").write_bytes(image_bytes)
    (folder / "escape.nrrd").symlink_to(root / "secret.nrrd")
    (folder / "up").symlink_to(root, target_is_directory=True)
    scene = new_headless_app().scene
    loader = StudyLoader(types.SimpleNamespace(scene=scene), data_root=folder, max_upload_bytes=2**20)
    load_volume(scene, folder / "case" / "image.nrrd", "image")  # the open study
    return types.SimpleNamespace(root=root, folder=DataFolder(folder), loader=loader, scene=scene,
                                 image_bytes=image_bytes, secret=root / "secret.nrrd")


def upload(name, content) -> dict:
    """A file as the browser sends it (trame's file dict)."""
    return {"name": name, "size": len(content), "type": "", "content": content}


NOT_INSIDE = "is not a path inside the data folder"
NOT_LISTED = "is not a loadable file of the data folder"
LOADER_CASES = {  # name: (call on the fixture, fragment of the message)
    "path outside the data folder (absolute)": (lambda w: w.folder.path_of(str(w.secret)), NOT_INSIDE),
    "path outside the data folder (/etc/passwd)": (lambda w: w.folder.path_of("/etc/passwd"), NOT_INSIDE),
    "'..' traversal": (lambda w: w.folder.path_of("../secret.nrrd"), NOT_INSIDE),
    "'..' traversal inside a path": (lambda w: w.folder.path_of("case/../../secret.nrrd"), NOT_INSIDE),
    "'..' traversal with backslashes": (lambda w: w.folder.path_of("case\\..\\..\\secret.nrrd"), NOT_INSIDE),
    "a Windows drive path": (lambda w: w.folder.path_of("C:\\secret.nrrd"), NOT_INSIDE),
    "a symbolic link to a file outside": (lambda w: w.folder.path_of("escape.nrrd"), NOT_INSIDE),
    "a symbolic link to the folder above": (lambda w: w.folder.path_of("up/secret.nrrd"), NOT_INSIDE),
    "a NUL byte in the path": (lambda w: w.folder.path_of("case/image.nrrd\x00.txt"), "control characters"),
    "a line break in the path": (lambda w: w.folder.path_of("case/image\n.nrrd"), "control characters"),
    "an empty path": (lambda w: w.folder.path_of(""), NOT_INSIDE),
    "a path of 5000 characters": (lambda w: w.folder.path_of("a" * 5000 + ".nrrd"), NOT_LISTED),
    "a file of the wrong type in the folder": (lambda w: w.folder.path_of("case/notes.txt"), NOT_LISTED),
    "a missing file": (lambda w: w.folder.path_of("case/missing.nrrd"), NOT_LISTED),
    "a folder without DICOM": (lambda w: w.folder.path_of("case"), NOT_LISTED),
    "a study from outside (load_from_data)": (lambda w: w.loader.load_from_data("../secret.nrrd"), NOT_INSIDE),
    "a segmentation from outside": (lambda w: w.loader.load_from_data("case/image.nrrd", "escape.nrrd"), NOT_INSIDE),
    "a corrupt image in the folder": (lambda w: w.loader.load_from_data("case/cut.nrrd"), "cut short"),
    "a corrupt image added as a channel": (lambda w: w.loader.add_volume_from_data("case/cut.nrrd"), "cut short"),
    "a float label map as segmentation": (lambda w: w.loader.add_segmentation_from_data("case/float_label.nrrd"),
                                          "non-integer values"),
    "a broken study in the folder": (lambda w: w.loader.load_from_data("case/broken.mrb"), "is not a Slicer study"),
    "a study without a scene": (lambda w: w.loader.load_from_data("case/noscene.mrb"), "holds no scene (.mrml)"),
    "a study with members outside its folder": (lambda w: w.loader.load_from_data("case/escaping.mrb"),
                                                "members outside its folder"),
    "an unknown sample case": (lambda w: w.loader.load_sample("../brain1"), "Unknown sample case"),
    "an oversized upload": (lambda w: w.loader.load_upload([upload("big.nrrd", b"\0" * (2**20 + 1))], "image"),
                            "more than the limit of 1 MB"),
    "an oversized upload in two files": (lambda w: w.loader.load_upload(
        [upload("a.mhd", b"\0" * 2**19), upload("a.raw", b"\0" * (2**19 + 1))], "image"), "more than the limit"),
    "an upload of the wrong extension": (lambda w: w.loader.load_upload([upload("run.sh", b"#!/bin/sh\n")], "image"),
                                         "not a file type accepted here"),
    "an image uploaded as study": (lambda w: w.loader.load_upload([upload("image.nrrd", w.image_bytes)], "study"),
                                   "not a file type accepted here"),
    "a corrupt upload": (lambda w: w.loader.load_upload([upload("cut.nrrd", w.image_bytes[:5000])], "image"),
                         "cut short"),
    "a text file uploaded as .nrrd": (lambda w: w.loader.load_upload([upload("notes.nrrd", b"hello\n")], "image"),
                                      "not an image RadiomicsLab can read"),
    "a float label map uploaded as segmentation": (lambda w: w.loader.load_upload(
        [upload("float.nrrd", (w.root / "data" / "case" / "float_label.nrrd").read_bytes())], "segmentation"),
        "non-integer values"),
    "a broken study upload": (lambda w: w.loader.load_upload([upload("broken.mrb", b"PK\x03\x04 nope")], "study"),
                              "is not a Slicer study"),
    "an empty upload": (lambda w: w.loader.load_upload([upload("empty.nrrd", b"")], "image"), "is empty"),
    "an upload named with a NUL byte": (lambda w: w.loader.load_upload([upload("a\x00.nrrd", b"x")], "image"),
                                        "control characters"),
    "an upload named '..'": (lambda w: w.loader.load_upload([upload("..", b"x")], "image"), "not a usable file name"),
    "nothing uploaded": (lambda w: w.loader.load_upload([], "image"), "Nothing was uploaded"),
    "two uploads of one name": (lambda w: w.loader.load_upload(
        [upload("a/x.nrrd", w.image_bytes), upload("b/x.nrrd", w.image_bytes)], "image"), "the same name"),
    "two images in one upload": (lambda w: w.loader.load_upload(
        [upload("x.nrrd", w.image_bytes), upload("y.nrrd", w.image_bytes)], "image"), "one image file at a time"),
}


def _scene_state(scene):
    return [(scene.GetNthNode(i).GetID(), scene.GetNthNode(i).GetName()) for i in range(scene.GetNumberOfNodes())]


@pytest.mark.parametrize("name", LOADER_CASES)
def test_web_loader_refuses(name, web, tmp_path, monkeypatch):
    call, fragment = LOADER_CASES[name]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where an upload folder would be made
    before, scene_before = snapshot(web.root), _scene_state(web.scene)
    with pytest.raises(RadiomicsLabError) as raised:
        call(web)
    message = str(raised.value)
    assert fragment in message, (fragment, message)
    assert message and "\n" not in message and "\r" not in message and "\x00" not in message, repr(message)
    assert "Traceback" not in message and "radiomicslab-upload-" not in message, message
    assert snapshot(web.root) == before, "a file of the data folder (or outside it) was changed"
    assert _scene_state(web.scene) == scene_before, "the open study was changed"
    assert list(tmp_path.iterdir()) == [], "an upload was left on disk"
    PASSED["web loader"] += 1


# ---------------------------------------------------------------------------------------------------
# The count, in pytest's terminal summary
# ---------------------------------------------------------------------------------------------------
class _CountReport:
    def pytest_terminal_summary(self, terminalreporter):
        total = sum(PASSED.values())
        if total:
            by_command = ", ".join(f"{command} {count}" for command, count in sorted(PASSED.items()))
            known = f"; {len(KNOWN_ISSUES)} known issues marked xfail" if KNOWN_ISSUES else ""
            terminalreporter.write_line(f"bad-input suite: {total} cases passed of "
                                        f"{len(CLI_CASES) + len(LOADER_CASES)} ({by_command}){known}")


@pytest.fixture(scope="module", autouse=True)
def count_report(request):
    """Registers the summary line once per session (a module fixture of this file; no conftest hook needed)."""
    manager = request.config.pluginmanager
    if not manager.has_plugin("bad-input-count"):
        manager.register(_CountReport(), "bad-input-count")
    yield
