"""Feature reproducibility across observers (or perturbations): ICC, Lin's CCC, CV, robust-feature selection.

Ratings of one feature form an n x k matrix Y: n lesions (targets) rated by the same k observers
(raters). With the ANOVA mean squares (Shrout & Fleiss 1979; McGraw & Wong 1996)

    MSR = k sum_i (Ybar_i. - Ybar)^2 / (n - 1)                 between lesions
    MSC = n sum_j (Ybar_.j - Ybar)^2 / (k - 1)                 between observers
    MSE = sum_ij (Y_ij - Ybar_i. - Ybar_.j + Ybar)^2 / ((n - 1)(k - 1))
    MSW = (SSC + SSE) / (n (k - 1))                            within lesions

    ICC(1,1) = (MSR - MSW) / (MSR + (k - 1) MSW)                          one-way random
    ICC(2,1) = (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)      two-way random, absolute agreement (A,1)
    ICC(3,1) = (MSR - MSE) / (MSR + (k - 1) MSE)                          two-way mixed, consistency (C,1)

with 95 % confidence intervals from the F distribution (Shrout & Fleiss for ICC(1,1) and
ICC(3,1); McGraw & Wong's Satterthwaite approximation for ICC(2,1)), the same definitions as R's
``psych::ICC`` and ``pingouin.intraclass_corr``. Cohort mode (several lesions, each read by the
same observers) is the normal case; one lesion gives no ICC (only the coefficient of variation).
"""

import math
import operator
import re
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from .errors import RadiomicsLabError

ICC_TYPES = {"icc1": "ICC(1,1)", "icc2": "ICC(2,1)", "icc3": "ICC(3,1)"}
DEFAULT_ICC_TYPE = "icc2"
DEFAULT_RULE = "icc2_ci_low >= 0.75"
#: Columns of the per-feature table (``icc``, ``ci_low``, ``ci_high`` are those of ``icc_type``).
ICC_COLUMNS = ("feature", "icc", "ci_low", "ci_high", "icc_type",
               "icc1", "icc1_ci_low", "icc1_ci_high", "icc2", "icc2_ci_low", "icc2_ci_high",
               "icc3", "icc3_ci_low", "icc3_ci_high", "ccc", "ccc_ci_low", "ccc_ci_high", "cv",
               "n_lesions", "n_observers", "robust")
