"""Nested cross-validation: RadiomicsLab's ``nested_cv`` against the same work hand-written in scikit-learn.

Run on purpose: ``.venv/bin/python Testing/benchmarks/bench_study.py [--sizes small,large] [--quick] [--full]
[--rounds N] [--jobs 1,2]``. Target (the study issue): RadiomicsLab at most 10 % slower than the peer, and
a speed-up from 1 to 2 workers.

Work (both sides, the same): repeated nested cross-validation, ``outer`` = 5 stratified outer folds x
``repeats`` (10 in the issue), an inner stratified 3-fold grid search in each outer training set (ROC AUC,
refit of the best setting), the pipeline ComBat (batch = site) -> correlation-cluster filter -> z-score ->
L1 logistic regression (liblinear), the grid of ``models.default_grid`` (C in 0.03, 0.1, 0.3, 1 x
threshold in 0.8, 0.9: 8 settings, so 24 inner fits + 1 refit per outer fold), the out-of-fold (OOF)
predictions and the AUC of each repeat, and the final model (the same search on all rows).

- RadiomicsLab: ``nested_cv(X, y, "logistic_l1", selection="correlation", batch=0, repeats=..., outer=5,
  inner=3, seed=0, n_jobs=...)`` with X = [site | features] (its pipeline also has its default ``impute``
  step: a ColumnTransformer passing the site through beside a median SimpleImputer; the tables have no
  missing value, so it changes no number).
- peer: a plain scikit-learn ``Pipeline([ComBat(batch=0), CorrelationClusters(), StandardScaler(),
  LogisticRegression(l1_ratio=1, solver="liblinear")])`` -- the same ComBat and selector classes (the
  harmonisation and the selection are not what is compared), the model with the same settings and
  ``random_state`` -- in ``GridSearchCV(scoring="roc_auc", cv=<explicit splits>, n_jobs=1)`` with the same
  grid, on the SAME outer folds and the SAME inner folds (derived from the same documented seeds: a
  ``SeedSequence(seed)`` whose 5 children give the outer seeds, the inner seeds, the model's random_state,
  the permutations and the final model's inner seed; outer folds stratified by outcome x site, inner folds
  by outcome x site when every group has >= 3 rows), ``joblib.Parallel(n_jobs)`` over (repeat, fold) + the
  final model, each task under ``threadpool_limits(1)`` as RadiomicsLab's, then ``roc_auc_score`` per repeat.
  Both sides' folds and OOF predictions are compared (max |difference| printed: 0 means the same work).

Data (real features; no missing value):

- small, 569 x 30: scikit-learn's breast cancer Wisconsin table (``load_breast_cancer``; outcome malignant =
  1), with three imaging sites made by the documented rule of ``RadiomicsLabLib.study.examples.site_effects`` (the tests'
  sites: site drawn by diagnosis with probabilities (0.20, 0.30, 0.50) malignant / (0.45, 0.35, 0.20) benign;
  feature v of site s becomes mu_dv + a_sv + b_sv (x_v - mu_dv), a_sv = SD_v N(m_s, 0.25), m = (0, 0.8,
  -0.5), b_sv = exp(N(log l_s, 0.1)), l = (1, 1.5, 0.7), mu_dv the feature's mean over diagnosis d; seed 2007).
- large, 1000 x 1500: the 569 real patients drawn with replacement to 1000 rows (seed 1500) with Gaussian
  noise of 5 % of each feature's SD added (so no two rows are equal), their outcome kept; columns: the 30
  real features, then 1470 derived ones: each, from the z-scored real features z (seed 1501), is with
  probability 0.2 pure noise N(0, 1), else one of tanh(a z_j + b), z_j^2 / 2, exp(z_j / 2), sign(z_j)
  sqrt|z_j|, z_j z_k, z_j + c z_k, z_j (each kind 1/7; j, k, a, b, c drawn) plus N(0, s^2) noise,
  s ~ U(0.05, 1), then put on a positive scale (mean U(1, 100), SD U(0.1, 10)); then the same site effects
  rule on all 1500 columns.
  Clusters of correlated features (around each real feature) and noise, as a radiomics table has.

Each measurement runs in a fresh Python process (``--_child``): imports first (the same modules for both),
the data built, then the timed call (wall seconds of ``nested_cv``; of the peer from its folds to its AUCs).
Memory: the peak, sampled every 50 ms by the parent with psutil, of the summed resident memory (RSS) of the
child process and all its descendants (joblib/loky workers, resource tracker; shared pages are counted
once per process, alike on both sides); without psutil, the child's ``ru_maxrss`` of itself plus that of
its largest reaped child (a lower bound). "base" is the child's RSS just before the timed call (imports +
data). ``--rounds`` repeats every measurement, RadiomicsLab and peer alternately, and keeps the best time
(and the largest peak). Speed-up = time with 1 worker / time with 2 workers, for each side.

Time: the estimate is printed first (one outer fold of the peer timed here, x tasks x sides x workers). On this
machine's 2 cores an outer fold of the large table takes about 5 s, so its full 10 repeats (51 tasks, both sides,
1 and 2 workers) would take about 15-18 min: by default the large table runs 2 repeats (``--large-repeats N``;
``--full``: 10 on both tables); the small table runs the full 10 (about 1 min). ``--quick``: 2 repeats small,
1 large (about 3 min).
``--profile small|large``: cProfile of RadiomicsLab with n_jobs=1 (in this process), the top functions.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from RadiomicsLabLib.study.examples import site_effects  # noqa: E402 (the study tests' made sites)

MODEL, SELECTION, OUTER, INNER, SEED = "logistic_l1", "correlation", 5, 3, 0


# Data ----------------------------------------------------------------------------------------------------
def _derived_columns(x, count: int, rng) -> np.ndarray:
    """``count`` columns derived from the real features ``x`` (see the module docstring)."""
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    n, p = z.shape
    out = np.empty((n, count))
    for c in range(count):
        j, k = rng.integers(p, size=2)
        kind = rng.integers(7) if rng.random() >= 0.2 else -1
        if kind == -1:
            values = rng.normal(size=n)
        else:
            a, b, coef = rng.uniform(0.5, 2.0), rng.uniform(-1, 1), rng.uniform(-1, 1)
            values = [np.tanh(a * z[:, j] + b), z[:, j] ** 2 / 2, np.exp(z[:, j] / 2),
                      np.sign(z[:, j]) * np.sqrt(np.abs(z[:, j])), z[:, j] * z[:, k], z[:, j] + coef * z[:, k],
                      z[:, j]][kind] + rng.normal(0, rng.uniform(0.05, 1.0), n)
        values = (values - values.mean()) / values.std()
        out[:, c] = rng.uniform(1, 100) + rng.uniform(0.1, 10) * values
    return out


def table(size: str):
    """(X = [site | features] as floats, y 0/1): the ``small`` or ``large`` table of the module docstring."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x0, y0 = data.data, (data.target == 0).astype(int)  # malignant = 1
    if size == "large":
        rng = np.random.default_rng(1500)
        rows = rng.integers(len(y0), size=1000)
        x0 = x0[rows] + rng.normal(0, 0.05, (1000, x0.shape[1])) * x0.std(axis=0)
        y0 = y0[rows]
        x0 = np.hstack([x0, _derived_columns(x0, 1500 - x0.shape[1], np.random.default_rng(1501))])
    site, x = site_effects(x0, y0 == 1)
    return np.column_stack([site.astype(float), x]), y0


