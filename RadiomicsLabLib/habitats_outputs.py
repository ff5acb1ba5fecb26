"""The files of a habitat run (:mod:`RadiomicsLabLib.habitats`): label maps, tables, plots, provenance.

One function writes them, :func:`write_habitat_outputs` (the label maps with
:func:`~RadiomicsLabLib.habitats.write_label_map`, the rest with :func:`~RadiomicsLabLib.habitats.write_summaries`),
for every caller: ``radiomicslab habitats`` and :meth:`RadiomicsLabLib.mrml.habitats.HabitatLogic.save_results`
(the desktop module's and the web app's "save results"), so the same run gives the same files byte for byte:

- the label maps: ``habitats.nrrd`` for one patient, ``<patient>/habitats.nrrd`` for several
  (:func:`~RadiomicsLabLib.habitats.label_map_path`);
- ``habitats.csv``, ``cohort.csv``, with per-habitat features ``features.csv``, with ``k = auto`` ``k_scores.csv``;
- ``habitat_fractions.png`` and ``channel_means.png`` (drawn from :func:`~RadiomicsLabLib.habitats.fraction_series`
  and the model's standardised centres, the series the scene's charts show);
- ``habitats.provenance.json``.

The cohort mode on the batch layer writes the label maps in its tasks and the rest from the patients'
:class:`~RadiomicsLabLib.habitats.HabitatSummary` (:func:`finished_summaries`), with the same writer.
Here too: what a run reads from files (:func:`read_patient`, :func:`file_inputs`) and the output checks.
"""

from dataclasses import dataclass
from pathlib import Path

from .errors import RadiomicsLabError

#: The files a run writes into its output folder besides the label maps.
OUTPUT_FILES = ("habitats.csv", "cohort.csv", "features.csv", "k_scores.csv", "habitats.provenance.json",
                "habitat_fractions.png", "channel_means.png")
PROVENANCE_FILE = "habitats.provenance.json"
#: File endings left out of a mask's name when it names the patient (:func:`file_patient_name`).
MASK_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nrrd", ".nii", ".mha", ".mhd", ".nhdr")


def map_paths(folder, patients) -> list:
    """The label maps of ``patients`` (names, in order) in ``folder``: ``habitats.nrrd`` for one patient,
    ``<patient>/habitats.nrrd`` for several."""
    from .habitats import label_map_path

    patients = list(patients)
    return [Path(folder) / "habitats.nrrd"] if len(patients) == 1 else [label_map_path(folder, p) for p in patients]


def check_outputs_writable(folder, paths, inputs=()) -> None:
    """Before any work: ``folder``, every file of :data:`OUTPUT_FILES` in it and every path of ``paths`` (label
    maps, batch files) writable, and none of them an input (``inputs``: (role, path) pairs)."""
    from .fileio import check_output, check_outputs

    inputs = list(inputs)
    check_output(Path(folder), inputs, "folder")
    check_outputs([*paths, *(Path(folder) / name for name in OUTPUT_FILES)], inputs)


def read_patient(name: str, mask, channels: dict, label=None):
    """A :class:`~RadiomicsLabLib.habitats.Patient` read from files: its ROI ``mask`` and ``channels``
    (channel name -> image path, in order); ``label``: the ROI's value in the mask (None: every non-zero voxel)."""
    from .habitats import Patient
    from .imageio import read_image

    return Patient(name, read_image(mask, "mask"),
                   {channel: read_image(path, f"channel '{channel}'") for channel, path in channels.items()}, label)


def file_patient_name(mask) -> str:
    """The patient's name a mask file gives: its name without the image ending (``STS_002.nii.gz`` -> ``STS_002``)."""
    name = Path(mask).name
    for suffix in MASK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(mask).stem


def file_inputs(mask=None, cohort=None, channels=None, settings=None) -> dict:
    """The provenance's ``inputs`` of a run read from files: the mask, cohort and channel paths (resolved) and the
    feature settings as given."""
    return {"mask": str(Path(mask).resolve()) if mask is not None else None,
            "cohort": str(Path(cohort).resolve()) if cohort else None,
            "channels": {n: str(Path(p).resolve()) for n, p in (channels or {}).items()}, "settings": settings}


def write_habitat_outputs(folder, model, results, features: dict | None = None, inputs: dict | None = None,
                          paths: list | None = None) -> dict:
    """Write every file of a habitat run into ``folder`` (see the module), each atomically; returns name relative
    to the folder (``"habitats.nrrd"``, ``"STS_001/habitats.nrrd"``) -> path.

    ``model``: the fitted :class:`~RadiomicsLabLib.habitats.HabitatModel`; ``results``: its
    :class:`~RadiomicsLabLib.habitats.PatientHabitats` (label maps written) or
    :class:`~RadiomicsLabLib.habitats.HabitatSummary` (the batch tasks wrote the label maps); ``features``: patient
    -> channel -> ExtractionResult (None: no per-habitat features); ``inputs``: the provenance's ``inputs``;
    ``paths``: the label maps (default :func:`map_paths`)."""
    from .habitats import HabitatSummary, write_outputs, write_summaries

    folder = Path(folder)
    if results and isinstance(results[0], HabitatSummary):
        written = write_summaries(folder, model, results, inputs, bool(features))
    else:
        paths = paths if paths is not None else map_paths(folder, [r.patient for r in results])
        written = write_outputs(folder, model, results, paths, features, inputs)
    return {Path(path).relative_to(folder).as_posix(): Path(path) for path in written}


