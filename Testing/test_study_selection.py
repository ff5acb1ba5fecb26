"""Feature reduction (RadiomicsLabLib.study.selection): each selector inside cross_validate, checked fold by fold.

Every selector is the first step of a Pipeline (selector, StandardScaler, LogisticRegression) run by
scikit-learn's ``cross_validate`` on scikit-learn's breast cancer table (569 patients, 30 features,
given as a pyarrow Table so the names travel). For each fold the fitted selector is compared with an
independent computation on that fold's *training rows only* (no leakage): caret's near-zero-variance
rule written out with ``collections.Counter``; scipy's ``spearmanr`` and hierarchical clustering on
1 - |rho|; scipy's ``mannwhitneyu`` per feature and ``false_discovery_control``; scikit-learn's mutual
information for mRMR's first two picks; the optimality (KKT) conditions of the penalised logistic
regression; recursive elimination written as a plain loop. The Cox score test is compared with
``scipy.stats.logrank`` and with a plain loop over event times.

The reproducibility filter reads a real icc.csv: ``radiomicslab observers`` on the four soft-tissue
sarcoma PET lesions in ../shared/data, each with its real GTV mask and three documented synthetic
observers (5 mm dilation, 3 mm shift, supervoxel contour randomisation, seed 11; see test_observers),
first order + GLCM features. Its own features table (16 readings) is the data of its Pipeline, with a
label "lesion STS_001 or STS_002" made up only to run a classifier after it.
"""

import collections
import warnings

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.datasets import load_breast_cancer
from sklearn.feature_selection import VarianceThreshold, mutual_info_classif, mutual_info_regression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from RadiomicsLabLib.errors import RadiomicsLabError
from RadiomicsLabLib.study.inputs import read_study
from RadiomicsLabLib.study.selection import (MRMR, CorrelationClusters, NearZeroVariance, PenalizedLogistic,
                                             RecursiveElimination, ReproducibilityFilter, UnivariateFDR,
                                             benjamini_hochberg, cox_score_test, nogueira_stability, read_icc_table,
                                             selection_frequency, spearman_matrix)

from conftest import read_csv, run_cli
from test_study_inputs import batch_features, write_rows

BREAST = load_breast_cancer()
NAMES = [str(n) for n in BREAST.feature_names]
FOLDS = StratifiedKFold(5, shuffle=True, random_state=0)


def table(X, names):
    return pa.table({n: X[:, j] for j, n in enumerate(names)})