# The two sides -------------------------------------------------------------------------------------------
def warm_imports():
    """The modules both sides use, imported before any timing."""
    import importlib

    for name in ("joblib", "threadpoolctl", "scipy.cluster.hierarchy", "scipy.stats", "sklearn.linear_model",
                 "sklearn.metrics", "sklearn.model_selection", "sklearn.pipeline", "sklearn.compose", "sklearn.impute",
                 "RadiomicsLabLib.study.harmonisation", "RadiomicsLabLib.study.models",
                 "RadiomicsLabLib.study.selection", "RadiomicsLabLib.study.validation"):
        importlib.import_module(name)


def radiomicslab(X, y, repeats: int, n_jobs: int) -> dict:
    from RadiomicsLabLib.study.validation import nested_cv

    start = time.perf_counter()
    result = nested_cv(X, y, MODEL, selection=SELECTION, batch=0, repeats=repeats, outer=OUTER, inner=INNER,
                       seed=SEED, n_jobs=n_jobs)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "oof": result.oof[MODEL], "folds": result.folds, "auc": result.auc_by_repeat[MODEL]}


def _peer_pipeline(random_state):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    import sklearn

    from RadiomicsLabLib.study.harmonisation import ComBat
    from RadiomicsLabLib.study.selection import CorrelationClusters

    version = tuple(int(v) for v in sklearn.__version__.split(".")[:2])
    penalty = {} if version >= (1, 8) else {"penalty": "l1"}  # 1.8 deprecated ``penalty``: l1_ratio=1 says L1
    model = LogisticRegression(l1_ratio=1.0, solver="liblinear", max_iter=10000, random_state=random_state, **penalty)
    return Pipeline([("combat", ComBat(batch=0)), ("select_correlation", CorrelationClusters()),
                     ("scale", StandardScaler()), ("model", model)])


