"""Study inputs: the features table and the clinical table, read, checked together and joined by id.

FEATURES is a CSV (``,`` ``;`` or tab separated) or Parquet file: one row per patient, an id column
and numeric feature columns. A ``radiomicslab batch`` table (``features.csv`` / ``features.parquet``:
``id``, the cohort's key columns ``timepoint`` / ``observer`` / ``channel``, ``segment``, then the
features; :func:`RadiomicsLabLib.batch.collect_table`) is accepted as it is: when an id has several
rows, the key columns whose values differ within an id are pivoted into column names, so every
patient is one row and a feature is named ``<column>-<value>__<feature>``, e.g.
``channel-PET__segment-Label_1__original_firstorder_Mean`` (key columns are kept in the order
timepoint, observer, channel, segment). A key column that does not vary within any id is dropped.
The returned notes say when the table was pivoted, how, and which ids lack a combination.

CLINICAL is a CSV with the id column, the outcome (a binary ``outcome``, or ``time`` + ``event``
for survival), and optionally a ``batch`` (scanner, centre: for harmonisation), numeric covariates
and a ``split`` column (``train`` / ``test``). Columns are named by the parameters of
:func:`read_study`; without them the columns ``outcome``, or ``time`` and ``event``, ``batch`` and
``split`` are used when present (a note says so).

Every check is made before anything is returned, and all problems are reported at once in one
:class:`StudyInputError` (a :class:`~RadiomicsLabLib.errors.RadiomicsLabError`), each with its
rows (file rows, header = row 1; a Parquet file's rows are numbered as if it were that CSV):

- ids in one table but not in the other; empty or duplicate ids (in a batch table: the same id
  and key values twice);
- non-numeric features (each offending cell), constant features, missing values (empty, ``NA``,
  ``NaN``, ``null``, or infinite): refused, or left as NaN for an imputer *inside* the
  cross-validation folds (``missing="impute"``, so no fold sees another's values);
- a binary outcome with one class, with more than two values, or text labels without ``positive``;
  too few patients of a class (binary) or too few events (survival) in the training rows for
  ``n_folds``-fold cross-validation (each fold needs one: the minimum is ``n_folds``);
- survival times that are missing, not numbers, or <= 0; events other than 0/1;
- a batch with fewer than 2 patients (nothing to estimate it from); split values other than
  train/test; numeric covariates only.

More features than (training) patients is allowed and reported as a note. Nothing here fits
anything: the returned :class:`StudyData` holds the arrays that the selection
(:mod:`RadiomicsLabLib.study.selection`) and model steps take, in one order of patients.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import RadiomicsLabError

#: Key columns of a ``radiomicslab batch`` table, in the order used in pivoted names.
PIVOT_COLUMNS = ("timepoint", "observer", "channel", "segment")
#: Separator between the pivot prefix (``segment-Label_1``) and the feature name.
PIVOT_SEPARATOR = "__"
MISSING_POLICIES = ("refuse", "impute")
#: Cell texts read as a missing value (case-insensitive, surrounding blanks ignored).
MISSING_TEXTS = frozenset({"", "na", "nan", "n/a", "none", "null"})
TRAIN_VALUES, TEST_VALUES = ("train", "training"), ("test", "testing")
#: How many rows (or ids) one problem lists before saying how many more there are.
LISTED = 10


@dataclass(frozen=True)
class StudyProblem:
    """One problem of the study inputs: where (file and rows) and what is wrong."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class StudyInputError(RadiomicsLabError):
    """The study inputs have problems; ``problems`` lists each (:class:`StudyProblem`), the message all of them."""

    def __init__(self, problems):
        self.problems = list(problems)
        if len(self.problems) == 1:  # one line naming it (the command line's one error line)
            super().__init__(f"The study inputs have 1 problem; fix it and run again: {self.problems[0]}")
            return
        super().__init__(f"The study inputs have {len(self.problems)} problems; fix them and run again:\n"
                         + "\n".join(f"  {problem}" for problem in self.problems))


