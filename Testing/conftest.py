"""Shared fixtures: the real reference data (``RADIOMICSLAB_DATA``), headless scenes, the real CLI."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

from RadiomicsLabLib.data import data_dir, sample_case

CLI = Path(sys.executable).with_name("radiomicslab")


@pytest.fixture(scope="session")
def data():
    folder = data_dir()
    if not (folder / "pyradiomics_cases").is_dir():
        pytest.fail(f"Reference data not found in {folder}; set RADIOMICSLAB_DATA to the shared data folder.")
    return folder


@pytest.fixture(scope="session")
def brain1(data):
    """(image path, label path) of the real brain1 MR case."""
    return sample_case("brain1")


@pytest.fixture
def scene():
    """A fresh, empty headless MRML scene (its own SlicerApp)."""
    from RadiomicsLabLib.mrml.app import new_headless_app

    return new_headless_app().scene


def read_sitk(path):
    return sitk.ReadImage(str(path))


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_cli(*args, cwd=None):
    """Run the installed ``radiomicslab`` console script; returns the CompletedProcess."""
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)