def _strata(y, codes, folds):
    """Outcome x site when every such group has >= ``folds`` rows, else the outcome (validation's documented rule)."""
    combined = y * (codes.max() + 1) + codes
    counts = np.bincount(combined)
    return combined if counts[counts > 0].min() >= folds else y


def _peer_task(pipeline, grid, X, y, codes, train, test, inner_seed):
    """One outer fold: GridSearchCV on X[train] with explicit stratified inner splits; P(y=1) of X[test]."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        splits = list(StratifiedKFold(INNER, shuffle=True, random_state=inner_seed).split(
            np.zeros((len(train), 1)), _strata(y[train], codes[train], INNER)))
        search = GridSearchCV(pipeline, grid, scoring="roc_auc", cv=splits, n_jobs=1, error_score="raise")
        search.fit(X[train], y[train])
        return search.predict_proba(X[test])[:, 1] if test is not None else None


def peer(X, y, repeats: int, n_jobs: int) -> dict:
    from joblib import Parallel, delayed
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    from RadiomicsLabLib.study.models import build_pipeline, default_grid

    grid = default_grid(build_pipeline(MODEL, selection=SELECTION, batch=0))  # the same grid, as a param_grid
    start = time.perf_counter()
    outer_ss, inner_ss, model_ss, _, final_ss = np.random.SeedSequence(SEED).spawn(5)
    outer_seeds = outer_ss.generate_state(repeats)
    inner_seeds = np.asarray(inner_ss.generate_state(repeats * OUTER), dtype=np.int64).reshape(repeats, OUTER)
    pipeline = _peer_pipeline(int(model_ss.generate_state(1)[0]))
    codes = np.unique(X[:, 0], return_inverse=True)[1]
    folds = np.empty((repeats, len(y)), dtype=int)
    for r in range(repeats):
        splitter = StratifiedKFold(OUTER, shuffle=True, random_state=int(outer_seeds[r]))
        for f, (_, test) in enumerate(splitter.split(np.zeros((len(y), 1)), _strata(y, codes, OUTER))):
            folds[r, test] = f
    tasks = [(r, f) for r in range(repeats) for f in range(OUTER)]
    outputs = Parallel(n_jobs=n_jobs)(
        [delayed(_peer_task)(pipeline, grid, X, y, codes, np.flatnonzero(folds[r] != f), np.flatnonzero(folds[r] == f),
                             int(inner_seeds[r, f])) for r, f in tasks]
        + [delayed(_peer_task)(pipeline, grid, X, y, codes, np.arange(len(y)), None,
                               int(final_ss.generate_state(1)[0]))])  # the final model
    oof = np.full((repeats, len(y)), np.nan)
    for (r, f), prediction in zip(tasks, outputs):
        oof[r, folds[r] == f] = prediction
    auc = np.array([roc_auc_score(y, oof[r]) for r in range(repeats)])
    return {"seconds": time.perf_counter() - start, "oof": oof, "folds": folds, "auc": auc}


def child(side: str, size: str, repeats: int, n_jobs: int, out: str):
    """One measurement in this (fresh) process; writes an .npz for the parent."""
    import resource

    warm_imports()
    X, y = table(size)
    base = _rss_self()
    run = radiomicslab if side == "radiomicslab" else peer
    result = run(X, y, repeats, n_jobs)
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    np.savez(out, **result, base=base, self_peak=self_peak, children_peak=children_peak)


def _rss_self() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# Parent: fresh processes, the tree's peak memory --------------------------------------------------------
def _tree_peak(process, stop: threading.Event, peak: list):
    import psutil

    try:
        root = psutil.Process(process.pid)
    except psutil.Error:
        return
    while not stop.is_set():
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak[0] = max(peak[0], total)
        stop.wait(0.05)


def measure(side: str, size: str, repeats: int, n_jobs: int) -> dict:
    """Run one side in a fresh process; its results, wall seconds and the peak RSS of its process tree."""
    with tempfile.TemporaryDirectory(prefix="bench_study_") as folder:
        out = os.path.join(folder, "result.npz")
        command = [sys.executable, __file__, "--_child", side, size, str(repeats), str(n_jobs), out]
        process = subprocess.Popen(command, cwd=ROOT)
        peak, stop = [0], threading.Event()
        sampler = None
        if have_psutil():
            sampler = threading.Thread(target=_tree_peak, args=(process, stop, peak), daemon=True)
            sampler.start()
        code = process.wait()
        stop.set()
        if sampler is not None:
            sampler.join()
        if code != 0:
            raise SystemExit(f"{side} {size} n_jobs={n_jobs} failed (exit {code}).")
        with np.load(out) as saved:
            result = {key: saved[key] for key in saved.files}
    result["peak"] = peak[0] if sampler is not None else int(result["self_peak"] + result["children_peak"])
    result["sampled"] = sampler is not None
    return result


def calibrate(size: str) -> float:
    """Seconds of one outer-fold task of the peer (1 worker) in this process: the unit of the time estimate."""
    from RadiomicsLabLib.study.models import build_pipeline, default_grid

    X, y = table(size)
    codes = np.unique(X[:, 0], return_inverse=True)[1]
    grid = default_grid(build_pipeline(MODEL, selection=SELECTION, batch=0))
    train = np.arange(len(y)) % OUTER != 0
    start = time.perf_counter()
    _peer_task(_peer_pipeline(0), grid, X, y, codes, np.flatnonzero(train), np.flatnonzero(~train), 1)
    return time.perf_counter() - start


def profile(size: str, repeats: int):
    import cProfile
    import pstats

    warm_imports()
    X, y = table(size)
    profiler = cProfile.Profile()
    profiler.enable()
    radiomicslab(X, y, repeats, 1)
    profiler.disable()
    stats = pstats.Stats(profiler).sort_stats("tottime")
    stats.print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


def mib(value) -> str:
    return f"{float(value) / 2 ** 20:7.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,large", help="small (569 x 30) and/or large (1000 x 1500)")
    parser.add_argument("--repeats", type=int, default=10, help="outer repeats of the small table (default 10)")
    parser.add_argument("--large-repeats", type=int, default=2, help="outer repeats of the large table (default 2)")
    parser.add_argument("--full", action="store_true", help="10 repeats on both tables (the issue's setting)")
    parser.add_argument("--quick", action="store_true", help="2 repeats small, 1 large")
    parser.add_argument("--jobs", default="1,2", help="worker counts to time (default 1,2)")
    parser.add_argument("--rounds", type=int, default=1, help="measure each side this many times, keep the best")
    parser.add_argument("--no-estimate", action="store_true",
                        help="skip the calibration task (one outer fold per size)")
    parser.add_argument("--profile", choices=("small", "large"), help="cProfile RadiomicsLab (n_jobs=1) and stop")
    parser.add_argument("--_child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        side, size, repeats, n_jobs, out = args._child
        return child(side, size, int(repeats), int(n_jobs), out)

    repeats = {"small": args.repeats, "large": args.large_repeats}
    if args.full:
        repeats = {"small": 10, "large": 10}
    if args.quick:
        repeats = {"small": 2, "large": 1}
    if args.profile:
        return profile(args.profile, repeats[args.profile])
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    jobs = [int(j) for j in args.jobs.split(",")]
    if not set(sizes) <= {"small", "large"}:
        raise SystemExit("--sizes: small and/or large")

    import joblib
    import sklearn

    from RadiomicsLabLib.batch import available_cores

    print(f"nested CV {OUTER} outer x repeats, {INNER} inner, ComBat + correlation filter + L1 logistic (liblinear), "
          f"grid 8 settings, seed {SEED}; scikit-learn {sklearn.__version__}, joblib {joblib.__version__}, "
          f"{available_cores()} cores, load average {os.getloadavg()[0]:.1f}")
    if not args.no_estimate:
        total = 0.0
        for size in sizes:
            task = calibrate(size)
            tasks = repeats[size] * OUTER + 1
            seconds = task * tasks * 2 * sum(1 / max(min(j, available_cores()), 1) for j in jobs) * args.rounds
            total += seconds
            print(f"  {size}: one outer fold {task:.2f} s -> {repeats[size]} repeats, {tasks} tasks per run; "
                  f"estimated {seconds / 60:.1f} min "
                  f"(full 10 repeats: {seconds / 60 * (10 * OUTER + 1) / tasks:.1f} min)")
        print(f"  estimated total {total / 60:.1f} min (+ process starts)\n")

    header = (f"{'table':<18}{'jobs':>4}  {'RadiomicsLab s':>14}  {'peer s':>8}  {'ratio':>6}  {'overhead':>8}  "
              f"{'RL peak MiB':>11}  {'peer peak MiB':>13}  {'RL base':>7}  {'peer base':>9}  {'mean AUC':>8}")
    print(header, flush=True)
    verdicts = []
    for size in sizes:
        times = {}
        for n_jobs in jobs:
            best = {}
            for _ in range(args.rounds):
                for side in ("radiomicslab", "peer"):
                    result = measure(side, size, repeats[size], n_jobs)
                    kept = best.get(side)
                    if kept is None:
                        best[side] = result
                    else:
                        peak = max(kept["peak"], result["peak"])
                        if result["seconds"] < kept["seconds"]:
                            best[side] = result
                        best[side]["peak"] = peak
            ours, theirs = best["radiomicslab"], best["peer"]
            if not np.array_equal(ours["folds"], theirs["folds"]):
                raise SystemExit(f"{size}, n_jobs={n_jobs}: the peer's outer folds differ from RadiomicsLab's.")
            diff = float(np.max(np.abs(ours["oof"] - theirs["oof"])))
            auc_diff = float(np.max(np.abs(ours["auc"] - theirs["auc"])))
            times[n_jobs] = (ours, theirs)
            ratio = float(ours["seconds"] / theirs["seconds"])
            label = f"{size} {'569x30' if size == 'small' else '1000x1500'} r{repeats[size]}"
            print(f"{label:<18}{n_jobs:>4}  {float(ours['seconds']):>14.2f}  {float(theirs['seconds']):>8.2f}  "
                  f"{ratio:>6.3f}  {(ratio - 1) * 100:>+7.1f}%  {mib(ours['peak']):>11}  {mib(theirs['peak']):>13}  "
                  f"{mib(ours['base']):>7}  {mib(theirs['base']):>9}  {float(np.mean(ours['auc'])):>8.4f}", flush=True)
            verdicts.append((size, n_jobs, ratio, diff, auc_diff))
        if 1 in times and 2 in times:
            ours = float(times[1][0]["seconds"] / times[2][0]["seconds"])
            theirs = float(times[1][1]["seconds"] / times[2][1]["seconds"])
            print(f"{'':<18}speed-up 1 -> 2 workers: RadiomicsLab x{ours:.2f}, peer x{theirs:.2f}", flush=True)
        if len(jobs) > 1:
            first = times[jobs[0]][0]["oof"]
            same = max(float(np.max(np.abs(first - times[j][0]["oof"]))) for j in jobs[1:])
            print(f"{'':<18}RadiomicsLab OOF, n_jobs {jobs[0]} vs {', '.join(map(str, jobs[1:]))}: "
                  f"max |diff| {same:.3g}",
                  flush=True)

    print("\nSame work: outer folds identical on every row; OOF predictions RadiomicsLab - peer, max |diff| "
          "(and per-repeat AUC):")
    for size, n_jobs, ratio, diff, auc_diff in verdicts:
        print(f"  {size:<6} n_jobs={n_jobs}: {diff:.3g} (AUC {auc_diff:.3g})")
    memory = "summed RSS of the process tree, sampled every 50 ms" if have_psutil() else \
        "ru_maxrss of the process + its largest reaped child (psutil missing: a lower bound)"
    print(f"Peak memory: {memory}; base = the process's RSS before the timed call (imports + data).")
    worst = max(ratio for _, _, ratio, _, _ in verdicts)
    print(f"Target: RadiomicsLab at most 10 % slower than the peer -> {'met' if worst <= 1.10 else 'NOT met'} "
          f"(worst ratio {worst:.3f})")
    return None


def have_psutil() -> bool:
    import importlib.util

    return importlib.util.find_spec("psutil") is not None


if __name__ == "__main__":
    sys.exit(main())