@dataclass
class StudyData:
    """The checked study: one row per patient, in the features table's order.

    ``X`` (patients x features, float64; NaN only with ``missing="impute"``), ``feature_names``,
    ``ids``; ``outcome_kind`` ``"binary"`` (``y``: 0/1 ints, ``classes``: the (negative, positive)
    labels as written), ``"survival"`` (``time`` > 0 floats, ``event`` bools) or ``"none"``; ``batch`` (text per
    patient) or None; ``covariates`` (patients x covariates, float64) with ``covariate_names``;
    ``split``: True for training rows (None: no split column, every row is for training); ``notes``:
    what was assumed or done (pivoted table, columns chosen, missing values left for imputation, ...).
    """

    X: np.ndarray
    feature_names: list
    ids: list
    outcome_kind: str
    y: np.ndarray | None = None
    time: np.ndarray | None = None
    event: np.ndarray | None = None
    batch: np.ndarray | None = None
    covariates: np.ndarray | None = None
    covariate_names: list = field(default_factory=list)
    split: np.ndarray | None = None
    classes: tuple = ()
    notes: list = field(default_factory=list)
    missing: str = "refuse"
    pivoted: bool = False
    sources: dict = field(default_factory=dict)

    @property
    def n_patients(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def matrix(self, features=None) -> tuple:
        """``(X, batch, covariates, names)``: the rows as the study's pipelines take them, ``[batch | covariates |
        features]``. ``batch``: the batch column's index (0) or None; ``covariates``: their column indices;
        ``names``: every column's name; ``features``: the feature names to take, in that order (default all). X is
        an object array when there is a batch (its labels kept as written), otherwise float64."""
        positions = slice(None) if features is None else [self.feature_names.index(name) for name in features]
        parts, names, batch, covariates = [], [], None, []
        if self.batch is not None:
            parts.append(np.asarray(self.batch, dtype=object)[:, None])
            names.append("batch")
            batch = 0
        if self.covariates is not None and len(self.covariate_names):
            covariates = list(range(len(names), len(names) + len(self.covariate_names)))
            parts.append(np.asarray(self.covariates, dtype=float))
            names += list(self.covariate_names)
        parts.append(np.asarray(self.X, dtype=float)[:, positions])
        names += list(self.feature_names) if features is None else list(features)
        X = np.hstack([p.astype(object) for p in parts]) if batch is not None else np.hstack(parts)
        return X, batch, covariates, names

    @property
    def target(self) -> np.ndarray:
        """What scikit-learn's ``fit(X, y)`` takes: ``y`` (binary), or for survival the structured array
        with fields ``event`` (bool) and ``time`` (float), scikit-survival's convention."""
        if self.outcome_kind == "binary":
            return self.y
        target = np.empty(self.n_patients, dtype=[("event", bool), ("time", float)])
        target["event"], target["time"] = self.event, self.time
        return target

    @property
    def train(self) -> np.ndarray:
        """Boolean mask of the training rows (all rows when there is no split column)."""
        return np.ones(self.n_patients, bool) if self.split is None else self.split.copy()

    def subset(self, rows) -> "StudyData":
        """The same study restricted to ``rows`` (a boolean mask or indices), e.g. ``study.subset(study.train)``."""
        rows = np.arange(self.n_patients)[np.asarray(rows)]

        def take(array):
            return None if array is None else array[rows]

        return replace(self, X=self.X[rows], ids=[self.ids[i] for i in rows], y=take(self.y), time=take(self.time),
                       event=take(self.event), batch=take(self.batch), covariates=take(self.covariates),
                       split=take(self.split), notes=list(self.notes))

    def table(self, rows=None):
        """``X`` as a :class:`pyarrow.Table` whose columns are the feature names: scikit-learn takes it as
        a data frame, so the selectors of :mod:`RadiomicsLabLib.study.selection` keep the names through a
        Pipeline (``get_feature_names_out``, the reproducibility filter's look-up)."""
        import pyarrow as pa

        X = self.X if rows is None else self.X[np.asarray(rows)]
        return pa.table({name: X[:, j] for j, name in enumerate(self.feature_names)})


# Reading --------------------------------------------------------------------------------------------
@dataclass
class _Table:
    """A file's columns as lists of cells (text, or numbers from Parquet) and each row's number."""

    name: str
    columns: list
    cells: dict
    rows: list


def _read_table(path, role: str, problems: list) -> _Table | None:
    path = Path(path)
    if not path.is_file():
        problems.append(StudyProblem(path.name or str(path), f"the {role} table '{path}' does not exist; give the path of a CSV"
                                     + (" or Parquet" if role == "features" else "") + " file."))
        return None
    if path.suffix.lower() in (".parquet", ".pq"):
        if role != "features":
            problems.append(StudyProblem(path.name, f"the {role} table must be a CSV file; got '{path}'."))
            return None
        return _read_parquet(path, problems)
    return _read_csv(path, role, problems)


def _read_csv(path: Path, role: str, problems: list) -> _Table | None:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        problems.append(StudyProblem(path.name, f"cannot read the {role} table '{path}' as UTF-8 text ({error}); "
                                     "save it as a UTF-8 CSV file."))
        return None
    first = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first.count) if first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if not header or not any(h.strip() for h in header):
        problems.append(StudyProblem(path.name, f"the {role} table is empty; it needs a header row and one row per patient."))
        return None
    header = [h.strip() for h in header]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        problems.append(StudyProblem(f"{path.name} row 1", f"the column name(s) {', '.join(map(repr, duplicated))} appear more "
                                     "than once; give every column its own name."))
        return None
    cells, rows = {h: [] for h in header}, []
    for cells_of_row in reader:
        if not any(c.strip() for c in cells_of_row):
            continue
        row = reader.line_num
        if len(cells_of_row) != len(header):
            problems.append(StudyProblem(f"{path.name} row {row}", f"{len(cells_of_row)} cells but the header has "
                                         f"{len(header)} columns; check the separators and quotes of this row."))
            continue
        rows.append(row)
        for h, value in zip(header, cells_of_row):
            cells[h].append(value.strip())
    return _Table(path.name, header, cells, rows)


