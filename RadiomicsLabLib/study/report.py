"""Figures and the self-contained HTML report of a radiomics study (from predictions to a readable signature).

Figures (each ``..._figure(path, ...) -> Path``: a PNG written atomically at :data:`DPI` dpi, matplotlib's
object API, so no GUI backend is needed; colours from the Okabe-Ito colour-blind-safe :data:`PALETTE`):
:func:`roc_figure`, :func:`calibration_figure`, :func:`decision_curve_figure`, :func:`kaplan_meier_figure`,
:func:`weights_figure`, :func:`stability_figure`. The numbers each figure draws come from a ``..._data``
function (:func:`roc_data`, :func:`calibration_data`, :func:`kaplan_meier_data`) built on
:mod:`RadiomicsLabLib.study.metrics`, so what is drawn can be checked.

Report: :func:`write_report` writes ONE HTML file with inline CSS, the figures embedded as base64 data URIs,
no script and no external reference; every text taken from the inputs is HTML-escaped. It holds the summary,
the metrics table, the figures with captions, the TRIPOD+AI checklist (:func:`tripod_ai_items`; Collins GS
et al. BMJ 2024;385:e078378) and the Radiomics Quality Score (:func:`rqs_items`; Lambin P et al. Nat Rev
Clin Oncol 2017;14:749-762) filled from the model card, the notes, the settings, software versions and input
hashes. Checklist items that software cannot know are listed "for the authors", so the checklist is complete,
and RQS points are counted only where the run evidences them.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy import special

from ..errors import RadiomicsLabError
from . import metrics as M
from .harmonisation import PALETTE

__all__ = [
    "DPI",
    "PALETTE",
    "RQS_MAX",
    "calibration_data",
    "calibration_figure",
    "decision_curve_figure",
    "kaplan_meier_data",
    "kaplan_meier_figure",
    "roc_data",
    "roc_figure",
    "rqs_items",
    "rqs_total",
    "stability_figure",
    "tripod_ai_items",
    "weights_figure",
    "write_report",
]

#: Resolution of the PNG figures.
DPI = 150
#: Maximum of the Radiomics Quality Score (Lambin et al. 2017).
RQS_MAX = 36
#: Points of a fixed-FPR grid on which bootstrap ROC curves are averaged vertically.
ROC_GRID = 201
#: Sign colours of coefficient bars (Okabe-Ito vermillion / blue) and the neutral colour of reference lines.
POSITIVE, NEGATIVE, NEUTRAL = "#D55E00", "#0072B2", "0.45"
#: The status of a checklist item.
STATUSES = ("filled", "evidenced", "not evidenced", "for the authors")


# Shared figure helpers ----------------------------------------------------------------------------------------
def _new_figure(width: float, height: float, rows: int = 1, height_ratios=None, sharex: bool = False):
    """A constrained-layout matplotlib Figure (no pyplot, no GUI backend) and its axes (1-D array)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(rows, 1, squeeze=False, sharex=sharex,
                           gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)[:, 0]
    for ax in axes:
        ax.tick_params(labelsize=9)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return figure, axes


def _grid(ax, axis: str = "both") -> None:
    ax.grid(True, axis=axis, color="0.9", linewidth=0.8)
    ax.set_axisbelow(True)


def _save(figure, path) -> Path:
    """Write ``figure`` as a PNG at :data:`DPI` atomically (a reader never sees a half-written file)."""
    from ..fileio import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path


def _colour(k: int) -> str:
    # skip the palette's yellow (#F0E442): too pale for lines on white
    usable = [c for c in PALETTE if c != "#F0E442"]
    return usable[k % len(usable)]


def _short(text, limit: int = 48) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _predictions(y, predictions, what: str = "probabilities"):
    """(y as 0/1, {name: checked predictions}) of a binary outcome and a non-empty mapping of models."""
    if not isinstance(predictions, Mapping) or not predictions:
        raise RadiomicsLabError("predictions must be a non-empty mapping: model name -> predicted probabilities.")
    yb = M._binary(y)
    check = M._probabilities if what == "probabilities" else M._scores
    return yb, {str(name): check(p, yb.size, f"predictions[{name!r}]") for name, p in predictions.items()}