# The cohort mode's records -----------------------------------------------------------------------
def finished_pools(folder, done) -> list:
    """(patient, pool file, SHA-256) of the patients whose data task finished (``done``: their statuses, in cohort
    order), for :func:`~RadiomicsLabLib.habitats.fit_pooled`."""
    from .batch import case_path, read_record
    from .habitats import DATA_DIR, pool_path

    pools = []
    for status in done:
        pool = read_record(case_path(folder, status.key, DATA_DIR))["provenance"]["pool"]
        pools.append((status.id, pool_path(folder, status.key), pool["sha256"]))
    return pools


def finished_summaries(folder, statuses) -> list:
    """The :class:`~RadiomicsLabLib.habitats.HabitatSummary` of every patient whose label task finished, in order."""
    from .batch import DONE, case_path, read_record
    from .habitats import HabitatSummary

    return [HabitatSummary(**read_record(case_path(folder, s.key))["provenance"]["summary"])
            for s in statuses if s.status == DONE]


def features_by_patient(patients, results, settings=None, progress=None) -> dict | None:
    """Per-habitat features of each labelled patient (patient -> channel -> ExtractionResult,
    :func:`~RadiomicsLabLib.habitats.habitat_features`), or None without ``settings``."""
    from .habitats import habitat_features

    if settings is None:
        return None

    def steps(name):
        return None if progress is None else lambda done, total, segment: progress(done, total, f"{name} features: {segment}")

    return {p.name: habitat_features(p, r, settings, progress=steps(p.name)) for p, r in zip(patients, results)}


@dataclass
class CohortRun:
    """What :func:`run_cohort` did: the fitted model, the results written (MASK's patient's
    :class:`~RadiomicsLabLib.habitats.PatientHabitats`, or every labelled patient's
    :class:`~RadiomicsLabLib.habitats.HabitatSummary`; empty when nothing was written, ``empty`` saying why) and the
    number of patients or rows with errors (listed in errors.csv)."""

    model: object
    results: list
    failed: int
    empty: str = ""


def run_cohort(cohort_path, folder, n_habitats, method, options: dict, run_stage, settings=None, mask_channel=None,
               channels=None, target: dict | None = None, inputs=(), provenance_inputs=None, keep_going=False,
               progress=None) -> CohortRun:
    """Population-level habitats of a cohort on the batch layer (``radiomicslab habitats --cohort``), its files
    written by :func:`write_habitat_outputs`: the cohort file checked first (every problem with its row; with
    ``keep_going`` a patient with a problem is left out whole), the outputs checked, one data task per patient, the
    model fitted here on the finished patients' pool (:func:`~RadiomicsLabLib.habitats.fit_pooled`), then one label
    task per patient, or ``target`` (MASK's patient: :func:`read_patient`'s arguments, read before any work) labelled
    here. ``options``: :func:`~RadiomicsLabLib.habitats.habitat_model`'s; ``run_stage(what, cases, task, earlier)``
    runs a task over the cases (:func:`~RadiomicsLabLib.batch.run_batch`, e.g. with a progress bar and a shared
    cluster) and returns its :class:`~RadiomicsLabLib.batch.BatchSummary`; ``inputs``: (role, path) of the files
    read besides the cohort's; ``progress(done, total, message)``: the steps run here."""
    from dataclasses import replace

    from .batch import DONE, cohort_status, output_files
    from .cohort import cohort_inputs
    from .habitats import data_task, feature_map_names, fit_pooled, habitat_cohort, habitat_model, label_map_path, label_task

    folder = Path(folder)
    cohort, channels, mask_channel = habitat_cohort(cohort_path, mask_channel, channels)
    if keep_going:
        cohort.skip_patients_with_problems()
    cohort.check(keep_going)  # every problem listed, before any work (the warnings come with the run)
    patients = cohort.patients()
    feature_map_names(options["feature_maps"], channels, options["map_radius"], options["map_definition"],
                      options["map_settings"])
    if target is not None and target["name"] in patients:
        raise RadiomicsLabError(f"Patient '{target['name']}' is also in the cohort file; give MASK's patient another "
                                "name with --patient.")
    paths = [folder / "habitats.nrrd"] if target is not None else [label_map_path(folder, p) for p in patients]
    model = habitat_model(channels, n_habitats, method, **options)
    first = data_task(model, folder, mask_channel, channels)
    check_outputs_writable(folder, [*paths, *(folder / name for name in output_files(first))],
                           list(inputs) + cohort_inputs(cohort)[1:])  # no output may replace an image or mask
    patient = read_patient(**target) if target is not None else None  # before any work
    summary = run_stage("Habitat data", cohort, first, ())
    statuses = cohort_status(folder, cohort, first)
    done = [s for s in statuses if s.status == DONE]
    failed = summary.failed + summary.invalid
    if not done:
        return CohortRun(model, [], failed, "no patient finished")
    if progress is not None:
        progress(0, 1, f"fitting the model on {len(done)} patient(s)")
    fit_pooled(model, finished_pools(folder, done))
    if patient is not None:  # MASK's patient, labelled here
        results = [model.label(patient)]
        features = features_by_patient([patient], results, settings, progress)
    else:
        labelled = replace(cohort, cases=[c for c in cohort.cases if c.id in {s.id for s in done}], problems=[])
        second = label_task(model, folder, mask_channel, channels, settings)
        labels = run_stage("Habitat labels", labelled, second, [(first, statuses)])
        failed += labels.failed
        results, features = finished_summaries(folder, cohort_status(folder, labelled, second)), settings
        if not results:
            return CohortRun(model, [], failed, "no patient was labelled")
    write_habitat_outputs(folder, model, results, features, provenance_inputs, paths[:1])
    return CohortRun(model, results, failed)