def run_folds(selector, X=BREAST.data, y=BREAST.target, names=NAMES, folds=FOLDS):
    """cross_validate of Pipeline(selector, scaler, logistic regression); (result, [(train rows, fitted selector)])."""
    pipeline = make_pipeline(selector, StandardScaler(), LogisticRegression(max_iter=5000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no convergence or feature-name warnings
        result = cross_validate(pipeline, table(X, names), y, cv=folds, scoring="roc_auc", return_estimator=True,
                                return_indices=True, error_score="raise")
    fitted = [(train, estimator[0]) for train, estimator in zip(result["indices"]["train"], result["estimator"])]
    for (train, step), estimator in zip(fitted, result["estimator"]):
        assert step.n_features_in_ == len(names) and list(step.feature_names_in_) == list(names)
        kept = list(np.asarray(names)[step.get_support()])
        assert list(step.get_feature_names_out()) == kept == list(estimator[:-1].get_feature_names_out())
        assert estimator[-1].n_features_in_ == len(kept)
    return result, fitted


# Near-zero variance --------------------------------------------------------------------------------
def caret_near_zero(column, freq_cut=19.0, unique_cut=10.0) -> bool:
    counts = collections.Counter(column.tolist()).most_common()
    if len(counts) == 1:
        return True
    return counts[0][1] / counts[1][1] > freq_cut and 100.0 * len(counts) / len(column) <= unique_cut


def test_near_zero_variance_is_carets_rule_on_each_training_fold():
    concavity = BREAST.data[:, NAMES.index("mean concavity")]
    # Two columns made from the real table: the concavity above its 97th percentile (else 0), and zeros.
    rare = np.where(concavity > np.quantile(concavity, 0.97), concavity, 0.0)
    X = np.column_stack([BREAST.data, rare, np.zeros(len(rare))])
    names = NAMES + ["rare concavity", "zeros"]
    result, fitted = run_folds(NearZeroVariance(), X, names=names)
    for train, step in fitted:
        expected = np.array([not caret_near_zero(X[train, j]) for j in range(X.shape[1])])
        assert np.array_equal(step.get_support(), expected)
        assert list(step.get_feature_names_out()) == NAMES  # the two made-up columns go, every real one stays
        assert np.array_equal(step.zero_variance_, ~VarianceThreshold(0.0).fit(X[train]).get_support())
        assert step.freq_ratio_[-2] > 19 and step.percent_unique_[-2] <= 10
    assert result["test_score"].mean() > 0.97


# Correlation clusters ------------------------------------------------------------------------------
def partition(labels):
    groups = {}
    for j, label in enumerate(labels):
        groups.setdefault(label, set()).add(j)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("method", ["complete", "average", "single"])
def test_correlation_clusters_match_scipy_hierarchical_clustering(method):
    threshold = 0.85
    result, fitted = run_folds(CorrelationClusters(threshold, linkage=method))
    for train, step in fitted:
        rho = stats.spearmanr(BREAST.data[train]).statistic
        assert np.allclose(step.correlation_, rho, atol=1e-12)
        distance = np.round(1 - np.abs(rho), 12)  # as documented: tied distances stay tied
        np.fill_diagonal(distance, 0)
        labels = fcluster(linkage(squareform(distance, checks=False), method), 1 - threshold, criterion="distance")
        clusters = partition(labels)
        assert partition(step.labels_) == clusters
        variance = BREAST.data[train].var(axis=0, ddof=1)
        assert set(step.get_support(indices=True)) == {max(c, key=lambda j: variance[j]) for c in clusters}
        if method == "complete":  # every pair inside a cluster correlates at least that much; no two clusters could merge
            for c in clusters:
                assert all(abs(rho[a, b]) >= threshold for a in c for b in c)
            for c, d in ((c, d) for c in clusters for d in clusters if c != d):
                assert min(abs(rho[a, b]) for a in c for b in d) < threshold
        assert 5 < step.get_support().sum() < 30
    assert result["test_score"].mean() > 0.97


def test_spearman_matrix_with_ties_and_a_constant_column():
    X = np.column_stack([BREAST.data[:60, :3].round(1), np.ones(60)])
    rho = spearman_matrix(X)
    assert np.allclose(rho[:3, :3], stats.spearmanr(X[:, :3]).statistic, atol=1e-12)
    assert np.array_equal(rho[3], [0, 0, 0, 1])


# Univariate tests with Benjamini-Hochberg ----------------------------------------------------------
def test_benjamini_hochberg_equals_scipy():
    rng = np.random.default_rng(3)
    for p in (rng.uniform(size=200) ** 3, np.r_[rng.uniform(size=50), [0.01] * 5, [1.0] * 3], np.array([0.04])):
        assert np.allclose(benjamini_hochberg(p), stats.false_discovery_control(p, method="bh"), rtol=1e-12, atol=0)


def test_univariate_mann_whitney_with_fdr_on_each_training_fold():
    result, fitted = run_folds(UnivariateFDR(alpha=1e-20))
    for train, step in fitted:
        X, y = BREAST.data[train], BREAST.target[train]
        p = np.array([stats.mannwhitneyu(X[y == 1, j], X[y == 0, j], alternative="two-sided").pvalue for j in range(30)])
        assert np.allclose(step.pvalues_, p, rtol=1e-12, atol=1e-300)
        q = stats.false_discovery_control(p, method="bh")
        assert np.allclose(step.qvalues_, q, rtol=1e-10, atol=1e-300)
        assert np.array_equal(step.get_support(), q <= 1e-20) and 3 <= step.get_support().sum() < 25
        assert step.test_ == "mann-whitney"
    assert result["test_score"].mean() > 0.95


def test_cox_score_test_is_the_log_rank_test_for_a_binary_feature():
    """A seeded sample with tied times (documented formula: exponential times, hazard doubled in group 1,
    rounded to whole months, random censoring), and the breast cancer 'mean radius' as a continuous feature."""
    rng = np.random.default_rng(7)
    n = 120
    group = rng.integers(0, 2, n)
    time = np.ceil(rng.exponential(24 / (1 + group)))
    censor = np.ceil(rng.exponential(40, n))
    event, time = time <= censor, np.minimum(time, censor)
    radius = BREAST.data[:n, 0]
    chi2, p = cox_score_test(np.column_stack([group, radius]), time, event)
    reference = stats.logrank(stats.CensoredData(uncensored=time[(group == 1) & event], right=time[(group == 1) & ~event]),
                              stats.CensoredData(uncensored=time[(group == 0) & event], right=time[(group == 0) & ~event]))
    assert chi2[0] == pytest.approx(reference.statistic ** 2, rel=1e-10)
    assert p[0] == pytest.approx(reference.pvalue, rel=1e-8)
    # The continuous feature: the score test written as a loop over distinct event times.
    U = V = 0.0
    for t in np.unique(time[event]):
        at_risk, dying = time >= t, (time == t) & event
        n_t, d_t = at_risk.sum(), dying.sum()
        mean = radius[at_risk].mean()
        U += radius[dying].sum() - d_t * mean
        V += d_t * (n_t - d_t) / (n_t - 1) * radius[at_risk].var() if n_t > 1 else 0.0
    assert chi2[1] == pytest.approx(U * U / V, rel=1e-10)
    # As the selector's test, for a structured survival y.
    y = np.empty(n, dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event, time
    step = UnivariateFDR(alpha=0.05).fit(np.column_stack([group, radius]), y)
    assert step.test_ == "cox-score" and np.allclose(step.pvalues_, p)


# mRMR ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["MID", "MIQ"])
def test_mrmr_first_picks_on_each_training_fold(scheme):
    result, fitted = run_folds(MRMR(n_features=6, scheme=scheme, random_state=0))
    for train, step in fitted:
        X, y = BREAST.data[train], BREAST.target[train]
        relevance = mutual_info_classif(X, y, n_neighbors=3, random_state=0)
        first = int(np.argmax(relevance))
        assert step.ranking_[0] == first and np.allclose(step.relevance_, relevance)
        rest = np.array([j for j in range(30) if j != first])
        redundancy = mutual_info_regression(X[:, rest], X[:, first], n_neighbors=3, random_state=0)
        criterion = relevance[rest] - redundancy if scheme == "MID" else relevance[rest] / np.maximum(redundancy, 1e-12)
        assert step.ranking_[1] == rest[np.argmax(criterion)]
        assert step.get_support().sum() == 6 and len(set(step.ranking_)) == 6
    assert result["test_score"].mean() > 0.95


# Penalised logistic regression ---------------------------------------------------------------------
def kkt_residuals(step, X, y):
    """(max |C grad| over zero coefficients, max violation over non-zero ones) of
    C sum log-loss + r |w|_1 + (1 - r) |w|^2 / 2 at the fitted coefficients (standardised training rows)."""
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    w = step.coef_
    probability = 1 / (1 + np.exp(-(Z @ w + step.model_.intercept_[0])))
    gradient = step.C_ * Z.T @ (probability - y)
    r = step.l1_ratio
    nonzero = w != 0
    return np.abs(gradient[~nonzero]).max() / r, np.abs(gradient[nonzero] + (1 - r) * w[nonzero] + r * np.sign(w[nonzero])).max()


def test_lasso_logistic_selection_is_optimal_on_each_training_fold():
    result, fitted = run_folds(PenalizedLogistic(random_state=0, tol=1e-7))
    for train, step in fitted:
        zero, nonzero = kkt_residuals(step, BREAST.data[train], BREAST.target[train])
        assert zero <= 1 + 1e-6 and nonzero < 1e-3, (zero, nonzero)
        assert step.C_ in step.Cs_ and step.C_ == step.Cs_[np.argmax(step.cv_scores_)]
        assert np.array_equal(step.get_support(), step.coef_ != 0) and 2 < step.get_support().sum() < 30
    assert result["test_score"].mean() > 0.97


def test_elastic_net_logistic_selection_is_optimal_on_each_training_fold():
    result, fitted = run_folds(PenalizedLogistic(l1_ratio=0.5, C=0.05, random_state=0, tol=1e-7))
    for train, step in fitted:
        zero, nonzero = kkt_residuals(step, BREAST.data[train], BREAST.target[train])
        assert zero <= 1 + 1e-6 and nonzero < 1e-3, (zero, nonzero)
        assert 2 < step.get_support().sum() < 30
    assert result["test_score"].mean() > 0.97


# Recursive feature elimination ---------------------------------------------------------------------
def test_recursive_elimination_equals_a_plain_loop_on_each_training_fold():
    result, fitted = run_folds(RecursiveElimination(n_features=5))
    for train, step in fitted:
        Z = StandardScaler().fit_transform(BREAST.data[train])
        left = list(range(30))
        while len(left) > 5:
            coef = LogisticRegression(max_iter=10000).fit(Z[:, left], BREAST.target[train]).coef_.ravel()
            del left[int(np.argmin(np.abs(coef)))]
        assert list(step.get_support(indices=True)) == left
    assert result["test_score"].mean() > 0.95


# Selection frequency and stability -----------------------------------------------------------------
def test_selection_frequency_of_a_chained_pipeline():
    """NZV -> clusters -> FDR -> mRMR, names passed from step to step; frequencies over the 5 folds."""
    chain = make_pipeline(NearZeroVariance(), CorrelationClusters(0.9), UnivariateFDR(0.01), MRMR(5, random_state=0))
    pipeline = make_pipeline(*[step for _, step in chain.steps], StandardScaler(), LogisticRegression(max_iter=5000))
    result = cross_validate(pipeline, table(BREAST.data, NAMES), BREAST.target, cv=FOLDS, return_estimator=True,
                            return_indices=True)
    supports = []
    for estimator in result["estimator"]:
        support = np.zeros(30, bool)
        kept = np.arange(30)
        for step in estimator.steps[:4]:
            kept = kept[step[1].get_support()]
        support[kept] = True
        supports.append(support)
        assert list(estimator[:4].get_feature_names_out()) == [NAMES[j] for j in kept]
        assert list(estimator[3].feature_names_) == list(estimator[2].get_feature_names_out())  # names went on
    frequency = selection_frequency(result["estimator"])
    assert frequency.features == NAMES and frequency.folds == 5
    assert np.array_equal(frequency.supports, supports)
    rows = frequency.rows()
    assert [r["count"] for r in rows] == sorted((int(c) for c in np.sum(supports, axis=0)), reverse=True)
    assert all(r["frequency"] == r["count"] / 5 for r in rows) and rows[0]["count"] >= 3
    # Nogueira et al. 2018: 1 - mean unbiased variance of the columns / (k/p (1 - k/p)).
    Z = np.array(supports, float)
    k = Z.sum(axis=1).mean()
    assert frequency.stability == pytest.approx(1 - np.var(Z, axis=0, ddof=1).mean() / (k / 30 * (1 - k / 30)))
    assert nogueira_stability([supports[0]] * 4) == pytest.approx(1.0)
    lines = frequency.csv_text().splitlines()
    assert lines[0] == "feature,frequency,count,folds" and len(lines) == 31
    # The same from bare supports, and with the names given.
    again = selection_frequency(supports, NAMES)
    assert again.rows() == rows


# Reproducibility filter on a real icc.csv ----------------------------------------------------------
@pytest.fixture(scope="module")
def observers_run(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("study_icc")
    cohort = folder / "cohort.csv"
    sts = data / "sts"
    cohort.write_text("lesion,observer,image,mask\n" + "".join(
        f"{c},gtv,{sts / c / 'PET_image.nii.gz'},{sts / c / 'PET_mask.nii.gz'}\n" for c in ("STS_001", "STS_002", "STS_003", "STS_004")))
    params = folder / "pet.yaml"
    params.write_text("featureClass:\n  firstorder: []\n  glcm: []\nsetting:\n  binWidth: 0.5\n")
    out = folder / "out"
    done = run_cli("observers", "--cohort", cohort, "--perturbation", "grow:mm=5", "--perturbation", "shift:mm=3",
                   "--perturbation", "supervoxels", "--seed", "11", "--params", params, "-o", out, "--workers", "0")
    assert done.returncode == 0, done.stderr
    return out


def test_reproducibility_filter_on_a_real_icc_table(observers_run):
    icc_path = observers_run / "icc.csv"
    rows = read_csv(icc_path)
    assert len(rows) == 42 and rows[0]["icc_type"] == "ICC(2,1)"
    threshold = 0.9
    expected = [r["feature"] for r in rows if r["ci_low"] and float(r["ci_low"]) >= threshold]
    assert 5 < len(expected) < 40
    # The observers' own features: one row per reading (lesion/observer), one column per feature.
    readings = {}
    for r in read_csv(observers_run / "features.csv"):
        readings.setdefault(r["segment"], {})[r["feature"]] = float(r["value"])
    names = [r["feature"] for r in rows]
    X = np.array([[values[f] for f in names] for values in readings.values()])
    y = np.array([key.split("/")[0] in ("STS_001", "STS_002") for key in readings], int)
    assert X.shape == (16, 42) and y.sum() == 8
    steps = [ReproducibilityFilter(icc_path, threshold), CorrelationClusters(0.95, icc=icc_path)]
    pipeline = make_pipeline(*steps, StandardScaler(), LogisticRegression())
    folds = StratifiedKFold(4, shuffle=True, random_state=0)
    result = cross_validate(pipeline, table(X, names), y, cv=folds, return_estimator=True, return_indices=True)
    icc = {r["feature"]: float(r["ci_low"] or "nan") for r in rows}
    for train, estimator in zip(result["indices"]["train"], result["estimator"]):
        kept = list(estimator[0].get_feature_names_out())
        assert kept == expected and estimator[0].unknown_features_ == []
        assert np.allclose(estimator[0].icc_, [icc[f] for f in names], equal_nan=True)
        # Clusters of the fold's training rows; per cluster the feature with the highest ICC lower bound.
        columns = [names.index(f) for f in expected]
        rho = stats.spearmanr(X[np.ix_(train, columns)]).statistic
        distance = np.round(1 - np.abs(rho), 12)
        np.fill_diagonal(distance, 0)
        clusters = partition(fcluster(linkage(squareform(distance, checks=False), "complete"), 0.05, criterion="distance"))
        best = {expected[max(c, key=lambda j: (icc[expected[j]], X[train, columns[j]].var(ddof=1)))] for c in clusters}
        assert set(estimator[1].get_feature_names_out()) == best
    # The icc.csv read back: every column, numbers as floats.
    table_rows = read_icc_table(icc_path)
    assert set(table_rows) == set(names) and table_rows[names[0]]["ci_low"] == float(rows[0]["ci_low"])


def test_reproducibility_filter_on_pivoted_batch_names(observers_run, data, tmp_path):
    """A real batch table of the MR cases (two segments each) read by read_study: its pivoted names
    'segment-Label_k__<feature>' are looked up by their feature name; unknown names dropped, kept or refused."""
    out = batch_features(data, tmp_path / "batch")
    clinical = write_rows(tmp_path / "clinical.csv", ["id", "outcome"], [("brain1", 1), ("brain2", 0), ("breast1", 1)])
    study = read_study(out / "features.csv", clinical, n_folds=None)
    rows = read_csv(observers_run / "icc.csv")
    robust = {r["feature"] for r in rows if r["robust"] == "true"}  # the default rule: ICC(2,1) lower bound >= 0.75
    step = ReproducibilityFilter(observers_run / "icc.csv").fit(study.table(), study.y)
    assert list(step.get_feature_names_out()) == [n for n in study.feature_names if n.split("__")[1] in robust]
    assert step.transform(study.table()).column_names == list(step.get_feature_names_out())
    plain = ReproducibilityFilter(observers_run / "icc.csv", feature_names=study.feature_names).fit(study.X)
    assert np.array_equal(plain.get_support(), step.get_support())
    assert np.array_equal(plain.transform(study.X), study.X[:, step.get_support()])
    # A feature that is not in the table.
    X = np.column_stack([study.X, np.ones(3)])
    names = [*study.feature_names, "original_shape_Sphericity"]
    assert not ReproducibilityFilter(observers_run / "icc.csv", feature_names=names).fit(X).get_support()[-1]
    assert ReproducibilityFilter(observers_run / "icc.csv", unknown="keep", feature_names=names).fit(X).get_support()[-1]
    with pytest.raises(RadiomicsLabError, match="1 feature\\(s\\) are not in the ICC table: original_shape_Sphericity"):
        ReproducibilityFilter(observers_run / "icc.csv", unknown="error", feature_names=names).fit(X)
    with pytest.raises(RadiomicsLabError, match="no column 'icc9_ci_low'"):
        ReproducibilityFilter(observers_run / "icc.csv", column="icc9_ci_low", feature_names=names).fit(X)


def test_bad_parameters_are_user_errors():
    X, y = BREAST.data[:, :5], BREAST.target
    with pytest.raises(RadiomicsLabError, match="feature_names has 3 names but X has 5 columns"):
        NearZeroVariance(feature_names=["a", "b", "c"]).fit(X)
    with pytest.raises(RadiomicsLabError, match="needs a binary outcome"):
        UnivariateFDR().fit(X, np.arange(len(y)) % 3)
    with pytest.raises(RadiomicsLabError, match="scheme 'MIX'"):
        MRMR(scheme="MIX").fit(X, y)
    with pytest.raises(RadiomicsLabError, match="needs icc="):
        ReproducibilityFilter().fit(X)
