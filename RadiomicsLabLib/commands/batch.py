"""``radiomicslab batch COHORT -o DIR``: features of every case of a cohort, resumable, on all cores or a Dask cluster."""

import sys
from pathlib import Path

import click

from ..settings import ENGINES


#: The options :func:`cluster_options` adds, as they are named in messages.
BATCH_OPTIONS = ("--workers", "--memory-limit", "--scheduler", "--retry-failed", "--keep-going")


def cluster_options(command):
    """The options of a cohort run on the batch layer (``radiomicslab batch`` and the cohort modes of
    the other workflows): --workers, --memory-limit, --scheduler, --retry-failed, --keep-going.

    ``--keep-going`` has one meaning everywhere: rows of the cohort file with problems (found before
    any work, every one listed with its row) are recorded in DIR/errors.csv and the valid cases (or
    patients, lesions: a unit with one bad row is left out whole) run; without it the problems are
    listed and nothing runs (exit status 2). A case that fails while it runs is always recorded in
    errors.csv and the others go on (exit status 1).
    """
    options = [
        click.option("--workers", type=click.IntRange(min=0), default=None,
                     help="Worker processes on this machine (default: one per core; 0: run in this process)."),
        click.option("--memory-limit", default="auto", show_default=True,
                     help="Memory limit per local worker, e.g. 4GiB; a worker going over it is restarted and its case retried."),
        click.option("--scheduler", default=None,
                     help="Address of an existing Dask scheduler (tcp://HOST:PORT) instead of local workers."),
        click.option("--retry-failed", is_flag=True, help="Run again the cases that failed before (otherwise they are skipped)."),
        click.option("--keep-going", is_flag=True,
                     help="Run the valid cases (patients, lesions) when some rows of the cohort have problems; the "
                          "problems are listed in errors.csv. Without it they are listed and nothing runs. A case that "
                          "fails while it runs is always listed in errors.csv and the others go on."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def refuse_batch_options(workers, memory_limit, scheduler, retry_failed, keep_going):
    """A usage error when a batch option is given without --cohort (the options run the cases of a cohort)."""
    if workers is not None or scheduler or memory_limit != "auto" or retry_failed or keep_going:
        raise click.UsageError(f"{', '.join(BATCH_OPTIONS)} run the cases of a --cohort on the batch layer; give --cohort.")


def run_with_progress(cases, output_dir, task, unit="case", workers=None, scheduler=None, memory_limit="auto",
                      cluster=None, **options):
    """``run_batch`` with a progress bar (cases, rate, ETA) on stderr; invalid rows are warned about
    first (with ``keep_going``), and Ctrl-C says how to resume. Returns the :class:`BatchSummary`.

    ``cases``: a :class:`~RadiomicsLabLib.cohort.Cohort`, or a function reading one (it is called once
    the cluster has begun to start, so worker processes start while the cohort is read and checked).
    ``cluster``: a :class:`~RadiomicsLabLib.batch.ClusterStart` (or None for ``workers=0``) the caller
    started and closes, shared by several stages; by default one is started here and closed at the end.
    """
    from RadiomicsLabLib.batch import run_batch, start_cluster

    bar, finished = _ProgressBar(unit), [0]

    def progress(done, total, message):
        finished[0] = done
        bar.update(done, total, message)

    own = cluster is None
    if own:
        cluster = start_cluster(workers, scheduler, memory_limit)
    try:
        if callable(cases):
            cases = cases()
        if options.get("keep_going"):
            warn_skipped(cases.check(keep_going=True))
        if cluster is None:  # workers=0 (a shared "cluster" of none)
            options.update(workers=0, scheduler=None, memory_limit=memory_limit)
        else:
            options["cluster"] = cluster
        return run_batch(cases, output_dir, task, progress=progress, **options)
    except KeyboardInterrupt:
        bar.close()
        click.echo(f"radiomicslab: interrupted; {finished[0]} {unit}(s) finished in this run are kept in "
                   f"{Path(output_dir) / task.cases_dir}; run the same command again to resume.", err=True)
        raise
    finally:
        bar.close()
        if own and cluster is not None:
            cluster.close()


def warn_skipped(cohort):
    """Warn, one line each, about the rows of a cohort left out with --keep-going."""
    for problem in cohort.problems:
        click.echo(f"radiomicslab: warning: skipping invalid {problem}", err=True)


@click.command("batch")
@click.argument("cohort", type=click.Path(path_type=Path))
@click.option("-o", "--output-dir", type=click.Path(path_type=Path), required=True,
              help="Folder for features.csv, features.parquet, errors.csv, provenance.json and the per-case results (cases/).")
@click.option("--params", default=None, help="pyradiomics parameter file (YAML/JSON) or preset name (see `radiomicslab presets`).")
@click.option("--engine", type=click.Choice(ENGINES), default=None,
              help="Feature engine: pyradiomics, native or ibsi (default: what the parameters declare, else pyradiomics where it is installed, else native).")
@click.option("--image-type", "image_types", multiple=True,
              help="Image type replacing the parameter file's, e.g. Original, 'LoG:sigma=1,3', Wavelet (repeatable).")
@cluster_options
@click.option("--channel", "channels", multiple=True, help="Only cases of this channel (repeatable), e.g. CT.")
@click.option("--status", "show_status", is_flag=True, help="Only print each case's status in DIR (done, failed, pending, invalid).")
def command(cohort, output_dir, params, engine, image_types, workers, memory_limit, scheduler, channels, retry_failed,
            keep_going, show_status):
    """Extract features of every case of COHORT into DIR.

    COHORT is a CSV file with columns id,image,mask (optional label, timepoint, observer, channel, roi;
    paths relative to the file) or a folder with one sub-folder per patient holding
    <name>_image / <name>_mask pairs. A mask may be a DICOM RTSTRUCT or SEG (.dcm) with the image the
    folder of its DICOM series: every ROI is then its own segment, named by the ROI (or the ROI the roi
    column names), as 'radiomicslab extract' gives them. Every row is checked before any work. Finished cases are
    kept as they arrive, so a rerun (after a failure, Ctrl-C or a killed process) skips them and
    does the rest. Exit status: 0 when every case is done, 1 when some failed or were invalid,
    2 for bad input.
    """
    from RadiomicsLabLib.batch import OUTPUT_FILES, cohort_status, extraction_task, status_counts
    from RadiomicsLabLib.cohort import read_cohort
    from RadiomicsLabLib.fileio import check_output, check_outputs

    inputs = [("cohort", cohort), ("parameter file", params)]
    check_output(output_dir, inputs, "folder")
    task = extraction_task(params, image_types, engine)
    if show_status:
        cases = read_cohort(cohort, channels)
        statuses = cohort_status(output_dir, cases, task)
        for status in statuses:
            detail = status.error or status.note
            click.echo(f"{status.key or '-'}\t{status.where}\t{status.status}" + (f"\t{detail}" if detail else ""))
        click.echo(", ".join(f"{n} {s}" for s, n in status_counts(statuses).items()), err=True)
        return
    outputs = [output_dir / name for name in OUTPUT_FILES]
    check_outputs(outputs, inputs)

    summary = run_with_progress(lambda: read_cohort(cohort, channels), output_dir, task, workers=workers,
                                scheduler=scheduler, memory_limit=memory_limit, retry_failed=retry_failed,
                                keep_going=keep_going)
    click.echo(f"Batch: {summary} -> {output_dir / 'features.csv'} (+ features.parquet, errors.csv, provenance.json)",
               err=True)
    if summary.failed or summary.invalid:
        click.echo(f"radiomicslab: {summary.failed + summary.invalid} case(s) with errors, listed in "
                   f"{output_dir / 'errors.csv'}; fix them and run again (failed cases need --retry-failed).", err=True)
        sys.exit(1)


class _ProgressBar:
    """A tqdm bar on stderr (cases, rate, ETA), opened at the first finished case."""

    def __init__(self, unit="case"):
        self.bar, self.unit = None, unit

    def update(self, done, total, message):
        if total == 0:
            return
        if self.bar is None:
            from . import progress_bar

            self.bar = progress_bar(total=total, unit=self.unit, desc="batch", dynamic_ncols=True)
        self.bar.set_postfix_str(message, refresh=False)
        self.bar.update(done - self.bar.n)
        if done == total:
            self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