def _read_parquet(path: Path, problems: list) -> _Table | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        problems.append(StudyProblem(path.name, f"cannot read '{path}' as a Parquet file ({error})."))
        return None
    cells = {}
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
            cells[name] = column.to_numpy(zero_copy_only=False).astype(float)
        else:
            cells[name] = ["" if v is None else str(v) for v in column.to_pylist()]
    return _Table(path.name, list(table.column_names), cells, list(range(2, table.num_rows + 2)))


def _numbers(cells) -> tuple[np.ndarray, list]:
    """Cells -> (float array, NaN where missing or infinite; [(index, text)] of cells that are not numbers)."""
    if isinstance(cells, np.ndarray):
        values = cells.astype(float)
        values[~np.isfinite(values)] = np.nan
        return values, []
    try:
        values = np.asarray(cells, dtype=float)
    except ValueError:
        values, bad = np.full(len(cells), np.nan), []
        for i, text in enumerate(cells):
            if text.strip().lower() in MISSING_TEXTS:
                continue
            try:
                values[i] = float(text)
            except ValueError:
                bad.append((i, text))
    else:
        bad = []
    values[~np.isfinite(values)] = np.nan
    return values, bad


def _text(cells) -> list:
    """Cells as text (Parquet numbers written as they would be in a CSV)."""
    if isinstance(cells, np.ndarray):
        return ["" if not np.isfinite(v) else (str(int(v)) if float(v).is_integer() else repr(float(v))) for v in cells]
    return list(cells)


def _rows(rows) -> str:
    """``row 4`` / ``rows 4, 9, 12 and 3 more``."""
    rows = list(rows)
    shown = ", ".join(map(str, rows[:LISTED]))
    more = f" and {len(rows) - LISTED} more" if len(rows) > LISTED else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def _listing(items) -> str:
    items = list(items)
    more = f" and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return ", ".join(items[:LISTED]) + more


# The features table ---------------------------------------------------------------------------------
@dataclass
class _Features:
    ids: list
    names: list
    X: np.ndarray
    id_rows: dict        # id -> the file rows of that id
    missing_combos: dict  # id -> [(combination label, its description)]: pivoted tables, no row for that combination
    combo_of: list        # feature index -> combination label ("" when not pivoted)
    invalid: np.ndarray   # like X: True where the cell was not a number (a problem already, not a missing value)
    pivoted: bool = False


