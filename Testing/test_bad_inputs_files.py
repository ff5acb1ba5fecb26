"""Bad files and bad output paths, through the real ``radiomicslab`` command.

Cut-short images (NIfTI and NRRD, gzip and raw, cut in the header, the middle and the last bytes) are
the real shared images, re-encoded and cut with Python into tmp_path; an output path that is an input
(also through a symbolic link, a hard link or ``..``) or has the wrong ending; ``-o -``; the IBSI data
folder; ITK errors; DICOM folders. Each case: exit status 2, one line on stderr saying what to do, no
traceback, the inputs unchanged (SHA-256 before and after) and nothing written.
"""

import hashlib
import io
import os
import subprocess

import pytest
import SimpleITK as sitk

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.imageio import read_image, verify_file

from conftest import CLI


def run(*args, cwd, env=None):
    environment = {**os.environ, **(env or {})}
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, encoding="utf-8", cwd=cwd,
                          env=environment, timeout=300)


def snapshot(folder):
    """Every file under ``folder`` with its SHA-256 (links as their target's name)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                found[path] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                found[path] = hashlib.sha256(open(path, "rb").read()).hexdigest()
            else:
                found[path] = "folder"
    return found


def assert_refused(args, folder, *fragments, env=None, lines=1):
    """Run in ``folder``: exit 2, ``lines`` line(s) on stderr (the first naming ``fragments``), no traceback,
    and every file under ``folder`` unchanged with nothing added."""
    before = snapshot(folder)
    done = run(*args, cwd=folder, env=env)
    stderr = done.stderr.strip().splitlines()
    assert done.returncode == 2, (args, done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "WARNING" not in done.stderr, done.stderr
    assert len(stderr) == lines and stderr[0].startswith("radiomicslab: error: "), done.stderr
    for fragment in fragments:
        assert fragment in stderr[0], (fragment, stderr[0])
    assert done.stdout == ""
    assert snapshot(folder) == before, "a file was written or changed"
    return stderr[0]


@pytest.fixture(scope="module")
def sts(data):
    """The real STS_001 PET image and GTV mask (NIfTI, gzip)."""
    folder = data / "sts" / "STS_001"
    return folder / "PET_image.nii.gz", folder / "PET_mask.nii.gz"


@pytest.fixture(scope="module")
def brain1_files(data):
    folder = data / "pyradiomics_cases"
    return folder / "brain1_image.nrrd", folder / "brain1_label.nrrd"


def encoded(source, folder, name, compressed):
    """A real image written again by SimpleITK as ``name`` (the format by its ending), gzip or raw."""
    path = folder / name
    sitk.WriteImage(sitk.ReadImage(str(source)), str(path), compressed)
    return path


# Cut-short images through `extract` ---------------------------------------------------------------
FORMATS = {  # name: (case fixture, file name, compressed)
    "nifti-gzip": ("sts", "image.nii.gz", True),
    "nifti-raw": ("sts", "image.nii", False),
    "nrrd-gzip": ("brain1_files", "image.nrrd", True),
    "nrrd-raw": ("brain1_files", "image.nrrd", False),
}
CUTS = {  # where: bytes kept, from the file's length
    "header": lambda size: 40,
    "middle": lambda size: size // 2,
    "last-bytes": lambda size: size - 3,
}


@pytest.mark.parametrize("where", CUTS)
@pytest.mark.parametrize("kind", FORMATS)
def test_cut_short_image_is_refused_by_extract(kind, where, request, tmp_path):
    fixture, name, compressed = FORMATS[kind]
    image, mask = request.getfixturevalue(fixture)
    whole = encoded(image, tmp_path, "whole_" + name, compressed).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(whole[: CUTS[where](len(whole))])
    (tmp_path / ("whole_" + name)).unlink()
    line = assert_refused(["extract", cut, mask, "-o", "features.csv"], tmp_path, f"'{cut}'", "cut short",
                          "copy or export it again")
    assert ("header" if where == "header" else "stream ends" if compressed else "bytes of voxel data") in line, line


def test_cut_short_mask_and_longer_file(sts, tmp_path):
    image, mask = sts
    cut = tmp_path / "mask.nii.gz"
    cut.write_bytes(mask.read_bytes()[:-8])
    assert_refused(["extract", image, cut], tmp_path, "The mask", "mask.nii.gz", "cut short")
    longer = tmp_path / "image.nii"
    longer.write_bytes(encoded(image, tmp_path, "raw.nii", False).read_bytes() + b"\0" * 6)
    assert_refused(["extract", longer, mask], tmp_path, "6 bytes more voxel data than its header describes")


@pytest.mark.parametrize("command", ["habitats", "delta", "observers"])
def test_cut_short_image_is_refused_by_the_workflows(command, sts, tmp_path):
    image, mask = sts
    cut = tmp_path / "pet.nii.gz"
    cut.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    args = {"habitats": ["habitats", mask, "--channel", f"PET={cut}", "-o", "out"],
            "delta": ["delta", "--timepoint", f"2020-01-01:{image}:{mask}", "--timepoint", f"2020-03-01:{cut}:{mask}", "-o", "out"],
            "observers": ["observers", cut, mask, mask, "--no-features", "-o", "out"]}[command]
    assert_refused(args, tmp_path, "pet.nii.gz", "cut short")


def test_cut_short_image_is_an_invalid_batch_case(sts, tmp_path):
    image, mask = sts
    cut = tmp_path / "pet.nii.gz"
    cut.write_bytes(image.read_bytes()[:-100])
    (tmp_path / "cohort.csv").write_text(f"id,image,mask\np1,{cut},{mask}\n")
    done = run("batch", "cohort.csv", "-o", "out", "--workers", "0", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "pet.nii.gz" in done.stderr and "cut short" in done.stderr
    assert not (tmp_path / "out").exists()


# The checks in-process, on more layouts ---------------------------------------------------------
def test_intact_files_of_every_layout_read(sts, brain1_files, tmp_path):
    for source in (*sts, *brain1_files):
        verify_file(source)
    for name, compressed in (("a.nii", False), ("a.nii.gz", True), ("b.nrrd", False), ("c.nrrd", True), ("d.mha", False),
                             ("e.mha", True), ("f.mhd", True), ("g.nhdr", False), ("h.hdr", False)):
        path = encoded(brain1_files[0], tmp_path, name, compressed)
        assert sitk.GetArrayFromImage(read_image(path)).shape == (25, 256, 256), name


@pytest.mark.parametrize("name,compressed", [("d.mha", False), ("e.mha", True), ("g.nhdr", False), ("h.hdr", False),
                                             ("f.mhd", True)])
def test_cut_short_metaimage_and_detached_data(name, compressed, brain1_files, tmp_path):
    path = encoded(brain1_files[0], tmp_path, name, compressed)
    data = {".mha": path, ".nhdr": path.with_suffix(".raw"), ".hdr": path.with_suffix(".img"),
            ".mhd": path.with_suffix(".zraw")}[path.suffix]
    data.write_bytes(data.read_bytes()[:-5])
    with pytest.raises(RadiomicsLabError, match="cut short") as error:
        read_image(path, "image")
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    if data != path:
        assert f"voxel data in '{data}'" in str(error.value)


def test_damaged_gzip_data_is_refused(sts, tmp_path):
    data = bytearray(sts[0].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: a broken deflate block or checksum
    damaged = tmp_path / "damaged.nii.gz"
    damaged.write_bytes(bytes(data))
    with pytest.raises(RadiomicsLabError, match="damaged|cut short"):
        read_image(damaged)


# DICOM folders -------------------------------------------------------------------------------------
@pytest.fixture
def dicom_series(sts, tmp_path):
    """The real PET image written as a DICOM series, one file per slice."""
    image = sitk.Cast(sitk.RescaleIntensity(sitk.ReadImage(str(sts[0])), 0, 4000), sitk.sitkInt16)
    folder = tmp_path / "series"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    for k in range(image.GetDepth()):
        piece = image[:, :, k]
        for tag, value in (("0020|000d", "1.2.826.0.1.3680043.2.1125.77.1"), ("0020|000e", "1.2.826.0.1.3680043.2.1125.77.2"),
                           ("0008|0060", "PT"), ("0020|0013", str(k + 1)),
                           ("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k))))),
                           ("0020|0037", "\\".join(map(str, direction[0:7:3] + direction[1:8:3])))):
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(piece)
    return folder, image.GetSize()


def test_dicom_series_reads_and_a_cut_slice_is_named(dicom_series, sts, tmp_path):
    folder, size = dicom_series
    assert read_image(folder).GetSize() == size
    slice_ = folder / "slice010.dcm"
    slice_.write_bytes(slice_.read_bytes()[:-20])  # GDCM would leave it out silently
    assert_refused(["extract", folder, sts[1]], tmp_path, "slice010.dcm", "not a readable slice", "cut short")
    slice_.unlink()
    assert_refused(["extract", folder, sts[1]], tmp_path, "missing or unevenly spaced slices")


def test_folder_without_dicom_prints_no_gdcm_warning(sts, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_refused(["extract", "empty", sts[1]], tmp_path, "holds no DICOM series")


# Outputs that are inputs, wrong endings, standard output -----------------------------------------
@pytest.fixture
def copies(brain1_files, tmp_path):
    """brain1 image and mask copied into tmp_path, also under .csv names (a file's name is no protection)."""
    for source, name in zip(brain1_files, ("image.nrrd", "mask.nrrd")):
        (tmp_path / name).write_bytes(source.read_bytes())
    (tmp_path / "image.csv").write_bytes(brain1_files[0].read_bytes())
    (tmp_path / "mask.csv").write_bytes(brain1_files[1].read_bytes())
    (tmp_path / "clip.nrrd").write_bytes(brain1_files[1].read_bytes())
    (tmp_path / "sub").mkdir()
    os.symlink("image.csv", tmp_path / "link.csv")
    os.link(tmp_path / "mask.csv", tmp_path / "hard.csv")
    return tmp_path


OUTPUT_CASES = {  # name: (arguments, fragments of the message)
    "extract -o IMAGE": (["extract", "image.nrrd", "mask.nrrd", "-o", "image.nrrd"], ["it is the image"]),
    "extract -o MASK": (["extract", "image.nrrd", "mask.nrrd", "-o", "mask.nrrd"], ["it is the mask"]),
    "extract -o out.txt": (["extract", "image.nrrd", "mask.nrrd", "-o", "out.txt"], ["-o writes a CSV table", "must end in .csv"]),
    "extract -o MASK (same name)": (["extract", "image.csv", "mask.csv", "-o", "mask.csv"], ["it is the mask", "inputs are never overwritten"]),
    "extract -o symbolic link to IMAGE": (["extract", "image.csv", "mask.csv", "-o", "link.csv"], ["it is the image 'image.csv'"]),
    "extract -o hard link to MASK": (["extract", "image.csv", "mask.csv", "-o", "hard.csv"], ["it is the mask 'mask.csv'"]),
    "extract -o sub/../IMAGE": (["extract", "image.csv", "mask.csv", "-o", "sub/../image.csv"], ["it is the image"]),
    "extract --scene IMAGE": (["extract", "image.nrrd", "mask.nrrd", "--scene", "image.nrrd"], ["it is the image"]),
    "extract --scene s.nrrd": (["extract", "image.nrrd", "mask.nrrd", "--scene", "s.nrrd"], ["--scene", "must end in .mrb"]),
    "extract -o PARAMETERS": (["extract", "image.nrrd", "mask.nrrd", "--params", "sub/delta.csv", "-o", "sub/delta.csv"],
                              ["it is the parameter file"]),
    "extract --scene -": (["extract", "image.nrrd", "mask.nrrd", "--scene", "-"], ["--scene -", "study.mrb"]),
    "rings -o MASK": (["rings", "mask.nrrd", "--from", "0", "--to", "3", "-o", "mask.nrrd"], ["it is the mask"]),
    "rings -o CLIP": (["rings", "mask.nrrd", "--from", "0", "--to", "3", "--clip", "clip.nrrd", "-o", "clip.nrrd"],
                      ["it is the clip mask"]),
    "rings -o r.txt": (["rings", "mask.nrrd", "--from", "0", "--to", "3", "-o", "r.txt"], ["must end in .nrrd, .nii, .nii.gz or .mha"]),
    "rings -o -": (["rings", "mask.nrrd", "--from", "0", "--to", "3", "-o", "-"], ["-o -", "ring.nrrd"]),
    "maps -o IMAGE": (["maps", "image.nrrd", "mask.nrrd", "-f", "firstorder_Mean", "-o", "image.nrrd"], ["it is the image"]),
    "maps -o -": (["maps", "image.nrrd", "mask.nrrd", "-f", "firstorder_Mean", "-o", "-"], ["-o -", "folder"]),
    "maps -o folder holding an input": (["maps", "sub/stat_mean.nrrd", "mask.nrrd", "-f", "firstorder_Mean", "-o", "sub"],
                                        ["stat_mean.nrrd", "it is the image"]),  # the IBSI map of firstorder_Mean
    "habitats: map is the mask": (["habitats", "sub/habitats.nrrd", "--channel", "MR=image.nrrd", "-o", "sub"], ["it is the mask"]),
    "habitats -o -": (["habitats", "mask.nrrd", "--channel", "MR=image.nrrd", "-o", "-"], ["-o -"]),
    "observers: consensus is a mask": (["observers", "image.nrrd", "sub/consensus_staple.nrrd", "mask.nrrd", "--no-features",
                                        "-o", "sub"], ["it is the mask of observer 'consensus_staple'"]),
    "delta: table is the ICC table": (["delta", "--timepoint", "2020-01-01:image.nrrd:mask.nrrd", "--timepoint",
                                       "2020-02-01:image.nrrd:mask.nrrd", "--icc", "sub/delta.csv", "-o", "sub"],
                                      ["it is the ICC table"]),
    "delta -o IMAGE": (["delta", "--timepoint", "2020-01-01:image.nrrd:mask.nrrd", "--timepoint",
                        "2020-02-01:image.nrrd:mask.nrrd", "-o", "image.nrrd"], ["it is the image of --timepoint"]),
    "batch: table is the cohort": (["batch", "sub/features.csv", "-o", "sub", "--workers", "0"], ["it is the cohort"]),
    "batch -o -": (["batch", "sub/features.csv", "-o", "-", "--workers", "0"], ["-o -"]),
    "demo -o -": (["demo", "-o", "-"], ["-o -"]),
    "ibsi -o -": (["ibsi", "-o", "-", "--dataset", "digital_phantom"], ["-o -"]),
}


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_output_that_is_an_input_or_of_the_wrong_kind_is_refused(case, copies):
    args, fragments = OUTPUT_CASES[case]
    for name in ("stat_mean.nrrd", "habitats.nrrd", "consensus_staple.nrrd"):
        (copies / "sub" / name).write_bytes((copies / "mask.nrrd").read_bytes())
    (copies / "sub" / "delta.csv").write_text("feature,icc,ci_low,ci_high\noriginal_firstorder_Mean,0.9,0.8,0.95\n")
    (copies / "sub" / "features.csv").write_text(f"id,image,mask\np1,{copies / 'image.nrrd'},{copies / 'mask.nrrd'}\n")
    assert_refused(args, copies, *fragments)


def test_dash_writes_the_table_to_standard_output(copies):
    done = run("extract", "image.nrrd", "mask.nrrd", "-o", "-", cwd=copies)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("segment,image_type,feature_class,feature,ibsi_tag,value\n")
    assert not (copies / "-").exists() and not (copies / "-.provenance.json").exists()


def test_no_progress_bar_in_a_log(copies):
    """Two segments draw a progress bar on a terminal; stderr to a file gets only the summary line."""
    mask = sitk.ReadImage(str(copies / "mask.nrrd"))
    array = sitk.GetArrayFromImage(mask)
    array[: array.shape[0] // 2][array[: array.shape[0] // 2] == 1] = 2
    two = sitk.GetImageFromArray(array)
    two.CopyInformation(mask)
    sitk.WriteImage(two, str(copies / "two.nrrd"))
    done = run("extract", "image.nrrd", "two.nrrd", "-o", "two.csv", cwd=copies)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1 and "\r" not in done.stderr and "segment/s" not in done.stderr, done.stderr


def test_progress_bar_only_on_a_terminal():
    from RadiomicsLabLib.commands import progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    log, terminal = io.StringIO(), Terminal()
    for stream in (log, terminal):
        bar = progress_bar(total=3, unit="case", file=stream)
        bar.update(3)
        bar.close()
    assert log.getvalue() == "" and "3/3" in terminal.getvalue()


# The IBSI data folder, ITK errors ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["missing", "a file", "an empty folder", "a cut-short image"])
def test_ibsi_reference_folder_problems(kind, data, tmp_path):
    folder = tmp_path / "refdata"
    if kind == "a file":
        folder.write_text("not a folder\n")
    elif kind == "an empty folder":
        folder.mkdir()
    elif kind == "a cut-short image":
        (folder / "ibsi1" / "digital_phantom").mkdir(parents=True)
        source = data / "ibsi1" / "digital_phantom"
        (folder / "ibsi1" / "digital_phantom" / "image.nii.gz").write_bytes((source / "image.nii.gz").read_bytes()[:-4])
        (folder / "ibsi1" / "digital_phantom" / "mask.nii.gz").write_bytes((source / "mask.nii.gz").read_bytes())
        (folder / "ibsi1" / "reference_values_digital_phantom.csv").write_bytes(
            (data / "ibsi1" / "reference_values_digital_phantom.csv").read_bytes())
    fragment = {"missing": "does not exist", "a file": "is a file", "an empty folder": "has no ibsi1/",
                "a cut-short image": "cut short"}[kind]
    assert_refused(["ibsi", "-o", "out", "--dataset", "digital_phantom"], tmp_path, fragment,
                   env={"RADIOMICSLAB_DATA": str(folder)})


LABEL_CASES = {
    "extract --label 0": ["extract", "image.nrrd", "mask.nrrd", "--label", "0"],
    "maps --label 0": ["maps", "image.nrrd", "mask.nrrd", "-f", "firstorder_Mean", "--label", "0", "-o", "maps"],
    "rings --label 0": ["rings", "mask.nrrd", "--from", "0", "--to", "3", "--label", "0", "-o", "ring.nrrd"],
}


@pytest.mark.parametrize("case", LABEL_CASES)
def test_label_zero_is_one_line_saying_what_to_change(case, copies):
    assert_refused(LABEL_CASES[case], copies, "0 is the background", "1 or more")


def test_tiny_resampled_spacing_is_one_line_saying_what_to_change(copies):
    (copies / "tiny.yaml").write_text("setting:\n  resampledPixelSpacing: [0.001, 0.001, 0.001]\n")
    assert_refused(["extract", "image.nrrd", "mask.nrrd", "--params", "tiny.yaml"], copies,
                   "resampledPixelSpacing [0.001, 0.001, 0.001]", "memory", "use a spacing close to the image's")


def test_itk_error_text_becomes_one_line():
    from RadiomicsLabLib.cli import user_message

    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.Execute(sitk.Image([4, 4, 4], sitk.sitkUInt8) + 1)
    with pytest.raises(RuntimeError) as raised:
        statistics.GetBoundingBox(0)
    message = user_message(RadiomicsLabError(f"pyradiomics could not process segment 'Label_0': {raised.value}"))
    assert "\n" not in message and "0x" not in message and ".hxx" not in message, message
    assert message.startswith("pyradiomics could not process segment 'Label_0': ") and "label value of a segment" in message
    memory = ("Exception thrown in SimpleITK ResampleImageFilter_Execute: /tmp/itkImportImageContainer.hxx:179:\n"
              "Failed to allocate memory for image.")
    assert user_message(RuntimeError(memory)) == (
        "ITK: Failed to allocate memory for image; the image grid is too large for this machine's memory; use a coarser "
        "resampledPixelSpacing (close to the image's spacing) or a smaller image.")
