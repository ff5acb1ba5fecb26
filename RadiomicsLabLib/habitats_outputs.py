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
Here too: what a run reads from files (:func:`read_patient`, :func:`file_inputs`), the output checks, the run of
one patient read from files (:func:`run_patient`) and, with ``--seg``, the habitat label map as a DICOM SEG on
the DICOM series MASK was drawn on (:func:`check_habitat_seg`, :func:`write_habitat_seg`).
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


# The command line's texts -------------------------------------------------------------------------
def parse_channels(channels) -> dict:
    """``--channel NAME=IMAGE`` texts -> {name: Path}, names unique."""
    named = {}
    for text in channels:
        name, sep, path = text.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise RadiomicsLabError(f"--channel '{text}' is not NAME=IMAGE; write e.g. --channel CT=ct.nii.gz.")
        if name in named:
            raise RadiomicsLabError(f"Channel name '{name}' is given twice; give each channel its own name.")
        named[name] = Path(path)
    return named


def parse_count(text, option: str, what: str):
    """``auto`` (or None) as it is, else a whole number >= 1 (``what`` names it in the message)."""
    if text is None or text.strip().lower() == "auto":
        return text if text is None else "auto"
    try:
        count = int(text)
    except ValueError:
        raise RadiomicsLabError(f"{option} '{text}' is not {what}; give a whole number >= 1 or 'auto'.") from None
    if count < 1:
        raise RadiomicsLabError(f"{option} {count}: {what} must be at least 1.")
    return count


def parse_range(text: str) -> tuple:
    """``--k-range LOW:HIGH`` -> (low, high), 2 <= low <= high."""
    try:
        low, high = (int(v) for v in text.split(":"))
    except ValueError:
        raise RadiomicsLabError(f"--k-range '{text}' is not LOW:HIGH (e.g. 2:8).") from None
    if not 2 <= low <= high:
        raise RadiomicsLabError(f"--k-range {text}: need 2 <= LOW <= HIGH.")
    return low, high


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


def read_patient(name: str, mask, channels: dict, label=None, roi: str | None = None):
    """A :class:`~RadiomicsLabLib.habitats.Patient` read from files: its ROI ``mask`` and ``channels``
    (channel name -> image path, in order); ``label``: the ROI's value in the mask (None: every non-zero voxel).
    ``mask`` may be a DICOM RTSTRUCT / SEG drawn on the first channel, given as its DICOM series folder (``roi``
    picks its ROI, default the file's only one)."""
    from .habitats import Patient, read_roi_mask
    from .imageio import read_image

    return Patient(name, read_roi_mask(mask, mask_series(channels), roi, "mask"),
                   {channel: read_image(path, f"channel '{channel}'") for channel, path in channels.items()}, label)


def mask_series(channels: dict):
    """The image a DICOM MASK was drawn on: the first channel's (its DICOM series folder)."""
    return next(iter(channels.values()), None)


def check_habitat_seg(seg, mask, channels: dict, inputs=()) -> Path:
    """``--seg FILE.dcm`` checked before any work (:func:`~RadiomicsLabLib.dicom.masks.check_seg_output`): the first
    channel a DICOM series folder, and a label-map MASK on its grid (the SEG's segments lie on the series)."""
    from .cohort import is_dicom_file
    from .dicom.masks import check_seg_output
    from .imageio import read_image
    from .validation import grid_differences

    series = mask_series(channels)
    path = check_seg_output(seg, series, inputs, image_role="the first --channel (the DICOM series MASK was drawn on)")
    if not is_dicom_file(mask):
        differences = grid_differences(read_image(series, "first channel"), read_image(mask, "mask"))
        if differences:
            raise RadiomicsLabError(f"--seg writes the habitats on the DICOM series of the first channel '{series}', and "
                                    f"the mask '{mask}' is not on its grid ({'; '.join(differences)}); give the series "
                                    "MASK was drawn on as the first --channel, or leave out --seg.")
    return path