def _read_features(path, id_column: str, problems: list, notes: list) -> _Features | None:
    table = _read_table(path, "features", problems)
    if table is None:
        return None
    if id_column not in table.columns:
        problems.append(StudyProblem(f"{table.name} row 1", f"no id column '{id_column}' (columns: "
                                     f"{_listing(map(repr, table.columns))}); name the patient id column '{id_column}' "
                                     "or give id_column."))
        return None
    ids = [i.strip() for i in _text(table.cells[id_column])]
    keys = [c for c in PIVOT_COLUMNS if c in table.columns and c != id_column]
    features = [c for c in table.columns if c != id_column and c not in keys]
    empty = [row for row, i in zip(table.rows, ids) if not i]
    if empty:
        problems.append(StudyProblem(f"{table.name} {_rows(empty)}", f"empty id; give every row its patient id in '{id_column}'."))
    if not features:
        problems.append(StudyProblem(f"{table.name} row 1", "no feature columns besides the id"
                                     + (f" and {', '.join(keys)}" if keys else "") + "."))
        return None
    key_values = [tuple(_text(table.cells[c])[r] for c in keys) for r in range(len(ids))]
    # Duplicates: the same id (and key values) on several rows.
    seen = {}
    for r, (i, key) in enumerate(zip(ids, key_values)):
        if i:
            seen.setdefault((i, key), []).append(table.rows[r])
    for (i, key), rows in seen.items():
        if len(rows) > 1:
            what = "".join(f", {c} '{v}'" for c, v in zip(keys, key) if v)
            problems.append(StudyProblem(f"{table.name} {_rows(rows)}", f"id '{i}'{what} appears {len(rows)} times; "
                                         "give each patient one row" + (" per key value." if keys else ".")))
    # Numbers, row by row of the file.
    values, invalid = np.empty((len(ids), len(features))), np.zeros((len(ids), len(features)), bool)
    for j, name in enumerate(features):
        values[:, j], bad = _numbers(table.cells[name])
        invalid[[i for i, _ in bad], j] = True
        if bad:
            shown = ", ".join(f"'{text}' on row {table.rows[i]}" for i, text in bad[:LISTED])
            more = f" and {len(bad) - LISTED} more" if len(bad) > LISTED else ""
            problems.append(StudyProblem(f"{table.name} {_rows(table.rows[i] for i, _ in bad)}",
                                         f"feature '{name}' is not numeric: {shown}{more}; features must be numbers "
                                         "(move text columns to the clinical table, or remove them)."))
    id_rows = {}
    for r, i in enumerate(ids):
        if i:
            id_rows.setdefault(i, []).append(r)
    order = list(id_rows)
    several = {i: rows for i, rows in id_rows.items() if len({key_values[r] for r in rows}) > 1}
    if not several:  # one row per id (duplicates are problems above: the first row is used)
        dropped = [c for c in keys if len(set(v[keys.index(c)] for v in key_values)) > 1]
        if dropped:
            notes.append(f"{table.name} has one row per id; its key column(s) {', '.join(dropped)} differ between "
                         "patients but are not features (the rows are taken as the same kind of region).")
        first = [id_rows[i][0] for i in order]
        return _Features(order, features, values[first], {i: [table.rows[r] for r in rs] for i, rs in id_rows.items()},
                         {}, [""] * len(features), invalid[first])
    vary = [k for k, c in enumerate(keys) if any(len({key_values[r][k] for r in rows}) > 1 for rows in several.values())]
    combos = list(dict.fromkeys(tuple(key_values[r][k] for k in vary) for r in range(len(ids)) if ids[r]))
    labels = [PIVOT_SEPARATOR.join(f"{keys[k]}-{v}" for k, v in zip(vary, combo)) for combo in combos]
    names = [f"{label}{PIVOT_SEPARATOR}{name}" for label in labels for name in features]
    X = np.full((len(order), len(combos) * len(features)), np.nan)
    bad = np.zeros(X.shape, bool)
    position = {combo: c for c, combo in enumerate(combos)}
    present = np.zeros((len(order), len(combos)), bool)
    for p, i in enumerate(order):
        for r in id_rows[i]:
            c = position[tuple(key_values[r][k] for k in vary)]
            present[p, c] = True
            X[p, c * len(features):(c + 1) * len(features)] = values[r]
            bad[p, c * len(features):(c + 1) * len(features)] = invalid[r]
    missing_combos = {i: [(labels[c], ", ".join(f"{keys[k]} '{v}'" for k, v in zip(vary, combos[c])))
                          for c in np.flatnonzero(~present[p])] for p, i in enumerate(order) if not present[p].all()}
    notes.append(f"{table.name} is a radiomicslab batch table with several rows per id: its {len(ids)} rows were pivoted "
                 f"into {len(order)} rows, one per id, by {', '.join(keys[k] for k in vary)} "
                 f"({len(combos)} combination(s) x {len(features)} features = {len(names)} columns named "
                 f"'{labels[0]}{PIVOT_SEPARATOR}<feature>').")
    combo_of = [label for label in labels for _ in features]
    return _Features(order, names, X, {i: [table.rows[r] for r in rs] for i, rs in id_rows.items()}, missing_combos,
                     combo_of, bad, pivoted=True)


# The clinical table ---------------------------------------------------------------------------------
def _choose_columns(table: _Table, outcome, time, event, batch, split, notes, problems, require_outcome=True):
    """The clinical columns to use (outcome / time / event / batch / split), defaults found by name."""
    columns = set(table.columns)
    if outcome is None and time is None and event is None:
        if "outcome" in columns:
            outcome = "outcome"
            notes.append(f"{table.name}: the binary outcome is the column 'outcome'.")
        elif "time" in columns and "event" in columns:
            time, event = "time", "event"
            notes.append(f"{table.name}: the survival outcome is the columns 'time' and 'event'.")
        elif require_outcome:
            problems.append(StudyProblem(f"{table.name} row 1", "no outcome: there is no column 'outcome', nor 'time' and "
                                         "'event'; name them so, or give outcome= (binary) or time= and event= (survival)."))
    elif outcome is not None and (time is not None or event is not None):
        raise RadiomicsLabError("Give either a binary outcome (outcome=) or a survival outcome (time= and event=), not both.")
    elif outcome is None and (time is None or event is None):
        raise RadiomicsLabError("A survival outcome needs both time= and event= (the columns of the follow-up time and of "
                                "the event indicator 0/1).")
    if batch is None and "batch" in columns:
        batch = "batch"
        notes.append(f"{table.name}: the column 'batch' gives each patient's batch (for harmonisation).")
    if split is None and "split" in columns:
        split = "split"
        notes.append(f"{table.name}: the column 'split' says which patients are for training (train) and testing (test).")
    return outcome, time, event, batch or None, split or None