NUMERIC_COLUMNS = tuple(c for c in ICC_COLUMNS if c not in ("feature", "icc_type", "robust"))
_OPERATORS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def icc(ratings, alpha: float = 0.05) -> dict:
    """ICC(1,1), ICC(2,1), ICC(3,1) and their (1 - alpha) confidence intervals (see the module docstring).

    ``ratings``: array (..., n, k), n >= 2 lesions by k >= 2 observers; leading axes (e.g. features)
    are computed at once. Returns arrays keyed ``icc1``, ``icc1_ci_low``, ... ``icc3_ci_high``, and
    the mean squares ``msr``, ``msc``, ``mse``, ``msw``.
    """
    y = np.asarray(ratings, dtype=float)
    n, k = y.shape[-2:]
    if n < 2 or k < 2:
        raise RadiomicsLabError(f"ICC needs at least 2 lesions rated by at least 2 observers; got {n} lesion(s), {k} observer(s).")
    y = y - y.mean(axis=(-2, -1), keepdims=True)  # the sums of squares do not change; the rounding does
    rows, cols = y.mean(axis=-1, keepdims=True), y.mean(axis=-2, keepdims=True)
    ssr = k * np.sum(rows ** 2, axis=(-2, -1))
    ssc = n * np.sum(cols ** 2, axis=(-2, -1))
    sse = np.sum((y - rows - cols) ** 2, axis=(-2, -1))
    df_r, df_c, df_e, df_w = n - 1, k - 1, (n - 1) * (k - 1), n * (k - 1)
    msr, msc, mse, msw = ssr / df_r, ssc / df_c, sse / df_e, (ssc + sse) / df_w
    q = 1 - alpha / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        icc1 = (msr - msw) / (msr + (k - 1) * msw)
        icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        icc3 = (msr - mse) / (msr + (k - 1) * mse)
        # Shrout & Fleiss: ICC(1,1) with F = MSR / MSW on (n - 1, n (k - 1)) df, ICC(3,1) with F = MSR / MSE.
        f1, f3 = msr / msw, msr / mse
        f1_low, f1_high = f1 / stats.f.ppf(q, df_r, df_w), f1 * stats.f.ppf(q, df_w, df_r)
        f3_low, f3_high = f3 / stats.f.ppf(q, df_r, df_e), f3 * stats.f.ppf(q, df_e, df_r)
        # McGraw & Wong (A,1): Satterthwaite degrees of freedom v.
        fj = msc / mse
        v = (df_e * (k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
             / (df_r * k ** 2 * icc2 ** 2 * fj ** 2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2))
        f2_high, f2_low = stats.f.ppf(q, df_r, v), stats.f.ppf(q, v, df_r)
        denominator = k * msc + (k * n - k - n) * mse
        return {
            "icc1": icc1, "icc1_ci_low": (f1_low - 1) / (f1_low + k - 1), "icc1_ci_high": (f1_high - 1) / (f1_high + k - 1),
            "icc2": icc2, "icc2_ci_low": n * (msr - f2_high * mse) / (f2_high * denominator + n * msr),
            "icc2_ci_high": n * (f2_low * msr - mse) / (denominator + n * f2_low * msr),
            "icc3": icc3, "icc3_ci_low": (f3_low - 1) / (f3_low + k - 1), "icc3_ci_high": (f3_high - 1) / (f3_high + k - 1),
            "msr": msr, "msc": msc, "mse": mse, "msw": msw,
        }


def lins_ccc(x, y, alpha: float = 0.05) -> tuple[float, float, float]:
    """Lin's concordance correlation coefficient of two readers and its (1 - alpha) confidence interval.

    rho_c = 2 s_xy / (s_x^2 + s_y^2 + (xbar - ybar)^2) with 1/n (co)variances (Lin 1989). The
    interval is tanh(z +/- z_(1-alpha/2) sigma_z) with z = atanh(rho_c) and Lin's (1989, corrected
    2000) variance of z:  sigma_z^2 = [ (1 - r^2) rho_c^2 / ((1 - rho_c^2) r^2)
    + 2 rho_c^3 (1 - rho_c) u^2 / (r (1 - rho_c^2)^2) - rho_c^4 u^4 / (2 r^2 (1 - rho_c^2)^2) ] / (n - 2),
    r the Pearson correlation and u = (xbar - ybar) / sqrt(s_x s_y). The interval needs n >= 3.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = x.size
    sx2, sy2 = x.var(), y.var()
    sxy = np.mean((x - x.mean()) * (y - y.mean()))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 2 * sxy / (sx2 + sy2 + (x.mean() - y.mean()) ** 2)
        if n < 3 or not np.isfinite(rho) or abs(rho) >= 1:
            return float(rho), math.nan, math.nan
        r = sxy / math.sqrt(sx2 * sy2)
        u2 = (x.mean() - y.mean()) ** 2 / math.sqrt(sx2 * sy2)
        variance = ((1 - r ** 2) * rho ** 2 / ((1 - rho ** 2) * r ** 2)
                    + 2 * rho ** 3 * (1 - rho) * u2 / (r * (1 - rho ** 2) ** 2)
                    - rho ** 4 * u2 ** 2 / (2 * r ** 2 * (1 - rho ** 2) ** 2)) / (n - 2)
        half = stats.norm.ppf(1 - alpha / 2) * math.sqrt(variance) if variance >= 0 else math.nan
    z = math.atanh(rho)
    return float(rho), math.tanh(z - half), math.tanh(z + half)


def coefficient_of_variation(ratings) -> np.ndarray:
    """Root mean square over lesions of the within-lesion CV = SD / |mean| (SD with k - 1) across observers.

    ``ratings``: array (..., n, k); a lesion whose mean is 0 gives NaN.
    """
    y = np.asarray(ratings, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = y.std(axis=-1, ddof=1) / np.abs(y.mean(axis=-1))
    return np.sqrt(np.mean(cv ** 2, axis=-1))


@dataclass(frozen=True)
class Rule:
    """A robust-feature rule ``<column> <op> <threshold>`` on the per-feature table, e.g. ``icc2_ci_low >= 0.75``."""

    column: str
    op: str
    threshold: float

    def __str__(self):
        return f"{self.column} {self.op} {self.threshold:g}"

    def __call__(self, row: dict) -> bool:
        value = row.get(self.column, math.nan)
        return bool(np.isfinite(value) and _OPERATORS[self.op](value, self.threshold))


def parse_rule(text) -> Rule:
    """``"icc2_ci_low >= 0.75"`` -> :class:`Rule`; the column must be a numeric column of :data:`ICC_COLUMNS`."""
    if isinstance(text, Rule):
        return text
    match = re.fullmatch(r"\s*([a-z0-9_]+)\s*(>=|<=|>|<)\s*([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*", str(text))
    if not match or match.group(1) not in NUMERIC_COLUMNS:
        raise RadiomicsLabError(
            f"Robust-feature rule '{text}' is not of the form '<column> <op> <number>' with a column of "
            f"{', '.join(NUMERIC_COLUMNS)} and op one of >=, >, <=, <; e.g. '{DEFAULT_RULE}'."
        )
    return Rule(match.group(1), match.group(2), float(match.group(3)))


@dataclass
class Reproducibility:
    """Per-feature reproducibility (rows with :data:`ICC_COLUMNS`), the robust features and what was assumed."""

    rows: list
    robust: list
    lesions: list
    observers: list
    rule: Rule
    icc_type: str
    notes: list = field(default_factory=list)

    def row(self, feature: str) -> dict:
        return next(r for r in self.rows if r["feature"] == feature)


def check_observer_sets(observers_of: dict) -> list:
    """The observers every lesion must share (``observers_of``: lesion -> observer names); errors name the lesion at fault.

    Each lesion needs at least 2 observers, and the two-way ICCs need the same observers for every lesion.
    """
    first = next(iter(observers_of))
    observers = list(observers_of[first])
    for lesion, seen in observers_of.items():
        if len(seen) < 2:
            raise RadiomicsLabError(
                f"Lesion '{lesion}' has {len(seen)} observer ({', '.join(seen)}); reproducibility (ICC) needs at "
                "least 2 observers of every lesion. Add another observer's mask or use perturbations."
            )
        if set(seen) != set(observers):
            lacking, having = (lesion, first) if any(o not in seen for o in observers) else (first, lesion)
            missing = [o for o in observers_of[having] if o not in observers_of[lacking]]
            raise RadiomicsLabError(
                f"Lesion '{lacking}' has no observer {', '.join(map(repr, missing))} that lesion '{having}' has; "
                "the two-way ICCs need the same observers for every lesion (name them alike)."
            )
    return observers


def ratings_cube(records) -> tuple[np.ndarray, list, list, list]:
    """(lesion, observer, feature, value) records -> (array [feature, lesion, observer], features, lesions, observers).

    Every lesion must be read by the same >= 2 observers and have every feature once per observer;
    otherwise :class:`RadiomicsLabError` names the lesion, observer or feature at fault.
    """
    table, lesions, features = {}, {}, {}
    for lesion, observer, feature, value in records:
        key = (lesion, observer, feature)
        if key in table:
            raise RadiomicsLabError(f"Feature '{feature}' of observer '{observer}' on lesion '{lesion}' is given twice; give each once.")
        table[key] = float(value)
        lesions.setdefault(lesion, {}).setdefault(observer, None)
        features.setdefault(feature, None)
    if not table:
        raise RadiomicsLabError("No feature values to assess; extract features of every observer's mask first.")
    observers = check_observer_sets({lesion: list(seen) for lesion, seen in lesions.items()})
    cube = np.full((len(features), len(lesions), len(observers)), np.nan)
    for f, feature in enumerate(features):
        for i, lesion in enumerate(lesions):
            for j, observer in enumerate(observers):
                value = table.get((lesion, observer, feature))
                if value is None:
                    raise RadiomicsLabError(
                        f"Feature '{feature}' is missing for observer '{observer}' on lesion '{lesion}'; "
                        "extract every observer's features with the same settings."
                    )
                cube[f, i, j] = value
    return cube, list(features), list(lesions), observers


def feature_reproducibility(records, rule=DEFAULT_RULE, icc_type: str = DEFAULT_ICC_TYPE, alpha: float = 0.05) -> Reproducibility:
    """Per-feature ICC(1,1), ICC(2,1), ICC(3,1) with CIs, Lin's CCC (two observers), CV and the robust features.

    ``records``: (lesion, observer, feature, value) tuples; see :func:`ratings_cube` for the checks.
    A feature is robust when ``rule`` (a :class:`Rule` or its text) holds for its row; NaN never
    passes. With one lesion the ICCs and CCC are NaN and a note says so.
    """
    rule = parse_rule(rule)
    if icc_type not in ICC_TYPES:
        raise RadiomicsLabError(f"Unknown ICC type '{icc_type}'; choose one of {', '.join(ICC_TYPES)} ({', '.join(ICC_TYPES.values())}).")
    cube, features, lesions, observers = ratings_cube(records)
    n, k = len(lesions), len(observers)
    notes = []
    finite = np.all(np.isfinite(cube), axis=(1, 2))
    if not finite.all():
        notes.append(f"{int((~finite).sum())} feature(s) have NaN or infinite values for some observer; their statistics are NaN.")
    nan = np.full(len(features), np.nan)
    if n >= 2:
        values = icc(np.where(finite[:, None, None], cube, 0.0), alpha)
        values = {key: np.where(finite, value, np.nan) for key, value in values.items()}
    else:
        values = {key: nan for key in NUMERIC_COLUMNS if key.startswith("icc")}
        notes.append(f"ICC needs at least 2 lesions and there is 1 ('{lesions[0]}'); only the coefficient of variation "
                     "across observers is given. Give a cohort (several lesions, each read by the same observers).")
    cv = coefficient_of_variation(cube)
    ccc = [lins_ccc(cube[f, :, 0], cube[f, :, 1], alpha) if k == 2 and n >= 2 and finite[f] else (math.nan,) * 3
           for f in range(len(features))]
    rows = []
    for f, feature in enumerate(features):
        row = {"feature": feature, "icc": float(values[icc_type][f]), "ci_low": float(values[f"{icc_type}_ci_low"][f]),
               "ci_high": float(values[f"{icc_type}_ci_high"][f]), "icc_type": ICC_TYPES[icc_type]}
        for kind in ICC_TYPES:
            for suffix in ("", "_ci_low", "_ci_high"):
                row[kind + suffix] = float(values[kind + suffix][f])
        row.update(ccc=ccc[f][0], ccc_ci_low=ccc[f][1], ccc_ci_high=ccc[f][2], cv=float(cv[f]), n_lesions=n, n_observers=k)
        row["robust"] = rule(row)
        rows.append(row)
    return Reproducibility(rows, [r["feature"] for r in rows if r["robust"]], lesions, observers, rule, icc_type, notes)
