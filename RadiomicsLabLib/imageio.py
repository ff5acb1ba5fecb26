"""Reading images and label maps (NRRD, NIfTI, MHA, ... or a DICOM series folder) with SimpleITK."""

import os
from pathlib import Path

import SimpleITK as sitk

from .errors import RadiomicsLabError

FORMATS = "NRRD, NIfTI, MetaImage, or a folder with one DICOM series"


def read_image(path, what: str = "image") -> sitk.Image:
    """Read a scalar image from a file or a DICOM series folder; ``what`` names it in messages."""
    path = Path(path)
    if not path.exists():
        raise RadiomicsLabError(f"Cannot read {what} '{path}': no such file or folder; check the path.")
    if not os.access(path, os.R_OK):
        raise RadiomicsLabError(f"Cannot read {what} '{path}': permission denied.")
    image = _read_dicom_folder(path, what) if path.is_dir() else _read_file(path, what)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise RadiomicsLabError(
            f"The {what} '{path}' has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
            "give a scalar (single-channel) image."
        )
    if image.GetDimension() not in (2, 3):
        raise RadiomicsLabError(f"The {what} '{path}' is {image.GetDimension()}D; give a 2D or 3D image.")
    return image


def _read_file(path: Path, what: str) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError:
        raise RadiomicsLabError(
            f"The {what} '{path}' is not an image RadiomicsLab can read; use {FORMATS}."
        ) from None


def _read_dicom_folder(path: Path, what: str) -> sitk.Image:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
    if not series:
        raise RadiomicsLabError(f"The folder '{path}' given as {what} holds no DICOM series; use {FORMATS}.")
    if len(series) > 1:
        raise RadiomicsLabError(
            f"The folder '{path}' holds {len(series)} DICOM series ({', '.join(series)}); "
            "put each series in a folder of its own and give that folder."
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), series[0]))
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise RadiomicsLabError(f"Cannot read the DICOM series in '{path}': {str(error).strip().splitlines()[-1]}") from None