def _binary_outcome(table, column, rows, positive, problems):
    """(y 0/1 with -1 where unusable, classes) of the rows ``rows`` (indices into the table)."""
    texts = [_text(table.cells[column])[r] for r in rows]
    y = np.full(len(rows), -1)
    missing = [table.rows[r] for r, t in zip(rows, texts) if t.strip().lower() in MISSING_TEXTS]
    if missing:
        problems.append(StudyProblem(f"{table.name} {_rows(missing)}", f"the outcome '{column}' is missing; give every "
                                     "patient an outcome (0/1), or leave the patient out of both tables."))
    present = [t for t in texts if t.strip().lower() not in MISSING_TEXTS]
    values = list(dict.fromkeys(present))
    counts = {v: present.count(v) for v in values}
    numbers = {}
    for v in values:
        try:
            numbers[v] = float(v)
        except ValueError:
            pass
    if len(values) == 1:
        problems.append(StudyProblem(table.name, f"the outcome '{column}' has one class only ('{values[0]}', "
                                     f"{counts[values[0]]} patients); a binary outcome needs patients of both classes."))
        return y, ()
    if len(values) > 2:
        listed = ", ".join(f"'{v}' ({counts[v]})" for v in values[:LISTED])
        problems.append(StudyProblem(table.name, f"the outcome '{column}' has {len(values)} values ({listed}); a binary "
                                     "outcome has two (0/1, or two labels with positive=)."))
        return y, ()
    if not values:
        return y, ()
    if positive is None and len(numbers) == 2 and set(numbers.values()) == {0.0, 1.0}:
        negative = next(v for v in values if numbers[v] == 0.0)
        positive_text = next(v for v in values if numbers[v] == 1.0)
    elif positive is not None and str(positive) in values:
        positive_text = str(positive)
        negative = next(v for v in values if v != positive_text)
    elif positive is not None and len(numbers) == 2 and any(numbers[v] == _as_float(positive) for v in values):
        positive_text = next(v for v in values if numbers[v] == _as_float(positive))
        negative = next(v for v in values if v != positive_text)
    else:
        first, second = sorted(values)
        said = (f"positive='{positive}' is not one of them" if positive is not None
                else f"say which is the positive class (positive='{second}')")
        problems.append(StudyProblem(table.name, f"the outcome '{column}' has the values '{first}' and '{second}'; "
                                     f"{said}, or code it as 0/1."))
        return y, ()
    for k, t in enumerate(texts):
        if t == positive_text:
            y[k] = 1
        elif t == negative:
            y[k] = 0
    return y, (negative, positive_text)


def _as_float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _survival_outcome(table, time_column, event_column, rows, problems):
    """(time, event with -1 where unusable) of the rows ``rows``."""
    time, bad = _numbers([_text(table.cells[time_column])[r] for r in rows])
    if bad:
        problems.append(StudyProblem(f"{table.name} {_rows(table.rows[rows[k]] for k, _ in bad)}",
                                     f"the time '{time_column}' is not a number: "
                                     + ", ".join(f"'{t}' on row {table.rows[rows[k]]}" for k, t in bad[:LISTED])
                                     + "; give the follow-up time as a number (e.g. days or months)."))
    bad_index = {k for k, _ in bad}
    missing = [table.rows[rows[k]] for k in range(len(rows)) if np.isnan(time[k]) and k not in bad_index]
    if missing:
        problems.append(StudyProblem(f"{table.name} {_rows(missing)}", f"the time '{time_column}' is missing; give every "
                                     "patient a follow-up time, or leave the patient out of both tables."))
    not_positive = [k for k in range(len(rows)) if time[k] <= 0]
    if not_positive:
        problems.append(StudyProblem(f"{table.name} {_rows(table.rows[rows[k]] for k in not_positive)}",
                                     f"the time '{time_column}' must be > 0: "
                                     + ", ".join(f"{time[k]:g} on row {table.rows[rows[k]]}" for k in not_positive[:LISTED])
                                     + "; times are follow-up durations from the start (e.g. diagnosis) to the event or censoring."))
    texts = [_text(table.cells[event_column])[r] for r in rows]
    event = np.full(len(rows), -1)
    wrong = []
    for k, t in enumerate(texts):
        number = _as_float(t)
        if number in (0.0, 1.0):
            event[k] = int(number)
        else:
            wrong.append(k)
    if wrong:
        problems.append(StudyProblem(f"{table.name} {_rows(table.rows[rows[k]] for k in wrong)}",
                                     f"the event '{event_column}' must be 0 (censored) or 1 (event): "
                                     + ", ".join(f"'{texts[k]}' on row {table.rows[rows[k]]}" for k in wrong[:LISTED]) + "."))
    return time, event