# ROC ------------------------------------------------------------------------------------------------------------
def _roc_points(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical ROC curve: (FPR, TPR) at every distinct threshold, from (0, 0) to (1, 1); ties give one step."""
    order = np.argsort(-scores, kind="mergesort")
    s, yy = scores[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last patient of each tied score group
    tp = np.cumsum(yy)[last]
    fp = (last + 1) - tp
    pos, neg = yy.sum(), yy.size - yy.sum()
    return np.r_[0.0, fp / neg], np.r_[0.0, tp / pos]


def _tpr_on_grid(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """TPR(f) = the largest TPR reached with FPR <= f (the ROC step function, upper convention)."""
    return tpr[np.searchsorted(fpr, grid, side="right") - 1]


def roc_data(y, scores, *, n_bootstrap: int = 1000, seed=0, confidence: float = 0.95, grid: int = ROC_GRID) -> dict:
    """The ROC curve of ``scores`` with its pointwise bootstrap band and the AUC with DeLong's CI.

    Curve: the empirical ROC (one point per distinct threshold). Band: ``n_bootstrap`` outcome-stratified
    resamples (the numbers of positives and negatives kept, as pROC's ``ci.se``); each resample's ROC is
    read on a fixed grid of false-positive rates by vertical averaging (Fawcett 2006, Pattern Recognit Lett
    27:861, section 7.1: TPR at FPR f is the largest TPR with FPR <= f), and the band is the pointwise
    ``(1-confidence)/2`` and ``1-(1-confidence)/2`` percentiles of those TPRs. AUC and its CI:
    :func:`~RadiomicsLabLib.study.metrics.auc_delong`. Deterministic given ``seed``.
    Returns ``{"fpr", "tpr", "grid", "tpr_grid", "band_low", "band_high", "auc": AUCResult}``.
    """
    y = M._binary(y)
    s = M._scores(scores, y.size)
    fpr, tpr = _roc_points(y, s)
    f = np.linspace(0.0, 1.0, int(grid))
    idx = M._bootstrap_indices(y.size, n_bootstrap, seed, y)
    curves = np.empty((idx.shape[0], f.size))
    for b, rows in enumerate(idx):
        curves[b] = _tpr_on_grid(*_roc_points(y[rows], s[rows]), f)
    alpha = 1.0 - float(confidence)
    low, high = np.quantile(curves, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    return {"fpr": fpr, "tpr": tpr, "grid": f, "tpr_grid": _tpr_on_grid(fpr, tpr, f), "band_low": low,
            "band_high": high, "auc": M.auc_delong(y, s, confidence)}


def _auc_label(name: str, auc) -> str:
    return f"{_short(name, 32)}: AUC {auc.auc:.3f} (95 % CI {auc.ci_low:.3f}-{auc.ci_high:.3f})"


def _roc_plot(y, predictions, *, n_bootstrap: int = 1000, seed=0, title=None):
    y, predictions = _predictions(y, predictions, "scores")
    figure, (ax,) = _new_figure(6.4, 6.0)
    ax.plot([0, 1], [0, 1], color=NEUTRAL, linestyle="--", linewidth=1.0, label="chance (AUC 0.5)")
    for k, (name, p) in enumerate(predictions.items()):
        data = roc_data(y, p, n_bootstrap=n_bootstrap, seed=seed)
        colour = _colour(k)
        ax.fill_between(data["grid"], data["band_low"], data["band_high"], step="post", color=colour, alpha=0.18,
                        linewidth=0)
        ax.step(data["fpr"], data["tpr"], where="post", color=colour, linewidth=2.0, label=_auc_label(name, data["auc"]),
                gid=f"roc:{name}")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity (false-positive rate)", fontsize=10)
    ax.set_ylabel("sensitivity (true-positive rate)", fontsize=10)
    _grid(ax)
    n_pos = int(y.sum())
    ax.set_title(title or f"ROC curves ({y.size} patients, {n_pos} positive)", fontsize=11)
    ax.legend(loc="lower right", fontsize=8, title=f"shaded: 95 % pointwise bootstrap band ({n_bootstrap} resamples)",
              title_fontsize=8, framealpha=0.9)
    return figure


def roc_figure(path, y, predictions: Mapping[str, Sequence[float]], *, n_bootstrap: int = 1000, seed=0,
               title=None) -> Path:
    """ROC curve of each model with its 95 % pointwise bootstrap band (:func:`roc_data`), the AUC with DeLong's
    95 % CI in the legend, and the chance diagonal; PNG at ``path``."""
    return _save(_roc_plot(y, predictions, n_bootstrap=n_bootstrap, seed=seed, title=title), path)


# Calibration ----------------------------------------------------------------------------------------------------
def calibration_data(y, probabilities, *, bins: int = 10, confidence: float = 0.95) -> dict:
    """Grouped calibration of predicted probabilities, the logistic recalibration line and its statistics.

    Patients are sorted by prediction and cut into ``bins`` groups of (nearly) equal size (quantile bins;
    deciles for 10). Per group: mean prediction, observed event rate, and its Wilson CI
    (:func:`~RadiomicsLabLib.study.metrics.wilson_interval`). Recalibration: the logistic fit
    logit P(y=1) = a + b logit(p) (Cox 1958), drawn as ``line_p`` -> ``line_observed``. ``intercept``
    (calibration-in-the-large, slope fixed at 1) and ``slope`` with Wald CIs are
    :func:`~RadiomicsLabLib.study.metrics.calibration_intercept` / ``calibration_slope`` (NaN when the fit fails,
    e.g. perfect separation).
    """
    y = M._binary(y)
    p = M._probabilities(probabilities, y.size)
    bins = int(bins)
    if not 2 <= bins <= y.size:
        raise RadiomicsLabError(f"bins must be between 2 and the number of patients ({y.size}), got {bins}.")
    groups = np.array_split(np.argsort(p, kind="mergesort"), bins)
    mean_p = np.array([p[g].mean() for g in groups])
    events = np.array([y[g].sum() for g in groups])
    sizes = np.array([g.size for g in groups])
    ci = np.array([M.wilson_interval(k, n, confidence) for k, n in zip(events, sizes)])
    nan = M.Interval(math.nan, math.nan, math.nan)
    line_p = np.linspace(max(p.min(), 1e-4), min(p.max(), 1 - 1e-4), 200)
    try:
        intercept = M.calibration_intercept(y, p, confidence)
        slope = M.calibration_slope(y, p, confidence)
        lp = M._logit(p)
        beta, _ = M._logistic_fit(np.column_stack([np.ones(y.size), lp]), y.astype(float), np.zeros(y.size))
        line = special.expit(beta[0] + beta[1] * M._logit(line_p))
    except RadiomicsLabError:
        intercept, slope, line = nan, nan, np.full(line_p.size, np.nan)
    return {"mean_predicted": mean_p, "observed": events / sizes, "ci_low": ci[:, 0], "ci_high": ci[:, 1],
            "n": sizes, "intercept": intercept, "slope": slope, "line_p": line_p, "line_observed": line}


def _interval_text(iv) -> str:
    if not math.isfinite(iv.estimate):
        return "not estimable"
    return f"{iv.estimate:.2f} ({iv.ci_low:.2f} to {iv.ci_high:.2f})"


def _calibration_plot(y, predictions, *, bins: int = 10):
    y, predictions = _predictions(y, predictions)
    figure, (ax, hist) = _new_figure(6.4, 7.4, rows=2, height_ratios=[4, 1.2], sharex=True)
    ideal = ax.plot([0, 1], [0, 1], color=NEUTRAL, linestyle="--", linewidth=1.0)[0]
    handles, texts = [], []
    edges = np.linspace(0, 1, 41)
    for k, (name, p) in enumerate(predictions.items()):
        data = calibration_data(y, p, bins=bins)
        colour = _colour(k)
        lower = np.maximum(data["observed"] - data["ci_low"], 0.0)  # rounding at 0 and 1
        upper = np.maximum(data["ci_high"] - data["observed"], 0.0)
        handles.append(ax.errorbar(data["mean_predicted"], data["observed"], yerr=[lower, upper], fmt="o",
                                   color=colour, markersize=5, capsize=2.5, linewidth=1.0, gid=f"calibration:{name}"))
        texts.append(f"{_short(name, 32)}: {bins} quantile groups (95 % Wilson CI)")
        handles.append(ax.plot(data["line_p"], data["line_observed"], color=colour, linewidth=1.8)[0])
        texts.append(f"  recalibration: intercept {_interval_text(data['intercept'])},\n"
                     f"  slope {_interval_text(data['slope'])}")
        hist.hist(p[y == 1], bins=edges, histtype="step", color=colour, linewidth=1.5)
        hist.hist(p[y == 0], bins=edges, histtype="step", color=colour, linewidth=1.0, linestyle=":")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_ylabel("observed event rate", fontsize=10)
    ax.set_title(f"Calibration ({y.size} patients, event rate {y.mean():.2f})", fontsize=11)
    _grid(ax)
    ax.legend(handles + [ideal], texts + ["ideal calibration"], loc="upper left", fontsize=8, framealpha=0.9)
    hist.set_xlabel("predicted probability", fontsize=10)
    hist.set_ylabel("patients", fontsize=9)
    hist.legend(handles=[hist.plot([], [], color="0.2", linewidth=1.5)[0],
                         hist.plot([], [], color="0.2", linewidth=1.0, linestyle=":")[0]],
                labels=["events", "non-events"], fontsize=8, loc="upper center", ncols=2, frameon=False)
    _grid(hist, "y")
    return figure


def calibration_figure(path, y, predictions: Mapping[str, Sequence[float]], *, bins: int = 10) -> Path:
    """Calibration plot (:func:`calibration_data`): observed event rate against mean predicted probability per
    quantile group with Wilson 95 % CIs, the ideal diagonal, the logistic recalibration line with its intercept
    and slope (95 % CIs) in the legend, and histograms of the predictions of events and non-events below."""
    return _save(_calibration_plot(y, predictions, bins=bins), path)


# Decision curve -------------------------------------------------------------------------------------------------
def _decision_curve_plot(y, predictions, thresholds=None):
    y, predictions = _predictions(y, predictions)
    curves = M.decision_curve(y, predictions, thresholds)
    t = curves["threshold"]
    figure, (ax,) = _new_figure(7.0, 5.0)
    ax.plot(t, curves["treat_none"], color="black", linewidth=1.2, label="treat none")
    ax.plot(t, curves["treat_all"], color=NEUTRAL, linewidth=1.5, linestyle="--", label="treat all")
    top = float(y.mean())
    for k, name in enumerate(predictions):
        ax.plot(t, curves[name], color=_colour(k), linewidth=2.0, label=_short(name, 40), gid=f"dca:{name}")
        top = max(top, float(np.max(curves[name])))
    ax.set_ylim(-0.05 * max(top, 0.1) - 0.02, top * 1.08 + 0.01)
    ax.set_xlim(float(t.min()), float(t.max()))
    ax.set_xlabel("threshold probability (treat when predicted risk \u2265 threshold)", fontsize=10)
    ax.set_ylabel("net benefit (true positives per patient)", fontsize=10)
    ax.set_title(f"Decision curve ({y.size} patients, prevalence {y.mean():.2f})", fontsize=11)
    _grid(ax)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)
    return figure


def decision_curve_figure(path, y, predictions: Mapping[str, Sequence[float]], thresholds=None) -> Path:
    """Decision curve (:func:`~RadiomicsLabLib.study.metrics.decision_curve`; Vickers & Elkin 2006): the net
    benefit of each model, of treating all and of treating none against the threshold probability."""
    return _save(_decision_curve_plot(y, predictions, thresholds), path)


# Kaplan-Meier ---------------------------------------------------------------------------------------------------
def kaplan_meier_data(time, event, groups, *, labels=("low risk", "high risk")) -> dict:
    """{"curves": {label: KaplanMeierResult}, "groups": {label: boolean mask}, "logrank": LogRankResult or None}.

    ``groups``: one group value per patient; the sorted distinct values are named by ``labels`` when there are
    as many labels as groups (so 0/1 risk groups become "low risk"/"high risk"), else by their own text.
    Curves: :func:`~RadiomicsLabLib.study.metrics.kaplan_meier` (Greenwood, log-log 95 % CI); test:
    :func:`~RadiomicsLabLib.study.metrics.log_rank_test` (None with a single group).
    """
    t, e = M._survival(time, event)
    g = np.asarray(groups)
    if g.ndim != 1 or g.size != t.size:
        raise RadiomicsLabError(f"groups must give one group per patient ({t.size}), got shape {g.shape}.")
    values = np.unique(g)
    names = [str(x) for x in labels] if labels is not None and len(labels) == values.size else [str(v) for v in values]
    masks = {name: g == v for name, v in zip(names, values)}
    curves = {name: M.kaplan_meier(t[m], e[m]) for name, m in masks.items()}
    logrank = M.log_rank_test(t, e, g) if values.size > 1 and e.sum() > 0 else None
    return {"curves": curves, "groups": masks, "logrank": logrank}


def _p_text(p: float) -> str:
    if not math.isfinite(p):
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _kaplan_meier_plot(time, event, groups, *, labels=("low risk", "high risk"), horizon=None):
    t, e = M._survival(time, event)
    data = kaplan_meier_data(t, e, groups, labels=labels)
    k = len(data["curves"])
    figure, (ax, table) = _new_figure(7.0, 5.6 + 0.22 * k, rows=2, height_ratios=[4, 0.45 + 0.28 * k])
    tmax = float(t.max())
    for i, (name, km) in enumerate(data["curves"].items()):
        colour = _colour(i)
        x = np.r_[0.0, km.times]
        label = f"{_short(name, 30)} (n = {int(data['groups'][name].sum())}, {int(km.n_events.sum())} events)"
        if horizon is not None:
            label += f"; S({float(horizon):g}) = {float(km.survival_at(float(horizon))):.2f}"
        ax.step(x, np.r_[1.0, km.survival], where="post", color=colour, linewidth=2.0, label=label, gid=f"km:{name}")
        low, high = np.r_[1.0, km.ci_low], np.r_[1.0, km.ci_high]
        ok = np.isfinite(low) & np.isfinite(high)
        ax.fill_between(x, np.where(ok, low, np.nan), np.where(ok, high, np.nan), step="post", color=colour,
                        alpha=0.18, linewidth=0)
        censored = km.n_censored > 0
        ax.plot(km.times[censored], km.survival[censored], linestyle="none", marker="|", markersize=7,
                markeredgewidth=1.2, color=colour)
    if horizon is not None:
        ax.axvline(float(horizon), color=NEUTRAL, linestyle=":", linewidth=1.2)
    ax.plot([], [], linestyle="none", marker="|", color="0.3", label="censored")
    ax.set_xlim(0, tmax * 1.02)
    ax.set_ylim(0, 1.02)
    ticks = [x for x in ax.xaxis.get_major_locator().tick_values(0, tmax) if 0 <= x <= tmax * 1.02]
    ax.set_xticks(ticks)
    ax.set_ylabel("survival probability", fontsize=10)
    ax.set_xlabel("time", fontsize=10)
    _grid(ax)
    p = data["logrank"].p_value if data["logrank"] is not None else math.nan
    p_text = _p_text(p)
    ax.set_title(f"Kaplan-Meier curves with 95 % CI; log-rank p {p_text if p_text[0] == '<' else '= ' + p_text}",
                 fontsize=11)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    # numbers at risk under the plot, at the x ticks
    table.set_xlim(ax.get_xlim())
    table.set_ylim(-0.5, k - 0.5)
    table.set_xticks([])
    table.set_yticks(range(k))
    table.set_yticklabels([_short(name, 20) for name in data["curves"]][::-1], fontsize=8)
    for side in ("left", "bottom"):
        table.spines[side].set_visible(False)
    table.tick_params(left=False, pad=14)
    for i, (name, mask) in enumerate(data["groups"].items()):
        row = k - 1 - i
        table.get_yticklabels()[row].set_color(_colour(i))
        for x in ticks:
            table.text(x, row, str(int(np.sum(t[mask] >= x))), ha="center", va="center", fontsize=8, color=_colour(i))
    table.set_title("number at risk", fontsize=9, loc="left")
    return figure


def kaplan_meier_figure(path, time, event, groups, *, labels=("low risk", "high risk"), horizon=None) -> Path:
    """Kaplan-Meier curve of each group with its 95 % CI band and censoring ticks (:func:`kaplan_meier_data`),
    the log-rank p in the title, the survival at ``horizon`` (dotted line) in the legend when given, and the
    numbers at risk below the plot."""
    return _save(_kaplan_meier_plot(time, event, groups, labels=labels, horizon=horizon), path)


# Coefficients / importances and selection stability -------------------------------------------------------------
def _names_values(names, values, what: str) -> tuple[list, np.ndarray]:
    names = [str(n) for n in names]
    v = np.asarray(values, dtype=float).ravel()
    if len(names) != v.size or not names:
        raise RadiomicsLabError(f"{what}: give one value per feature name ({len(names)} names, {v.size} values).")
    if not np.all(np.isfinite(v)):
        raise RadiomicsLabError(f"{what}: the values must be finite numbers.")
    return names, v


def _bars(ax, names, values, colours) -> None:
    ax.barh(np.arange(len(values))[::-1], values, color=colours, height=0.7)
    ax.set_yticks(np.arange(len(values))[::-1])
    ax.set_yticklabels([_short(n, 48) for n in names], fontsize=8)
    ax.set_ylim(-0.6, len(values) - 0.4)
    _grid(ax, "x")


def _weights_plot(names, values, *, kind: str = "coefficient", top: int = 20):
    if kind not in ("coefficient", "importance"):
        raise RadiomicsLabError(f"kind must be 'coefficient' or 'importance', got {kind!r}.")
    names, v = _names_values(names, values, "weights_figure")
    nonzero = np.flatnonzero(v != 0)
    order = nonzero[np.argsort(-np.abs(v[nonzero]), kind="stable")][: max(1, int(top))]
    figure, (ax,) = _new_figure(7.5, 1.4 + 0.28 * max(len(order), 1))
    shown = v[order]
    if kind == "coefficient":
        _bars(ax, [names[j] for j in order], shown, [POSITIVE if x > 0 else NEGATIVE for x in shown])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel("coefficient (features standardised to unit SD)", fontsize=10)
        ax.legend(handles=[ax.bar([0], [0], color=POSITIVE, width=0)[0], ax.bar([0], [0], color=NEGATIVE, width=0)[0]],
                  labels=["raises the predicted risk", "lowers the predicted risk"], fontsize=8, loc="lower right",
                  framealpha=0.9)
        what = "non-zero coefficients"
    else:
        _bars(ax, [names[j] for j in order], shown, _colour(1))
        ax.set_xlabel("importance", fontsize=10)
        what = "features with non-zero importance"
    count = f"top {len(order)} of {nonzero.size}" if nonzero.size > len(order) else f"all {nonzero.size}"
    ax.set_title(f"Final model: {count} {what} ({len(names)} features in)", fontsize=11)
    if not nonzero.size:
        ax.text(0.5, 0.5, "every value is zero", transform=ax.transAxes, ha="center", va="center")
    return figure


def weights_figure(path, names, values, *, kind: str = "coefficient", top: int = 20) -> Path:
    """Horizontal bars of the ``top`` largest |value|s (zeros left out), largest first; coefficients are coloured
    by sign (vermillion: raises the predicted risk, blue: lowers it), importances in one colour."""
    return _save(_weights_plot(names, values, kind=kind, top=top), path)


def _stability_plot(features, frequencies, *, stability=None, top: int = 30):
    names, f = _names_values(features, frequencies, "stability_figure")
    if f.min() < 0 or f.max() > 1:
        raise RadiomicsLabError("stability_figure: selection frequencies must lie between 0 and 1.")
    order = np.argsort(-f, kind="stable")[: max(1, int(top))]
    figure, (ax,) = _new_figure(7.5, 1.4 + 0.26 * len(order))
    _bars(ax, [names[j] for j in order], f[order], [_colour(3) if x >= 0.5 else _colour(1) for x in f[order]])
    ax.axvline(0.5, color=NEUTRAL, linestyle="--", linewidth=1.0)
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("selection frequency over the outer folds (dark: kept in at least half)", fontsize=10)
    shown = f"top {len(order)} of {len(names)} features" if len(names) > len(order) else f"{len(names)} features"
    title = f"Feature selection frequency ({shown})"
    if stability is not None and math.isfinite(float(stability)):
        title += f"\nNogueira stability = {float(stability):.2f} (1 = the same features in every fold)"
    ax.set_title(title, fontsize=11)
    return figure


def stability_figure(path, features, frequencies, *, stability=None, top: int = 30) -> Path:
    """Selection frequency (0-1) of the ``top`` most often selected features, sorted, with Nogueira's stability
    (Nogueira, Sechidis & Brown 2018, J Mach Learn Res 18:174) in the title when given."""
    return _save(_stability_plot(features, frequencies, stability=stability, top=top), path)


# Checklists -----------------------------------------------------------------------------------------------------
def _get(card, *keys, default=None):
    value = card
    for key in keys:
        if not isinstance(value, Mapping) or key not in value or value[key] is None:
            return default
        value = value[key]
    return value


def _item(item, topic, status, text, **extra) -> dict:
    return {"item": item, "topic": topic, "status": status, "text": text, **extra}


def _join(values) -> str:
    return ", ".join(str(v) for v in values) if values else "none"


def _outcome_text(card) -> str:
    s = _get(card, "study", default={})
    if s.get("outcome_kind") == "survival":
        text = f"time to event: time '{s.get('time', '?')}', event '{s.get('event', '?')}'"
        if s.get("horizon") is not None:
            text += f"; time-dependent metrics at horizon {_number(s['horizon'])}"
        return text
    text = f"binary outcome '{s.get('outcome') or 'outcome'}'"
    if s.get("positive") is not None:
        text += f" (positive class: {s['positive']})"
    return text


def _counts_text(card) -> str:
    s = _get(card, "study", default={})
    if s.get("outcome_kind") == "survival":
        return f"{s['n_events']} events" if s.get("n_events") is not None else "events not recorded"
    counts = s.get("class_counts") or {}
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "class counts not recorded"


def _validation_text(card) -> str:
    v = _get(card, "validation", default={})
    parts = []
    if v.get("outer"):
        parts.append(f"nested cross-validation: {v.get('repeats') or 1} repeat(s) of {v['outer']}-fold outer "
                     f"cross-validation" + (f", {v['inner']}-fold inner cross-validation for tuning"
                                            if v.get("inner") else ""))
    if v.get("permutations"):
        parts.append(f"{v['permutations']} label permutations")
    n_test = _get(card, "study", "n_test", default=0) or 0
    if n_test:
        parts.append(f"held-out test set of {n_test} patients (split column)")
    return "; ".join(parts) or "not recorded"


def _uses_icc(card) -> bool:
    return bool(_get(card, "inputs", "icc")) or any("reproducib" in str(s).lower() or "icc" in str(s).lower()
                                                     for s in _get(card, "selection", default=[]))


def _metric_names(metrics_rows) -> set:
    return {str(r.get("metric")) for r in metrics_rows or () if _finite(r.get("estimate"))}


def tripod_ai_items(card: dict, metrics_rows=None) -> list[dict]:
    """The TRIPOD+AI checklist (Collins GS, Moons KGM, Dhiman P, et al. BMJ 2024;385:e078378), all 27 items with
    their sub-items, each ``{"item", "topic", "status", "text"}``. ``status``: "filled" (the run's record answers
    it), "evidenced" (the run gives part of the answer; the authors complete it), "not evidenced" (applies,
    nothing in this run shows it) or "for the authors" (software cannot know it: setting, dates, ethics, ...)."""
    s = _get(card, "study", default={})
    survival = s.get("outcome_kind") == "survival"
    inputs = _get(card, "inputs", default={})
    harm = card.get("harmonisation")
    selection = _get(card, "selection", default=[])
    models = _get(card, "models", default=[])
    n_test = s.get("n_test") or 0
    head = _get(card, "headline", default={})
    names = _metric_names(metrics_rows)
    authors = "for the authors"
    events = (s.get("n_events") if survival
              else min((s.get("class_counts") or {"": 0}).values()) if s.get("class_counts") else None)
    epv = (f"; {events / s['n_features']:.2f} events (smaller class) per candidate feature"
           if events is not None and s.get("n_features") else "")
    missing = s.get("missing")
    if missing == "impute":
        missing_text, missing_status = "missing feature values imputed inside each training fold (median)", "filled"
    elif missing == "refuse":
        missing_text, missing_status = "complete features required (the run refuses missing values)", "filled"
    else:
        missing_text, missing_status = "handling of missing values not recorded", "not evidenced"
    prep = []
    if s.get("pivoted"):
        prep.append("long feature table pivoted to one row per patient")
    if harm:
        prep.append(f"{harm.get('method', 'ComBat')} harmonisation across batches inside the folds"
                    + (f", protecting {_join(harm.get('protected'))}" if harm.get("protected") else ""))
    prep.append(missing_text)
    if survival:
        measures = "Harrell's and Uno's C, time-dependent AUC, integrated Brier score, Kaplan-Meier risk groups"
    else:
        measures = ("AUC (DeLong CI), sensitivity, specificity, PPV, NPV, balanced accuracy, Brier score, "
                    "calibration intercept and slope, calibration plot, decision curve")
    if "nri" in names or "delong_p" in names or "c_index_difference" in names:
        measures += "; comparison with the reference model (DeLong test / difference, NRI, IDI)"
    headline = (f"{head.get('model')}: {head.get('metric')} {_number(head.get('estimate'))} (95 % CI "
                f"{_number(head.get('ci_low'))}-{_number(head.get('ci_high'))})" if head else "not recorded")
    threshold = card.get("threshold")
    output = ("a risk score (higher = shorter survival); risk groups split at the median training risk"
              if survival else "the predicted probability of the positive class"
              + ("; classification at threshold " + _number(threshold) + " chosen on training rows (Youden's J)"
                 if threshold is not None else ""))
    data_sources = "; ".join(f"{key} table {Path(str(v.get('path', '?'))).name} (sha256 {str(v.get('sha256'))[:12]}...)"
                             for key, v in inputs.items() if isinstance(v, Mapping))
    items = [
        _item("1", "Title", authors, "Identify the study as developing/evaluating a radiomics prediction model, "
              f"its target population and outcome ({_outcome_text(card)})."),
        _item("2", "Abstract (TRIPOD+AI for Abstracts)", authors, "Write the structured abstract."),
        _item("3a", "Background: healthcare context and rationale", authors, "Clinical context, existing models."),
        _item("3b", "Target population, intended purpose and users", authors, "Place in the care pathway."),
        _item("3c", "Known health inequalities", authors, "Between sociodemographic groups."),
        _item("4", "Objectives", "evidenced", "Development of a radiomics model with internal validation ("
              + _validation_text(card) + "); state the clinical objective."),
        _item("5a", "Sources of data", "evidenced", (data_sources or "input tables not recorded")
              + "; describe the cohort (trial, registry, routine care) and its representativeness."),
        _item("5b", "Dates of data collection", authors, "Start/end of accrual and of follow-up."),
        _item("6a", "Study setting, number and location of centres", authors,
              "Setting and centres" + (" (a batch column was used for harmonisation)" if harm else "") + "."),
        _item("6b", "Eligibility criteria", authors, "Inclusion and exclusion criteria."),
        _item("6c", "Treatments received", authors, "Treatments and how they were handled."),
        _item("7", "Data preparation", "evidenced", "; ".join(prep) + "; image pre-processing and segmentation "
              "quality checks are for the authors."),
        _item("8a", "Outcome definition and time horizon", "evidenced",
              _outcome_text(card) + "; how and when it was assessed is for the authors."),
        _item("8b", "Qualifications of outcome assessors", authors, "If assessment is subjective."),
        _item("8c", "Blinding of outcome assessment", authors, "Actions to blind the outcome assessment."),
        _item("9a", "Choice of initial predictors and pre-selection", "filled",
              f"{s.get('n_features', '?')} radiomic features"
              + (f" plus clinical covariates {_join(s.get('covariates'))}" if s.get("covariates") else "")
              + f"; selection inside the folds: {_join(selection)}."),
        _item("9b", "Definition and measurement of predictors", authors,
              "Imaging protocol, segmentation and feature extraction settings (IBSI feature definitions)."),
        _item("9c", "Qualifications of predictor assessors", authors, "Who segmented, with what expertise."),
        _item("10", "Sample size", "evidenced", f"{s.get('n_patients', '?')} patients ({_counts_text(card)}), "
              f"{s.get('n_features', '?')} candidate features{epv}; the justification is for the authors."),
        _item("11", "Missing data", missing_status, missing_text + "."),
        _item("12a", "Use of the data (partitioning)", "filled",
              f"{s.get('n_train', '?')} training patients, {n_test} test patients; {_validation_text(card)}."),
        _item("12b", "Handling of predictors", "filled", "; ".join(
              prep[:-1] + ["features standardised (z-scores from each training fold) inside the pipeline",
                           f"selection: {_join(selection)}"]) + "."),
        _item("12c", "Model type, building steps, tuning, internal validation", "filled",
              f"models: {_join(models)}; hyper-parameters tuned by inner cross-validation; "
              f"{_validation_text(card)}; final model {card.get('final_model', '?')} refitted on all training rows."),
        _item("12d", "Heterogeneity across clusters", "evidenced" if harm else "not evidenced",
              ("batch effects removed with ComBat inside the folds; performance per cluster not reported"
               if harm else "no cluster (batch/centre) variable was used") + "."),
        _item("12e", "Performance measures and plots", "filled", measures + "; 95 % confidence intervals."),
        _item("12f", "Model updating (e.g. recalibration)", "filled", "No model updating or recalibration was done."),
        _item("12g", "How predictions were calculated", "filled",
              "From the saved scikit-learn pipeline (model.joblib) with 'radiomicslab predict'; cross-validated "
              "predictions are out-of-fold, averaged over repeats."),
        _item("13", "Class imbalance methods", "filled",
              "No resampling or class weighting was used." if not survival else "Not applicable (survival)."),
        _item("14", "Fairness", authors, "Approaches to model fairness and their rationale."),
        _item("15", "Model output and thresholds", "filled", output + "."),
        _item("16", "Differences between development and evaluation data", "evidenced" if n_test else authors,
              ("held-out test rows chosen by the split column; differences in setting and eligibility are for "
               "the authors" if n_test else "only internal (cross-) validation; no separate evaluation data") + "."),
        _item("17", "Ethical approval and consent", authors, "Ethics committee, informed consent or waiver."),
        _item("18a", "Funding", authors, "Source and role of funders."),
        _item("18b", "Conflicts of interest", authors, "For all authors."),
        _item("18c", "Protocol", authors, "Where the protocol can be accessed, or none prepared."),
        _item("18d", "Registration", authors, "Registry and number, or not registered."),
        _item("18e", "Data sharing", authors, "Availability of the study data (input hashes are in this report)."),
        _item("18f", "Code sharing", authors,
              f"RadiomicsLab {_get(card, 'software', 'radiomicslab', default='?')} was used (versions and settings "
              "in this report); state where the analysis code is available."),
        _item("19", "Patient and public involvement", authors, "Details or a statement of no involvement."),
        _item("20a", "Flow of participants", "evidenced", f"{s.get('n_patients', '?')} patients, "
              f"{_counts_text(card)}; a flow diagram with exclusions is for the authors."),
        _item("20b", "Participant characteristics", authors, "Table of characteristics, predictors, follow-up, "
              "missing data per data source."),
        _item("20c", "Development vs evaluation predictor distributions", authors if n_test else "not evidenced",
              "Compare the training and test distributions." if n_test else "No separate evaluation data."),
        _item("21", "Participants and events in each analysis", "filled",
              f"development: {s.get('n_train', '?')} patients ({_counts_text(card)}); tuning and internal "
              f"validation on the folds of these ({_validation_text(card)}); test: {n_test} patients."),
        _item("22", "Full model specification", "evidenced",
              f"final model {card.get('final_model', '?')} with {len(_get(card, 'features_used', default=[]))} "
              "features (listed in this report), saved as model.joblib with its model card; access conditions are "
              "for the authors."),
        _item("23a", "Performance with confidence intervals", "filled" if head else "not evidenced",
              headline + "; all metrics with 95 % CIs in the metrics table; key subgroups are for the authors."),
        _item("23b", "Heterogeneity of performance across clusters", "not evidenced",
              "Performance per centre/batch was not estimated."),
        _item("24", "Model updating results", "filled", "No model updating was done."),
        _item("25", "Interpretation", authors, "Overall interpretation, including fairness."),
        _item("26", "Limitations", authors, "Sample, overfitting, missing data, generalisability"
              + ("; see the run's notes" if card.get("notes") else "") + "."),
        _item("27a", "Handling poor quality or unavailable input data", authors, "When implementing the model."),
        _item("27b", "User interaction and expertise", authors, "E.g. segmentation by the user."),
        _item("27c", "Next steps (applicability, generalisability)", authors,
              "External validation in other centres" + ("" if n_test else " (this run has none)") + "."),
    ]
    return items


def rqs_items(card: dict, metrics_rows=None, figures=None) -> list[dict]:
    """The 16 Radiomics Quality Score items (Lambin P, Leijenaar RTH, Deist TM, et al. Nat Rev Clin Oncol
    2017;14:749-762), each ``{"item", "topic", "status", "text", "points", "max"}``. Points are given only when
    this run evidences them: multiple segmentations only when an ICC table was used; feature reduction (+3) when
    a selection ran, -3 when the run shows none; validation +2 with a held-out test set (the RQS's "same
    institute"; other institutes score more, for the authors to claim), -5 with cross-validation only;
    discrimination and calibration statistics with CIs, +1 each for resampling; comparison to the gold
    standard when a clinical model was compared; potential clinical utility when a decision curve was drawn.
    Open science and data, phantoms, time points, biology, prospective registration and cost are never claimed
    ("for the authors", 0 points). ``metrics_rows``/``figures`` (optional) refine what is evidenced.
    """
    s = _get(card, "study", default={})
    survival = s.get("outcome_kind") == "survival"
    names = _metric_names(metrics_rows) if metrics_rows is not None else None
    head = _get(card, "headline", default={})
    head_ci = all(_finite(head.get(k)) for k in ("estimate", "ci_low", "ci_high"))
    selection = [x for x in _get(card, "selection", default=[]) if str(x).lower() not in ("none", "")]
    n_used, n_features = len(_get(card, "features_used", default=[])), s.get("n_features")
    reduced = bool(selection) or (n_features is not None and 0 < n_used < n_features)
    n_test = s.get("n_test") or 0
    resampled = bool(_get(card, "validation", "outer"))
    if names is None:
        calibrated = not survival
    else:
        calibrated = bool({"calibration_slope", "calibration_intercept"} & names)
    if figures is not None:
        dca = any("decision_curve" in Path(str(f)).name or "decision_curve" in str(k) for k, f in dict(figures).items())
    else:
        dca = not survival
    comparison = card.get("comparison")
    authors = "for the authors"

    def ev(item, topic, condition, points, max_points, yes, no, no_points=0):
        if condition:
            return _item(item, topic, "evidenced", yes, points=points, max=max_points)
        return _item(item, topic, "not evidenced", no, points=no_points, max=max_points)

    def auth(item, topic, max_points, text):
        return _item(item, topic, authors, text, points=0, max=max_points)

    icc = _get(card, "inputs", "icc", default={})
    disc_points = (1 if head_ci else 0) + (1 if resampled else 0)
    cal_points = (1 if calibrated else 0) + (1 if calibrated and resampled else 0)
    items = [
        auth("1", "Image protocol quality", 2, "+1 protocols documented, +1 public protocol used."),
        ev("2", "Multiple segmentations", _uses_icc(card), 1, 1,
           "Feature reproducibility across segmentations/readers from an ICC table"
           + (f" ({Path(str(icc.get('path'))).name})" if isinstance(icc, Mapping) and icc.get("path") else "")
           + " filtered the features.",
           "No ICC table was used in this run; claim it only if segmentation robustness was assessed elsewhere."),
        auth("3", "Phantom study on all scanners", 1, "Detect inter-scanner differences and vendor-dependent features."),
        auth("4", "Imaging at multiple time points", 1, "Test-retest or time points."),
        ev("5", "Feature reduction or adjustment for multiple testing", reduced, 3, 3,
           f"Feature reduction inside the folds: {_join(selection)}"
           + (f"; the final model uses {n_used} of {n_features} features" if n_features else "") + ".",
           "No feature reduction was recorded for this run.", no_points=-3),
        ev("6", "Multivariable analysis with non-radiomics features", bool(s.get("covariates")), 1, 1,
           f"Clinical covariates in the model: {_join(s.get('covariates'))}.", "No non-radiomic covariates."),
        auth("7", "Detect and discuss biological correlates", 1, "Biological correlates of the signature."),
        ev("8", "Cut-off analyses", survival or card.get("threshold") is not None, 1, 1,
           ("risk groups split at the median training risk (Kaplan-Meier, log-rank)" if survival else
            f"classification threshold {_number(card.get('threshold'))} learned on training rows") + ".",
           "No cut-off was recorded."),
        _item("9", "Discrimination statistics", "evidenced" if disc_points else "not evidenced",
              (f"{head.get('metric', 'discrimination')} with 95 % CI" if head_ci else "no discrimination CI recorded")
              + ("; estimated by (repeated nested) cross-validation" if resampled else "") + ".",
              points=disc_points, max=2),
        _item("10", "Calibration statistics", "evidenced" if cal_points else "not evidenced",
              ("calibration intercept and slope with 95 % CIs" + ("; on cross-validated predictions" if resampled
                                                                  else "")) if calibrated
              else "No calibration statistic was computed" + (" (survival outcome)" if survival else "") + ".",
              points=cal_points, max=2),
        auth("11", "Prospective study registered in a trial database", 7, "+7 for a registered prospective study."),
        ev("12", "Validation", n_test > 0, 2, 5,
           f"Validation on {n_test} held-out patients without retraining (scored as the same institute; "
           "+3 to +5 if the test data come from other institutes, for the authors to claim).",
           "No independent validation set: internal cross-validation only (credited under items 9 and 10).",
           no_points=-5),
        ev("13", "Comparison to 'gold standard'", bool(comparison), 2, 2,
           f"Compared with the {(comparison or {}).get('reference', 'clinical')} model"
           + (" (DeLong test / C-index difference, NRI, IDI)" if names is None or names & {"delong_p", "nri",
                                                                                          "c_index_difference"}
              else "") + ".",
           "No comparison with a clinical/gold-standard model in this run."),
        ev("14", "Potential clinical utility", dca, 2, 2,
           "Decision-curve analysis reported; discuss the clinical application.",
           "No decision-curve analysis in this run."),
        auth("15", "Cost-effectiveness analysis", 1, "Cost-effectiveness of the clinical application."),
        auth("16", "Open science and data", 4, "+1 each for open scans, segmentations, code, and features; "
             "not claimed by the software."),
    ]
    return items


def rqs_total(items) -> dict:
    """{"points": sum of the points the run evidences (negative points included), "max": 36, "note"}."""
    points = int(sum(i.get("points", 0) for i in items if i["status"] in ("evidenced", "not evidenced")))
    open_max = sum(i.get("max", 0) for i in items if i["status"] == "for the authors")
    return {"points": points, "max": RQS_MAX,
            "note": f"{points} of {RQS_MAX} points are evidenced by this run; items marked 'for the authors' "
                    f"(up to {open_max} points) and stronger validation need the authors' own assessment."}


# HTML report ----------------------------------------------------------------------------------------------------
CAPTIONS = {
    "roc": "ROC curves of the cross-validated predictions: sensitivity against 1 - specificity, shaded 95 % "
           "pointwise bootstrap band, AUC with DeLong 95 % CI in the legend; the dashed diagonal is chance.",
    "calibration": "Calibration: observed event rate against mean predicted probability in quantile groups "
                   "(Wilson 95 % CIs), the ideal diagonal and the logistic recalibration line (intercept and slope "
                   "in the legend); below, the distribution of predictions for events and non-events.",
    "decision_curve": "Decision curve: net benefit of using each model to decide treatment, against treating all "
                      "and treating none, over threshold probabilities.",
    "kaplan_meier": "Kaplan-Meier survival of the risk groups (cut-off learned on training rows) with 95 % CI "
                    "bands and censoring ticks; log-rank p in the title; numbers at risk below.",
    "coefficients": "The final model's largest coefficients on standardised features, coloured by sign.",
    "importances": "The final model's largest feature importances.",
    "selection_stability": "How often each feature was selected over the outer cross-validation folds, with "
                           "Nogueira's stability index.",
    "harmonisation_distributions": "Per-batch feature distributions before and after ComBat harmonisation.",
    "harmonisation_pca": "Principal components of the features coloured by batch, before and after ComBat.",
}

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0 auto;max-width:1100px;
padding:1.5em;color:#1a1a1a;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:2px solid #0072B2;padding-bottom:.2em;
margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;
text-align:left;vertical-align:top}th{background:#eef3f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.9em;color:#333}
.filled{color:#006644}.evidenced{color:#0072B2}.not-evidenced{color:#B34700}.for-the-authors{color:#666}
.muted{color:#666;font-size:.9em}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}
.headline{font-size:1.1em;background:#eef3f8;padding:.6em;border-left:4px solid #0072B2}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _finite(value) -> bool:
    try:
        return value is not None and not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _number(value) -> str:
    """3 decimals; integers as integers; NaN/None as '-'."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if not _finite(value):
        return "-" if value is None or isinstance(value, (float, np.floating)) else str(value)
    return f"{float(value):.3f}"


def _is_p(metric: str) -> bool:
    return metric.endswith("_p") or metric.startswith("p_") or metric == "p"


def _table(headers, rows, numeric=()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td class=\"num\">{_e(c)}</td>" if j in numeric else f"<td>{_e(c)}</td>"
                                    for j, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv_table(pairs) -> str:
    return _table(("", ""), [(k, v) for k, v in pairs])


def _metrics_rows_html(metrics_rows) -> str:
    rows = []
    for r in metrics_rows:
        metric = str(r.get("metric", ""))
        est = r.get("estimate")
        if _is_p(metric):
            value = "< 0.001" if _finite(est) and float(est) < 0.001 else _number(est)
        else:
            value = _number(est)
        lo, hi = r.get("ci_low"), r.get("ci_high")
        ci = f"{_number(lo)} to {_number(hi)}" if _finite(lo) and _finite(hi) else "-"
        rows.append((r.get("model", ""), metric, value, ci))
    return _table(("model", "metric", "estimate", "95 % CI"), rows, numeric=(2, 3))


def _figure_html(name, path) -> str:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise RadiomicsLabError(f"Cannot read the figure '{path}' for the report: {error.strerror}.") from None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise RadiomicsLabError(f"The figure '{path}' is not a PNG image; the report embeds PNG figures only.")
    stem = Path(str(name)).stem
    caption = CAPTIONS.get(stem, stem.replace("_", " "))
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f"<figure><img src=\"{uri}\" alt=\"{_e(stem)}\"><figcaption><b>{_e(Path(str(name)).name)}</b>: "
            f"{_e(caption)}</figcaption></figure>")


def _status_cell(status: str) -> str:
    return f"<td class=\"{status.replace(' ', '-')}\">{_e(status)}</td>"


def _checklist_html(items, points: bool = False) -> str:
    head = ["item", "topic", "status", "what the study did"] + (["points (max)"] if points else [])
    out = ["<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for i in items:
        cells = f"<td>{_e(i['item'])}</td><td>{_e(i['topic'])}</td>{_status_cell(i['status'])}<td>{_e(i['text'])}</td>"
        if points:
            cells += f"<td class=\"num\">{_e(i.get('points', 0))} ({_e(i.get('max', 0))})</td>"
        out.append(f"<tr>{cells}</tr>")
    return "".join(out) + "</tbody></table>"


def _summary_html(card) -> str:
    s = _get(card, "study", default={})
    v = _get(card, "validation", default={})
    head = _get(card, "headline", default={})
    pairs = [("outcome", _outcome_text(card)),
             ("patients", f"{s.get('n_patients', '-')} ({s.get('n_train', '-')} training, {s.get('n_test', 0)} test)"),
             ("events / classes (training)", _counts_text(card)),
             ("features", f"{s.get('n_features', '-')} candidate features; final model uses "
                          f"{len(_get(card, 'features_used', default=[]))}"),
             ("clinical covariates", _join(s.get("covariates"))),
             ("models", _join(_get(card, "models", default=[]))),
             ("final model", card.get("final_model", "-")),
             ("feature selection", _join(_get(card, "selection", default=[]))),
             ("harmonisation", (f"{card['harmonisation'].get('method', 'ComBat')} (protected: "
                                f"{_join(card['harmonisation'].get('protected'))})") if card.get("harmonisation")
              else "none"),
             ("validation", _validation_text(card)),
             ("seed", f"{v.get('seed')} (every fold's, model's and permutation's seed derives from it; all are "
                      "listed in model_card.json)")]
    if card.get("threshold") is not None:
        pairs.append(("threshold", _number(card["threshold"])))
    text = ""
    if head:
        text = (f"<p class=\"headline\">Headline: <b>{_e(head.get('model'))}</b> {_e(head.get('metric'))} = "
                f"<b>{_e(_number(head.get('estimate')))}</b> (95 % CI {_e(_number(head.get('ci_low')))} to "
                f"{_e(_number(head.get('ci_high')))}), cross-validated.</p>")
    return text + _kv_table(pairs)


def _inputs_html(card) -> str:
    rows = []
    for key, facts in (_get(card, "inputs", default={}) or {}).items():
        if isinstance(facts, Mapping):
            rows.append((key, facts.get("path", "-"), facts.get("sha256") or "-", facts.get("rows", "-"),
                         facts.get("columns", "-")))
    return _table(("table", "path", "SHA-256", "rows", "columns"), rows) if rows else "<p>No inputs recorded.</p>"


def _settings_html(card) -> str:
    software = _get(card, "software", default={})
    parts = ["<h3>Software versions</h3>", _kv_table(software.items()) if software else "<p>Not recorded.</p>"]
    settings = {key: card[key] for key in ("validation", "settings", "final_params", "harmonisation", "threshold")
                if card.get(key) is not None}
    parts.append("<h3>Settings</h3><pre>" + _e(json.dumps(settings, indent=2, sort_keys=True, default=str)) + "</pre>")
    used = _get(card, "features_used", default=[])
    parts.append(f"<h3>Features used by the final model ({len(used)})</h3>"
                 + ("<p>" + _e(", ".join(str(f) for f in used)) + "</p>" if used else "<p>none recorded</p>"))
    return "".join(parts)


def write_report(path, card: dict, metrics_rows: list, figures: Mapping, *,
                 title: str = "RadiomicsLab study report") -> Path:
    """ONE self-contained HTML report at ``path`` (written atomically): summary, metrics table (3 decimals,
    NaN as "-"), figures embedded as base64 PNG data URIs with captions, TRIPOD+AI and RQS tables (with the RQS
    total evidenced out of 36), notes, settings and software versions, input hashes. Inline CSS only: no script
    and no external reference; every text value is HTML-escaped. ``figures``: {file name: PNG path}."""
    from ..fileio import write_text_atomic

    if not isinstance(card, Mapping):
        raise RadiomicsLabError("write_report needs the model card as a dict.")
    metrics_rows = list(metrics_rows or [])
    figures = dict(figures or {})
    tripod = tripod_ai_items(card, metrics_rows)
    rqs = rqs_items(card, metrics_rows, figures)
    total = rqs_total(rqs)
    notes = [str(n) for n in card.get("notes") or []]
    subtitle = []
    if card.get("title") and card.get("title") != title:
        subtitle.append(str(card["title"]))
    if card.get("created"):
        subtitle.append(f"created {card['created']}")
    subtitle.append(f"RadiomicsLab {_get(card, 'software', 'radiomicslab', default='?')}")
    sections = [
        f"<h1>{_e(title)}</h1><p class=\"muted\">{_e(' | '.join(subtitle))}</p>",
        "<h2>Summary</h2>", _summary_html(card),
        "<h2>Performance metrics</h2><p class=\"muted\">Estimates on the cross-validated (out-of-fold) predictions "
        "unless prefixed test_; 95 % confidence intervals; '-' where not defined.</p>",
        _metrics_rows_html(metrics_rows) if metrics_rows else "<p>No metrics.</p>",
        "<h2>Figures</h2>", "".join(_figure_html(name, p) for name, p in figures.items()) or "<p>No figures.</p>",
        "<h2>TRIPOD+AI checklist</h2><p class=\"muted\">Collins GS, Moons KGM, Dhiman P, et al. TRIPOD+AI statement. "
        "BMJ 2024;385:e078378. Filled: the run's record answers the item; evidenced: the run gives part of the "
        "answer; for the authors: software cannot know it.</p>", _checklist_html(tripod),
        "<h2>Radiomics Quality Score</h2><p class=\"muted\">Lambin P, Leijenaar RTH, Deist TM, et al. Radiomics: the "
        "bridge between medical imaging and personalized medicine. Nat Rev Clin Oncol 2017;14:749-762.</p>",
        _checklist_html(rqs, points=True),
        f"<p><b>RQS evidenced by this run: {total['points']} / {total['max']}</b>. {_e(total['note'])}</p>",
        "<h2>Notes</h2>", ("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>") if notes
        else "<p>No notes.</p>",
        "<h2>Settings and software</h2>", _settings_html(card),
        "<h2>Input tables</h2>", _inputs_html(card),
    ]
    document = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
                + "\n".join(sections) + "\n</body></html>\n")
    return write_text_atomic(path, document)
