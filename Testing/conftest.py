"""Shared fixtures: the real reference data (``RADIOMICSLAB_DATA``), headless scenes, the real CLI."""

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

from RadiomicsLabLib.data import data_dir, sample_case
from RadiomicsLabLib.ibsi.reference import chapter1_reference
from RadiomicsLabLib.study.examples import site_effects

#: Shared with the study tests: the made imaging sites of RadiomicsLabLib.study.examples.
__all__ = ["site_effects"]

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
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, encoding="utf-8", cwd=cwd,
                          timeout=300)


def failing_reference_rows(values: dict, dataset: str, prefixes=(), families=()):
    """(rows, failing) of the IBSI chapter 1 reference table ``dataset`` (``digital_phantom``, ``config_A`` ...).

    ``rows``: the reference rows whose tag starts with one of the tag ``prefixes`` (``"cm"``: ``cm_*``) or
    whose family is one of ``families`` (``"Morphology"``); ``failing``: (tag, value, reference, tolerance) of
    each of them that ``values`` misses by the IBSI pass rule, a tag not in ``values`` included.
    """
    prefixes = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
    families = (families,) if isinstance(families, str) else tuple(families)
    starts = tuple(f"{prefix}_" for prefix in prefixes)
    rows = [r for r in chapter1_reference(dataset) if (starts and r.tag.startswith(starts)) or r.family in families]
    failing = [(r.tag, values.get(r.tag), r.reference, r.tolerance) for r in rows
               if not r.passes(values.get(r.tag, math.nan))]
    return rows, failing


def table_values(table_node) -> list:
    """Every column of a table node: (name, array class, each value's repr) -- exact doubles, NaN equal to NaN."""
    table = table_node.GetTable()
    columns = [table.GetColumn(j) for j in range(table.GetNumberOfColumns())]
    return [(c.GetName(), c.GetClassName(), [repr(c.GetValue(i)) for i in range(c.GetNumberOfTuples())]) for c in columns]


def chart_values(chart) -> list:
    """Each plot series of a chart: its columns and the values of its table."""
    series = [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]
    return [(s.GetXColumnName(), s.GetYColumnName(), table_values(s.GetTableNode())) for s in series]


def start_then_cancel(job, after_s: float = 0.3):
    """Start ``job`` in a real worker process (BackgroundRun), cancel it ``after_s`` later while it still runs, and
    check the worker is gone within 2 s and the run says cancelled (JobCancelled); the run, for scene checks."""
    import time

    from RadiomicsLabLib.background import BackgroundRun, JobCancelled

    run = BackgroundRun(job)
    time.sleep(after_s)
    assert run.poll(), f"the job should still be running {after_s} s after the start"
    started = time.monotonic()
    run.cancel()
    while run.worker_alive and time.monotonic() - started < 3.0:
        time.sleep(0.01)
    assert not run.worker_alive and time.monotonic() - started < 2.0
    assert run.state == "cancelled" and not run.poll()
    with pytest.raises(JobCancelled):
        run.result()
    return run


def write_rows(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def breast_cancer_tables(folder):
    """(features.csv, features.parquet, clinical.csv, the sklearn bunch) of the breast cancer table.

    Ids P0001..P0569 in the table's order; clinical: diagnosis (malignant / benign, sklearn's target 0 / 1),
    split (every 5th patient test), batch (A, B, C in turn; made up) and the real 'mean radius' as a covariate
    (moved out of the features)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    folder = Path(folder)
    ids = [f"P{i + 1:04d}" for i in range(len(bunch.target))]
    names = [str(n) for n in bunch.feature_names]
    features = names[1:]  # 'mean radius' goes to the clinical table
    write_rows(folder / "features.csv", ["id", *features], [[i, *map(repr, row[1:].tolist())] for i, row in zip(ids, bunch.data)])
    pq.write_table(pa.table({"id": ids, **{n: bunch.data[:, j + 1] for j, n in enumerate(features)}}), folder / "features.parquet")
    write_rows(folder / "clinical.csv", ["id", "diagnosis", "split", "batch", "mean radius", "note"],
               [[i, bunch.target_names[t], "test" if k % 5 == 4 else "train", "ABC"[k % 3], repr(float(r)), "x"]
                for k, (i, t, r) in enumerate(zip(ids, bunch.target, bunch.data[:, 0]))])
    return folder / "features.csv", folder / "features.parquet", folder / "clinical.csv", bunch


# The end of the test process ------------------------------------------------------------------------
def pytest_sessionfinish(session, exitstatus):
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


_EXIT_STATUS = pytest.StashKey[int]()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the test process once every result is reported, without Python's interpreter teardown.

    By then this process has held hundreds of headless Slicer applications, in-process Dask clusters,
    joblib's process pool and a browser driver. Python then destroys the remaining objects in no set
    order, and a VTK object destroyed after the modules its callbacks use can crash the process (once
    in CI: every test passed, then ``Segmentation fault``). That teardown is not a behaviour of
    RadiomicsLab: its command line exits normally and its exit status is checked in every CLI test
    (each runs in its own process). So the worker processes still alive are stopped (their pipes
    would keep a caller's output open), the output is flushed, and the process ends with pytest's
    own exit status.
    """
    import multiprocessing
    import os

    if _EXIT_STATUS not in config.stash:
        return
    try:
        from joblib.externals.loky import process_executor  # joblib's reusable pool, if a test started it

        process_executor._python_exit()
    except Exception:  # noqa: BLE001 - absent or already shut down
        pass
    for child in multiprocessing.active_children():
        child.terminate()
        child.join(5)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash[_EXIT_STATUS])