def read_study(features, clinical, *, outcome: str | None = None, time: str | None = None, event: str | None = None,
               positive=None, batch: str | None = None, covariates=(), split: str | None = None, id_column: str = "id",
               missing: str = "refuse", n_folds: int | None = 5, drop_constant: bool = False,
               require_outcome: bool = True) -> StudyData:
    """Read and check FEATURES (CSV or Parquet) and CLINICAL (CSV) together; see the module docstring.

    ``outcome``: the binary outcome column (0/1, or two labels with ``positive`` the label coded 1);
    ``time`` and ``event``: the survival columns instead. ``batch``, ``covariates`` (numeric
    columns), ``split`` (train/test): optional columns; ``id_column``: the patient id in both tables.
    ``missing``: ``"refuse"`` (a problem) or ``"impute"`` (kept as NaN, to be imputed inside the
    folds). ``n_folds``: the cross-validation the study will run (None: no check of the class or
    event counts). ``drop_constant``: drop constant features with a note instead of refusing them.
    ``require_outcome``: False reads a study without an outcome (``outcome_kind`` ``"none"``; e.g. to
    harmonise a table for exploration) when no outcome column is given or found.
    Raises :class:`StudyInputError` listing every problem; returns :class:`StudyData`.
    """
    if missing not in MISSING_POLICIES:
        raise RadiomicsLabError(f"Unknown missing-value policy '{missing}'; choose 'refuse' (stop on missing values) or "
                                "'impute' (impute inside the cross-validation folds).")
    if n_folds is not None and (not isinstance(n_folds, int) or n_folds < 2):
        raise RadiomicsLabError(f"n_folds must be an integer >= 2 (or None for no check); got {n_folds!r}.")
    problems, notes = [], []
    data = _read_features(features, id_column, problems, notes)
    table = _read_table(clinical, "clinical", problems)
    if table is None:
        raise StudyInputError(problems)
    if id_column not in table.columns:
        problems.append(StudyProblem(f"{table.name} row 1", f"no id column '{id_column}' (columns: "
                                     f"{_listing(map(repr, table.columns))}); name the patient id column '{id_column}'."))
        raise StudyInputError(problems)
    outcome, time, event, batch, split = _choose_columns(table, outcome, time, event, batch, split, notes, problems,
                                                         require_outcome)
    covariates = [covariates] if isinstance(covariates, str) else list(covariates)
    wanted = [c for c in (outcome, time, event, batch, split, *covariates) if c is not None]
    absent = [c for c in wanted if c not in table.columns]
    if absent:
        problems.append(StudyProblem(f"{table.name} row 1", f"no column {', '.join(map(repr, absent))} (columns: "
                                     f"{_listing(map(repr, table.columns))})."))
    unused = [c for c in table.columns if c != id_column and c not in wanted]
    if unused:
        notes.append(f"{table.name}: column(s) not used: {_listing(unused)} (give them as covariates= to use them).")

    clinical_ids = [i.strip() for i in _text(table.cells[id_column])]
    empty = [row for row, i in zip(table.rows, clinical_ids) if not i]
    if empty:
        problems.append(StudyProblem(f"{table.name} {_rows(empty)}", f"empty id; give every row its patient id in '{id_column}'."))
    first_row = {}
    for r, i in enumerate(clinical_ids):
        if i:
            first_row.setdefault(i, []).append(r)
    for i, rs in first_row.items():
        if len(rs) > 1:
            problems.append(StudyProblem(f"{table.name} {_rows(table.rows[r] for r in rs)}",
                                         f"id '{i}' appears {len(rs)} times; give each patient one row."))
    if data is None:
        raise StudyInputError(problems)

    # Ids in one table only.
    only_features = [i for i in data.ids if i not in first_row]
    only_clinical = [i for i in first_row if i not in data.id_rows]
    if only_features:
        problems.append(StudyProblem(f"{Path(features).name} {_rows(data.id_rows[i][0] for i in only_features)}",
                                     f"{len(only_features)} id(s) have no row in {table.name}: "
                                     f"{_listing(map(repr, only_features))}."))
    if only_clinical:
        problems.append(StudyProblem(f"{table.name} {_rows(table.rows[first_row[i][0]] for i in only_clinical)}",
                                     f"{len(only_clinical)} id(s) have no features in {Path(features).name}: "
                                     f"{_listing(map(repr, only_clinical))}."))
    if only_features and len(only_features) == len(data.ids):
        problems.append(StudyProblem(table.name, f"no id matches between the tables (features: "
                                     f"{_listing(map(repr, data.ids[:3]))}; clinical: {_listing(map(repr, list(first_row)[:3]))}); "
                                     f"check that both '{id_column}' columns hold the same patient ids."))
    keep = [p for p, i in enumerate(data.ids) if i in first_row]
    ids = [data.ids[p] for p in keep]
    X, invalid = data.X[keep], data.invalid[keep]
    rows = [first_row[i][0] for i in ids]  # the clinical row of each patient

    # Clinical columns, on the patients in both tables.
    usable = not absent
    y = t = e = batch_values = covariate_values = split_mask = None
    classes = ()
    if usable and outcome is not None:
        y, classes = _binary_outcome(table, outcome, rows, positive, problems)
    elif usable and time is not None:
        t, e = _survival_outcome(table, time, event, rows, problems)
    if usable and split is not None:
        texts = [_text(table.cells[split])[r].strip().lower() for r in rows]
        wrong = [k for k, v in enumerate(texts) if v not in TRAIN_VALUES + TEST_VALUES]
        if wrong:
            problems.append(StudyProblem(f"{table.name} {_rows(table.rows[rows[k]] for k in wrong)}",
                                         f"the split '{split}' must be 'train' or 'test': "
                                         + ", ".join(f"'{_text(table.cells[split])[rows[k]]}' on row {table.rows[rows[k]]}"
                                                     for k in wrong[:LISTED]) + "."))
        split_mask = np.array([v in TRAIN_VALUES for v in texts], bool)
        if ids and not split_mask.any():
            problems.append(StudyProblem(table.name, f"no patient is in the training split ('{split}' = train)."))
    if usable and batch is not None:
        batch_values = np.array([_text(table.cells[batch])[r] for r in rows], dtype=object)
        blank = [k for k, v in enumerate(batch_values) if v.strip().lower() in MISSING_TEXTS]
        if blank:
            problems.append(StudyProblem(f"{table.name} {_rows(table.rows[rows[k]] for k in blank)}",
                                         f"the batch '{batch}' is missing; give every patient a batch (scanner, centre)."))
        for value in dict.fromkeys(v for k, v in enumerate(batch_values) if k not in blank):
            members = [k for k, v in enumerate(batch_values) if v == value]
            if len(members) < 2:
                problems.append(StudyProblem(f"{table.name} {_rows(table.rows[rows[k]] for k in members)}",
                                             f"batch '{value}' has {len(members)} patient; harmonisation needs at least 2 "
                                             "patients per batch (merge it with a similar batch, or leave the patient out)."))
    if usable and covariates:
        covariate_values = np.empty((len(rows), len(covariates)))
        for j, name in enumerate(covariates):
            covariate_values[:, j], bad = _numbers([_text(table.cells[name])[r] for r in rows])
            if bad:
                problems.append(StudyProblem(f"{table.name} {_rows(table.rows[rows[k]] for k, _ in bad)}",
                                             f"covariate '{name}' is not numeric: "
                                             + ", ".join(f"'{v}' on row {table.rows[rows[k]]}" for k, v in bad[:LISTED])
                                             + "; code it as numbers (e.g. 0/1 for two categories)."))
            blank = [table.rows[rows[k]] for k in np.flatnonzero(np.isnan(covariate_values[:, j]))
                     if k not in {b for b, _ in bad}]
            if blank and missing == "refuse":
                problems.append(StudyProblem(f"{table.name} {_rows(blank)}", f"covariate '{name}' is missing (missing='refuse'); "
                                             "fill it in, or use missing='impute' to impute it inside the folds."))
            elif blank:
                notes.append(f"covariate '{name}' is missing for {len(blank)} patient(s); left as NaN to be imputed inside the folds.")

    # Features: constant, missing (on the patients in both tables).
    names = list(data.names)
    if ids:
        lowest, highest = np.where(np.isnan(X), np.inf, X).min(axis=0), np.where(np.isnan(X), -np.inf, X).max(axis=0)
        constant = np.flatnonzero((lowest == highest) & np.isfinite(lowest))
        if constant.size and drop_constant:
            notes.append(f"{constant.size} constant feature(s) dropped: {_listing(names[j] for j in constant)}.")
            kept = np.setdiff1d(np.arange(len(names)), constant)
            X, names, invalid = X[:, kept], [names[j] for j in kept], invalid[:, kept]
            data.combo_of = [data.combo_of[j] for j in kept]
        elif constant.size:
            problems.append(StudyProblem(Path(features).name, f"{constant.size} feature(s) have the same value for every "
                                         f"patient: {_listing(f'{names[j]!r} ({lowest[j]:g})' for j in constant)}; they "
                                         "cannot tell patients apart: remove them, or use drop_constant=True."))
        _missing_values(X, invalid, names, ids, data, missing, Path(features).name, problems, notes)

    # Enough of each class / enough events for the folds, in the training rows.
    train = np.ones(len(ids), bool) if split_mask is None else split_mask
    if n_folds is not None and ids and train.any():
        where = "the training rows" if split_mask is not None else "the patients"
        if y is not None and classes:
            for code, label in enumerate(classes):
                count = int(np.sum((y == code) & train))
                if count < n_folds:
                    problems.append(StudyProblem(table.name, f"outcome class '{label}' ({code}) has {count} patient(s) in {where}; "
                                                 f"{n_folds}-fold stratified cross-validation needs at least {n_folds} of each "
                                                 f"class (one per fold): use at most {max(count, 1)} folds (--outer) or more patients."))
        if e is not None:
            count = int(np.sum((e == 1) & train))
            if count < n_folds:
                problems.append(StudyProblem(table.name, f"{count} event(s) in {where}; {n_folds}-fold cross-validation of a "
                                             f"survival model needs at least {n_folds} events (one per fold): use "
                                             f"at most {max(count, 1)} folds (--outer) or more patients."))
    if problems:
        raise StudyInputError(problems)

    n_train = int(train.sum())
    if len(names) > n_train:
        notes.append(f"{len(names)} features for {n_train} {'training ' if split_mask is not None else ''}patients: more "
                     "features than patients; reduce them inside the folds (selection) before a model.")
    kind = "binary" if outcome is not None else "survival" if time is not None else "none"
    return StudyData(X=X, feature_names=names, ids=ids, outcome_kind=kind,
                     y=y, time=t, event=None if e is None else e.astype(bool), batch=batch_values,
                     covariates=covariate_values, covariate_names=covariates, split=split_mask, classes=classes,
                     notes=notes, missing=missing, pivoted=data.pivoted,
                     sources={"features": str(features), "clinical": str(clinical)})