def habitat_segments(result) -> list:
    """The habitats of one patient (:class:`~RadiomicsLabLib.habitats.PatientHabitats`) as DICOM SEG segments: one per
    habitat present, named ``Habitat N``, coded SCT Tissue, in the habitat's colour (as in the scene and plots)."""
    import numpy as np
    import SimpleITK as sitk

    from .dicom.write import TISSUE, SegmentToWrite
    from .habitats import habitat_colour

    labels = sitk.GetArrayViewFromImage(result.label_map)
    segments = []
    for habitat in (int(h) for h in np.unique(labels) if h > 0):
        mask = sitk.GetImageFromArray((labels == habitat).astype(np.uint8))
        mask.CopyInformation(result.label_map)
        colour = tuple(int(round(255 * c)) for c in habitat_colour(habitat))
        segments.append(SegmentToWrite(f"Habitat {habitat}", mask, *TISSUE, colour))
    return segments


def write_habitat_seg(result, series, path) -> Path:
    """Write one patient's habitats (:func:`habitat_segments`) as a DICOM SEG referencing the series in ``series``."""
    from .dicom.write import write_seg

    return write_seg(habitat_segments(result), series, path, series_description=f"RadiomicsLab habitats ({result.patient})")


def check_patient_inputs(mask, channels: dict) -> None:
    """Every file of a patient given on the command line present (before anything is read)."""
    for path in [mask, *channels.values()]:
        if not Path(path).exists():
            raise RadiomicsLabError(f"Cannot read '{path}': no such file or folder; check the path.")


def run_patient(folder, target: dict, n_habitats, method, options: dict, settings=None, inputs=(), provenance_inputs=None,
                seg=None, progress=None) -> tuple:
    """Habitats of one patient read from files (``radiomicslab habitats MASK --channel ...``): every check first
    (feature maps, outputs, ``seg``), then :func:`~RadiomicsLabLib.habitats.fit_habitats`, per-habitat features
    with ``settings``, the files (:func:`write_habitat_outputs`) and with ``seg`` the DICOM SEG. ``target``:
    :func:`read_patient`'s arguments. Returns (model, results)."""
    from .habitats import feature_map_names, fit_habitats

    feature_map_names(options["feature_maps"], list(target["channels"]), options["map_radius"], options["map_definition"],
                      options["map_settings"])
    check_outputs_writable(folder, map_paths(folder, [target["name"]]), inputs)
    if seg is not None:
        check_habitat_seg(seg, target["mask"], target["channels"], inputs)
    patient = read_patient(**target)
    model, results = fit_habitats([patient], n_habitats, method, progress=progress, **options)
    features = features_by_patient([patient], results, settings, progress)
    write_habitat_outputs(folder, model, results, features, provenance_inputs)
    if seg is not None:
        write_habitat_seg(results[0], mask_series(target["channels"]), seg)
    return model, results


def file_patient_name(mask) -> str:
    """The patient's name a mask file gives: its name without the image ending (``STS_002.nii.gz`` -> ``STS_002``)."""
    name = Path(mask).name
    for suffix in MASK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(mask).stem


def file_inputs(mask=None, cohort=None, channels=None, settings=None, roi=None) -> dict:
    """The provenance's ``inputs`` of a run read from files: the mask, cohort and channel paths (resolved), the
    feature settings as given and (a DICOM MASK) the ROI picked with --roi."""
    return {"mask": str(Path(mask).resolve()) if mask is not None else None,
            "cohort": str(Path(cohort).resolve()) if cohort else None,
            "channels": {n: str(Path(p).resolve()) for n, p in (channels or {}).items()}, "settings": settings,
            **({"roi": roi} if roi else {})}


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
               progress=None, seg=None) -> CohortRun:
    """Population-level habitats of a cohort on the batch layer (``radiomicslab habitats --cohort``), its files
    written by :func:`write_habitat_outputs`: the cohort file checked first (every problem with its row; with
    ``keep_going`` a patient with a problem is left out whole), the outputs checked, one data task per patient, the
    model fitted here on the finished patients' pool (:func:`~RadiomicsLabLib.habitats.fit_pooled`), then one label
    task per patient, or ``target`` (MASK's patient: :func:`read_patient`'s arguments, read before any work) labelled
    here (with ``seg``, also written as a DICOM SEG: :func:`write_habitat_seg`). ``options``: :func:`~RadiomicsLabLib.habitats.habitat_model`'s; ``run_stage(what, cases, task, earlier)``
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
    if target is not None and seg is not None:
        check_habitat_seg(seg, target["mask"], target["channels"], list(inputs) + cohort_inputs(cohort)[1:])
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
    if patient is not None and seg is not None:
        write_habitat_seg(results[0], mask_series(target["channels"]), seg)
    return CohortRun(model, results, failed)