def _missing_values(X, invalid, names, ids, data: _Features, policy, source, problems, notes):
    """Missing values: a whole pivot combination absent for an id, then the other missing cells by feature."""
    absent = np.zeros(X.shape, bool)
    combos = np.array(data.combo_of, dtype=object)
    for p, i in enumerate(ids):
        for label, _ in data.missing_combos.get(i, ()):
            absent[p, combos == label] = True
    holes = np.isnan(X) & ~absent & ~invalid
    if not absent.any() and not holes.any():
        return
    listed = []
    for p, i in enumerate(ids):
        for label, description in data.missing_combos.get(i, ()):
            listed.append(StudyProblem(f"{source} {_rows(data.id_rows[i])}", f"id '{i}' has no row with {description}: "
                                       f"its {int(np.sum(combos == label))} features '{label}{PIVOT_SEPARATOR}...' are missing."))
    for j in np.flatnonzero(holes.any(axis=0)):
        patients = np.flatnonzero(holes[:, j])
        where = [row for p in patients for row in data.id_rows[ids[p]]]
        listed.append(StudyProblem(f"{source} {_rows(where)}", f"feature '{names[j]}' is missing (empty, NA, NaN or infinite) "
                                   f"for {len(patients)} patient(s): {_listing(repr(ids[p]) for p in patients)}."))
    if policy == "refuse":
        problems += [StudyProblem(p.where, p.message.rstrip(".") + "; fill them in, or use missing='impute' to impute "
                                  "them inside the cross-validation folds (missing='refuse').") for p in listed]
    else:
        notes.append(f"{int(np.isnan(X).sum())} missing value(s) in {int(np.isnan(X).any(axis=0).sum())} feature(s) of "
                     f"{int(np.isnan(X).any(axis=1).sum())} patient(s) are left as NaN (missing='impute'): impute them inside "
                     "the cross-validation folds (an imputer as the first step of the Pipeline).")
        notes += [str(p) for p in listed[:LISTED]]


def read_features_only(features, id_column: str = "id") -> StudyData:
    """A :class:`StudyData` of a FEATURES table alone (no clinical table, no outcome: e.g. to apply a saved model);
    the same checks of the table as :func:`read_study`; each problem listed (:class:`StudyInputError`)."""
    problems, notes = [], []
    data = _read_features(features, id_column, problems, notes)
    if data is None or problems:
        raise StudyInputError(problems)
    return StudyData(X=data.X, feature_names=list(data.names), ids=list(data.ids), outcome_kind="none", notes=notes)
