"""Harmonisation of features across batches (sites, scanners, protocols): ComBat as a scikit-learn transformer.

ComBat (Johnson et al. 2007; for imaging features Fortin et al. 2017, 2018 and Orlhac et al. 2018) removes
additive and multiplicative batch effects from each feature while the effect of protected covariates (age,
diagnosis, ...) is kept. :class:`ComBat` is fitted on training rows only and applies its frozen parameters to
new rows, so it can sit inside a :class:`sklearn.pipeline.Pipeline` under cross-validation without leaking
the test rows into the harmonisation. :func:`harmonisation_plots` draws the per-batch distributions of a few
features and a PCA coloured by batch, before and after.

The model and its estimation are in :class:`ComBat`'s docstring.

References
----------
- Johnson WE, Li C, Rabinovic A. Adjusting batch effects in microarray expression data using empirical Bayes
  methods. Biostatistics 2007;8(1):118-127. (the L/S model, the priors and both EB solutions)
- Fortin J-P, Parker D, Tunc B, et al. Harmonization of multi-site diffusion tensor imaging data. NeuroImage
  2017;161:149-170; Fortin J-P, Cullen N, Sheline YI, et al. Harmonization of cortical thickness measurements
  across scanners and sites. NeuroImage 2018;167:104-120. (ComBat for imaging features; neuroCombat)
- Orlhac F, Boughdad S, Philippe C, et al. A postreconstruction harmonization method for multicenter radiomic
  studies in PET. J Nucl Med 2018;59(8):1321-1328. (ComBat for radiomic features)
- Zhang Y, Jenkins DF, Manimaran S, Johnson WE. Alternative empirical Bayes models for adjusting for batch
  effects in genomic studies. BMC Bioinformatics 2018;19:262. (the reference batch)
- Leek JT, Johnson WE, et al. sva: Surrogate Variable Analysis, R/Bioconductor package, function ``ComBat``.
  (the reference implementation: the same stopping rule, and features constant within a batch left alone)
"""

import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from ..errors import RadiomicsLabError, RadiomicsLabWarning

#: A feature whose residual SD (after batch and covariates) is below this fraction of its root mean square
#: is taken as explained exactly by the design and is not adjusted (its standardised values would be noise).
EXACT_FIT = 1e-10
#: The non-parametric solution compares each feature with at most this many others at once (memory bound).
NONPARAMETRIC_BLOCK = 256
#: Okabe-Ito colour-blind-safe palette, then Tableau colours, for batches in plots.
PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442", "#000000",
           "#9467BD", "#8C564B", "#BCBD22", "#17BECF"]



def column_position(column, names, n_columns: int, what: str = "Column") -> int:
    """The 0-based position of ``column`` (a position, negative ones counted from the end, or a name among
    ``names``, the table's column names or None) in a table of ``n_columns`` columns; a clear error otherwise."""
    if isinstance(column, (int, np.integer)) and not isinstance(column, bool):
        if not -n_columns <= column < n_columns:
            raise RadiomicsLabError(f"{what} {column} is not a column of X (0..{n_columns - 1}).")
        return int(column) % n_columns
    if isinstance(column, str):
        if names is None:
            raise RadiomicsLabError(f"{what} '{column}' is given by name, but X has no column names; give its "
                                    "position (0-based) or pass a data frame.")
        if column not in names:
            raise RadiomicsLabError(f"{what} '{column}' is not in X; its columns are {', '.join(names[:20])}"
                                    f"{' ...' if len(names) > 20 else ''}.")
        return names.index(column)
    raise RadiomicsLabError(f"{what} must be a position or a name, not {column!r}.")

class ComBat(TransformerMixin, BaseEstimator):
    r"""ComBat harmonisation (location/scale model with empirical Bayes); a scikit-learn transformer.

    **Input.** ``X`` holds the features *and* the batch label *and* the protected covariates, as columns:
    ``batch`` names the batch column, ``covariates`` the numeric covariates (entered linearly, e.g. age) and
    ``categorical_covariates`` the categorical ones (one indicator per level, the first level dropped,
    e.g. sex, diagnosis). Columns are given by position (``int``) or, when ``X`` is a data frame with string
    column names, by name. Every other column is a feature. ``transform`` returns the harmonised features
    only, in their input order (``get_feature_names_out`` names them): the batch and covariate columns are
    consumed. So in a pipeline, ``Pipeline([("combat", ComBat(batch=0)), ("model", ...)])`` fitted on rows
    whose column 0 is the site harmonises with the training rows' estimates in every cross-validation fold
    and hands the model features only. To keep a covariate as a predictor too, pass it through beside ComBat
    in a :class:`~sklearn.compose.ColumnTransformer`. The covariates must be known for every new row; never
    protect the prediction target (it would give the model the label at prediction time).

    **Model** (Johnson et al. 2007, eq. 2.1), feature :math:`v`, batch :math:`i`, row :math:`j` of batch
    :math:`i`, covariate row vector :math:`x_{ij}`:

    .. math:: y_{ijv} = \alpha_v + x_{ij}\beta_v + \gamma_{iv} + \delta_{iv}\varepsilon_{ijv},
              \qquad \varepsilon_{ijv} \sim N(0, \sigma_v^2)

    **Standardisation.** :math:`(B_v, \beta_v)` by least squares of :math:`y_v` on [batch indicators |
    covariates]; :math:`\hat\alpha_v = \sum_i (n_i/n) B_{iv}` (``grand_mean_``), :math:`\hat\beta_v`
    (``covariate_coef_``), :math:`\hat\sigma_v^2 = \frac1n\sum_{ij}(y_{ijv} - B_{iv} - x_{ij}\hat\beta_v)^2`
    (``var_pooled_``), and :math:`z_{ijv} = (y_{ijv} - \hat\alpha_v - x_{ij}\hat\beta_v)/\hat\sigma_v`.

    **Batch estimates.** :math:`\hat\gamma_{iv} = \bar z_{i\cdot v}` and :math:`\hat\delta^2_{iv}` the
    variance of :math:`z_{i\cdot v}` (denominator :math:`n_i - 1`): ``gamma_hat_``, ``delta_hat_``.

    **Empirical Bayes priors** (per batch, over the features): :math:`\gamma_{iv} \sim N(\bar\gamma_i,
    \bar\tau_i^2)`, :math:`\delta^2_{iv} \sim \text{InverseGamma}(\bar\lambda_i, \bar\theta_i)`, by the
    method of moments: :math:`\bar\gamma_i`, :math:`\bar\tau_i^2` the mean and variance of
    :math:`\hat\gamma_{i\cdot}`; with :math:`\bar V_i`, :math:`\bar S_i^2` the mean and variance of
    :math:`\hat\delta^2_{i\cdot}`, :math:`\bar\lambda_i = (\bar V_i^2 + 2\bar S_i^2)/\bar S_i^2` and
    :math:`\bar\theta_i = (\bar V_i^3 + \bar V_i\bar S_i^2)/\bar S_i^2` (``gamma_bar_``, ``tau2_``,
    ``a_prior_``, ``b_prior_``).

    **Parametric solution** (``parametric=True``): the posterior means, which depend on each other, solved
    by iteration from :math:`(\hat\gamma, \hat\delta^2)`:

    .. math:: \gamma^*_{iv} = \frac{n_i\bar\tau_i^2\hat\gamma_{iv} + \delta^{2*}_{iv}\bar\gamma_i}
                                   {n_i\bar\tau_i^2 + \delta^{2*}_{iv}}, \qquad
              \delta^{2*}_{iv} = \frac{\bar\theta_i + \frac12\sum_j (z_{ijv} - \gamma^*_{iv})^2}
                                      {n_i/2 + \bar\lambda_i - 1}

    until the largest relative change of any :math:`\gamma^*` or :math:`\delta^{2*}` is below ``tol``
    (``1e-4``, and the rule exactly as in sva's and neuroCombat's ``it.sol``: the change relative to the
    previous value with its sign, so this gives their numbers), at most ``max_iter`` rounds (``n_iter_``).

    **Non-parametric solution** (``parametric=False``): the other features' estimates of the same batch are
    the prior's support: with weights :math:`w_{vw} = \prod_j \phi(z_{ijv}; \hat\gamma_{iw},
    \hat\delta^2_{iw})` for :math:`w \ne v` (computed in log space, so they never underflow),
    :math:`\gamma^*_{iv} = \sum_w w_{vw}\hat\gamma_{iw} / \sum_w w_{vw}` and likewise :math:`\delta^{2*}_{iv}`.
    ``eb=False`` uses :math:`\hat\gamma, \hat\delta^2` as they are (no shrinkage).

    **Adjustment** (``transform``, also for rows not seen in ``fit``; ``gamma_star_``, ``delta_star_``):

    .. math:: y^*_{ijv} = \frac{\hat\sigma_v}{\delta^*_{iv}}\,(z_{ijv} - \gamma^*_{iv}) + \hat\alpha_v
              + x_{ij}\hat\beta_v

    **Reference batch** (``reference_batch``, Zhang et al. 2018): its indicator column becomes the intercept,
    :math:`\hat\alpha_v = B_{rv}`, :math:`\hat\sigma_v^2` is taken over the reference rows only, and
    :math:`\gamma^*_r = 0`, :math:`\delta^*_r = 1`: the other batches are mapped onto the reference, whose
    rows ``transform`` returns unchanged.

    **Features left as they are** (``adjusted_features_`` is False, a :class:`RadiomicsLabWarning` names
    them): features constant within any batch of the training rows (as sva's ``ComBat`` does: their
    within-batch variance is 0, so the batch's scale is undefined), and features the covariates and batch
    explain exactly (residual SD below :data:`EXACT_FIT` of the feature's RMS). They are copied through
    unchanged and take no part in the priors. The result is deterministic (no ``random_state``).

    Refused with :class:`~RadiomicsLabLib.errors.RadiomicsLabError`: fewer than 2 batches, a batch with
    fewer than 2 rows, non-finite values, covariates confounded with the batch (a rank-deficient design),
    fewer than 2 adjustable features with ``eb=True``, and in ``transform`` a batch or a categorical level
    that ``fit`` did not see (the message names it and those known).

    Fitted attributes (arrays over batches x features; batches in ``batches_`` order, sorted):
    ``batches_``, ``batch_sizes_``, ``batch_column_``, ``covariate_columns_``, ``categorical_columns_``,
    ``categories_`` (levels of each categorical covariate), ``feature_columns_``, ``adjusted_features_``,
    ``grand_mean_``, ``covariate_coef_`` (design columns x features: numeric covariates, then the
    indicators), ``var_pooled_``, ``gamma_hat_``, ``delta_hat_``, ``gamma_bar_``, ``tau2_``, ``a_prior_``,
    ``b_prior_``, ``gamma_star_``, ``delta_star_``, ``n_iter_``, ``reference_index_`` (position in ``batches_`` or
    None), ``n_features_in_``, ``feature_names_in_``.
    """

    def __init__(self, batch=0, covariates=(), categorical_covariates=(), eb: bool = True, parametric: bool = True,
                 reference_batch=None, tol: float = 1e-4, max_iter: int = 1000):
        self.batch = batch
        self.covariates = covariates
        self.categorical_covariates = categorical_covariates
        self.eb = eb
        self.parametric = parametric
        self.reference_batch = reference_batch
        self.tol = tol
        self.max_iter = max_iter

    # scikit-learn API --------------------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Estimate the harmonisation on the rows of ``X`` (features, batch and covariate columns); ``y`` is ignored."""
        if not (isinstance(self.tol, (int, float)) and self.tol > 0):
            raise RadiomicsLabError(f"tol must be a positive number, not {self.tol!r}.")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise RadiomicsLabError(f"max_iter must be a positive integer, not {self.max_iter!r}.")
        X = self._check_input(X, reset=True)
        self._resolve_columns(X.shape[1])
        labels = self._batch_labels(X)
        try:
            batches, codes, sizes = np.unique(labels, return_inverse=True, return_counts=True)
        except TypeError:
            raise RadiomicsLabError("The batch column mixes kinds of labels (e.g. numbers and text); "
                                    "give every batch one label of one kind.") from None
        if len(batches) < 2:
            raise RadiomicsLabError(f"ComBat needs at least 2 batches; the batch column holds only {_show(batches)}.")
        small = [b for b, size in zip(batches.tolist(), sizes) if size < 2]
        if small:
            raise RadiomicsLabError(
                f"Batch(es) {_show(small)} have fewer than 2 rows; ComBat cannot estimate a batch's scale from one "
                "row. Merge them into another batch or leave those rows out.")
        self.batches_ = batches
        self.batch_sizes_ = sizes.astype(int)
        ref = None
        if self.reference_batch is not None:
            ref = self._known_batches([self.reference_batch], "reference_batch")[0]
        self.reference_index_ = ref

        features = self._features(X)
        self.categories_ = []
        for column in self.categorical_columns_:
            try:
                self.categories_.append(np.unique(_non_missing(X[:, column], self._name(column))))
            except TypeError:
                raise RadiomicsLabError(f"Categorical covariate '{self._name(column)}' mixes kinds of labels "
                                        "(e.g. numbers and text).") from None
        covariate_design = self._covariate_design(X)

        n, n_batch = len(X), len(batches)
        batch_design = np.zeros((n, n_batch))
        batch_design[np.arange(n), codes] = 1.0
        if ref is not None:
            batch_design[:, ref] = 1.0
        design = np.hstack([batch_design, covariate_design])
        rank = np.linalg.matrix_rank(design)
        if rank < design.shape[1]:
            raise RadiomicsLabError(
                f"The covariates are confounded with the batch (design matrix of rank {rank} for {design.shape[1]} "
                "columns): a covariate is constant within each batch, repeats another, or a categorical level "
                "coincides with a batch. ComBat cannot separate their effects; leave that covariate out.")

        coef = np.linalg.lstsq(design, features, rcond=None)[0]
        self.grand_mean_ = coef[ref] if ref is not None else (sizes / n) @ coef[:n_batch]
        self.covariate_coef_ = coef[n_batch:]
        residual = features - design @ coef
        rows = codes == ref if ref is not None else slice(None)
        self.var_pooled_ = np.mean(residual[rows] ** 2, axis=0)

        # Features left alone: constant within a batch (as sva), or fitted exactly by the design.
        constant = np.zeros(features.shape[1], dtype=bool)
        for b in range(n_batch):
            part = features[codes == b]
            constant |= np.ptp(part, axis=0) == 0
        rms = np.sqrt(np.mean(features ** 2, axis=0))
        exact = np.sqrt(self.var_pooled_) <= EXACT_FIT * rms
        self.adjusted_features_ = ~(constant | exact)
        if not self.adjusted_features_.all():
            names = [self._name(c) for c in np.asarray(self.feature_columns_)[~self.adjusted_features_]]
            listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
            warnings.warn(RadiomicsLabWarning(
                f"ComBat leaves {len(names)} feature(s) unchanged: {listed} (constant within a batch or explained "
                "exactly by the batch and covariates)."), stacklevel=2)
        keep = self.adjusted_features_
        if self.eb and keep.sum() < 2:
            raise RadiomicsLabError(
                f"Empirical Bayes ComBat needs at least 2 features that vary within every batch, found {int(keep.sum())}; "
                "use eb=False to adjust each feature on its own.")

        p = features.shape[1]
        self.gamma_hat_ = np.full((n_batch, p), np.nan)
        self.delta_hat_ = np.full((n_batch, p), np.nan)
        self.gamma_star_ = np.zeros((n_batch, p))
        self.delta_star_ = np.ones((n_batch, p))
        self.gamma_bar_ = np.full(n_batch, np.nan)
        self.tau2_ = np.full(n_batch, np.nan)
        self.a_prior_ = np.full(n_batch, np.nan)
        self.b_prior_ = np.full(n_batch, np.nan)
        self.n_iter_ = np.zeros(n_batch, dtype=int)
        if keep.any():
            z = (features[:, keep] - self.grand_mean_[keep] - covariate_design @ self.covariate_coef_[:, keep]) \
                / np.sqrt(self.var_pooled_[keep])
            for b in range(n_batch):
                zb = z[codes == b]
                g_hat, d_hat = zb.mean(axis=0), zb.var(axis=0, ddof=1)
                if ref is not None and b != ref:
                    g_hat = g_hat - z[codes == ref].mean(axis=0)  # the reference's indicator is the intercept
                self.gamma_hat_[b, keep], self.delta_hat_[b, keep] = g_hat, d_hat
                if b == ref:
                    continue  # gamma* = 0, delta* = 1: the reference batch is not adjusted
                if not self.eb:
                    g_star, d_star = g_hat, d_hat
                else:
                    g_bar, t2 = g_hat.mean(), g_hat.var(ddof=1)
                    m, s2 = d_hat.mean(), d_hat.var(ddof=1)
                    if t2 == 0 or s2 == 0:
                        raise RadiomicsLabError(
                            f"The empirical Bayes priors of batch {_show([batches[b]])} are degenerate (all features "
                            "share the same batch mean or variance); use eb=False.")
                    a, bb = (2 * s2 + m ** 2) / s2, (m * s2 + m ** 3) / s2
                    self.gamma_bar_[b], self.tau2_[b], self.a_prior_[b], self.b_prior_[b] = g_bar, t2, a, bb
                    if self.parametric:
                        g_star, d_star, self.n_iter_[b] = _parametric_solution(
                            zb, g_hat, d_hat, g_bar, t2, a, bb, self.tol, self.max_iter)
                        if self.n_iter_[b] >= self.max_iter:
                            warnings.warn(RadiomicsLabWarning(
                                f"ComBat's parametric solution for batch {_show([batches[b]])} did not converge in "
                                f"{self.max_iter} iterations; the last estimates are used."), stacklevel=2)
                    else:
                        g_star, d_star = _nonparametric_solution(zb, g_hat, d_hat)
                self.gamma_star_[b, keep], self.delta_star_[b, keep] = g_star, d_star
        return self

    def transform(self, X):
        """Harmonised features of ``X`` (rows x features, the batch and covariate columns removed), with the
        parameters frozen at ``fit``; every row's batch and categorical levels must have been seen in ``fit``."""
        check_is_fitted(self, "gamma_star_")
        X = self._check_input(X, reset=False)
        codes = self._known_batches(self._batch_labels(X), "batch column", rows=True)
        features = self._features(X)
        design = self._covariate_design(X)
        out = features.copy()
        keep = self.adjusted_features_
        if keep.any():
            mean = self.grand_mean_[keep] + design @ self.covariate_coef_[:, keep]
            sd = np.sqrt(self.var_pooled_[keep])
            z = (features[:, keep] - mean) / sd
            z = (z - self.gamma_star_[codes][:, keep]) / np.sqrt(self.delta_star_[codes][:, keep])
            out[:, keep] = z * sd + mean
        if self.reference_index_ is not None:
            rows = codes == self.reference_index_
            out[rows] = features[rows]
        return out

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: the feature columns (batch and covariate columns removed)."""
        check_is_fitted(self, "feature_columns_")
        names = _check_feature_names_in(self, input_features)
        return np.asarray(names, dtype=object)[self.feature_columns_]

    # helpers -----------------------------------------------------------------------------------------------
    def _check_input(self, X, reset: bool) -> np.ndarray:
        X = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=reset)
        if X.ndim != 2 or len(X) == 0:
            raise RadiomicsLabError("ComBat needs a 2D table of rows (patients) x columns.")
        return X

    def _resolve_columns(self, n_columns: int):
        """Set ``batch_column_``, ``covariate_columns_``, ``categorical_columns_`` and ``feature_columns_``."""
        names = getattr(self, "feature_names_in_", None)
        names = [str(c) for c in names] if names is not None else None

        def index(column, role):
            return column_position(column, names, n_columns, f"The {role} column")

        def columns(value, role):
            if value is None:
                return []
            if isinstance(value, (str, int, np.integer)):
                value = [value]
            return [index(c, role) for c in value]

        if self.batch is None:
            raise RadiomicsLabError("ComBat needs the batch column: give batch=<position or name>.")
        self.batch_column_ = index(self.batch, "batch")
        self.covariate_columns_ = columns(self.covariates, "covariate")
        self.categorical_columns_ = columns(self.categorical_covariates, "categorical covariate")
        used = [self.batch_column_, *self.covariate_columns_, *self.categorical_columns_]
        if len(set(used)) != len(used):
            raise RadiomicsLabError("The batch, covariate and categorical covariate columns must all differ; "
                                    f"got {', '.join(self._name(c) for c in used)}.")
        self.feature_columns_ = [c for c in range(n_columns) if c not in set(used)]
        if not self.feature_columns_:
            raise RadiomicsLabError("X has no feature columns besides the batch and covariates.")

    def _name(self, column: int) -> str:
        names = getattr(self, "feature_names_in_", None)
        return str(names[column]) if names is not None else f"column {column}"

    def _batch_labels(self, X) -> np.ndarray:
        return _non_missing(X[:, self.batch_column_], "the batch column")

    def _known_batches(self, labels, what: str, rows: bool = False) -> np.ndarray:
        """Indices into ``batches_`` of ``labels``; a RadiomicsLabError naming any unknown one."""
        lookup = {label: i for i, label in enumerate(self.batches_.tolist())}
        values = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
        unknown = []
        for value in values:
            try:
                if value not in lookup and value not in unknown:
                    unknown.append(value)
            except TypeError:  # unhashable
                unknown.append(value)
        if unknown and rows:
            raise RadiomicsLabError(
                f"ComBat was not fitted on rows of batch(es) {_show(unknown)}; it knows the batches "
                f"{_show(self.batches_)}. Fit it on rows that include every batch it has to harmonise.")
        if unknown:
            raise RadiomicsLabError(f"{what} {_show(unknown)} is not one of the batches {_show(self.batches_)}.")
        return np.array([lookup[v] for v in values], dtype=int)

    def _features(self, X) -> np.ndarray:
        try:
            features = np.asarray(X[:, self.feature_columns_], dtype=np.float64)
        except (TypeError, ValueError):
            bad = [self._name(c) for c in self.feature_columns_ if not _is_numeric(X[:, c])]
            raise RadiomicsLabError(f"Feature column(s) {', '.join(bad[:10])} are not numeric; name text columns as "
                                    "the batch or categorical covariates, or leave them out.") from None
        if not np.isfinite(features).all():
            bad = int(np.count_nonzero(~np.isfinite(features).all(axis=1)))
            raise RadiomicsLabError(f"{bad} row(s) have NaN or infinite feature values; impute or leave them out "
                                    "before ComBat.")
        return features

    def _covariate_design(self, X) -> np.ndarray:
        """Numeric covariates, then one indicator per categorical level but the first (rows x design columns)."""
        parts = []
        for column in self.covariate_columns_:
            try:
                values = np.asarray(X[:, column], dtype=np.float64)
            except (TypeError, ValueError):
                raise RadiomicsLabError(f"Covariate '{self._name(column)}' is not numeric; give it as a categorical "
                                        "covariate instead.") from None
            if not np.isfinite(values).all():
                raise RadiomicsLabError(f"Covariate '{self._name(column)}' has NaN or infinite values.")
            parts.append(values[:, None])
        for column, levels in zip(self.categorical_columns_, self.categories_):
            values = _non_missing(X[:, column], self._name(column))
            lookup = {level: i for i, level in enumerate(levels.tolist())}
            unknown = sorted({v for v in values.tolist() if v not in lookup}, key=str)
            if unknown:
                raise RadiomicsLabError(f"Categorical covariate '{self._name(column)}' has level(s) {_show(unknown)} "
                                        f"not seen in fit; it knows {_show(levels)}.")
            codes = np.array([lookup[v] for v in values.tolist()], dtype=int)
            parts.append((codes[:, None] == np.arange(1, len(levels))[None, :]).astype(np.float64))
        return np.hstack(parts) if parts else np.zeros((len(X), 0))


def _parametric_solution(z, g_hat, d_hat, g_bar, t2, a, b, tol, max_iter):
    """Posterior gamma*, delta*^2 of one batch (rows x features ``z``) by iteration, as sva's ``it.sol``."""
    n = z.shape[0]
    g_old, d_old = g_hat, d_hat
    for count in range(1, max_iter + 1):
        g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
        sum2 = ((z - g_new) ** 2).sum(axis=0)
        d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            change = max(np.max(np.abs(g_new - g_old) / g_old), np.max(np.abs(d_new - d_old) / d_old))
        g_old, d_old = g_new, d_new
        if not change > tol:  # sva: while(change > conv); NaN (a gamma exactly 0) stops as well
            break
    return g_new, d_new, count


def _nonparametric_solution(z, g_hat, d_hat):
    """Posterior gamma*, delta*^2 of one batch with the other features' (gamma_hat, delta_hat) as a discrete prior.

    log L(z_v | g_w, d_w) = -n/2 log(2 pi d_w) - S_vw / (2 d_w), S_vw = sum_j (z_jv - g_w)^2
    = SS_v + n (mean_v - g_w)^2; the weights are normalised in log space (softmax), the diagonal excluded.
    """
    n, p = z.shape
    mean = z.mean(axis=0)
    ss = ((z - mean) ** 2).sum(axis=0)
    g_star, d_star = np.empty(p), np.empty(p)
    for start in range(0, p, NONPARAMETRIC_BLOCK):
        rows = slice(start, min(p, start + NONPARAMETRIC_BLOCK))
        s = ss[rows, None] + n * (mean[rows, None] - g_hat[None, :]) ** 2
        log_like = -0.5 * n * np.log(2 * np.pi * d_hat)[None, :] - s / (2 * d_hat[None, :])
        log_like[np.arange(rows.stop - rows.start), np.arange(rows.start, rows.stop)] = -np.inf
        weight = np.exp(log_like - log_like.max(axis=1, keepdims=True))
        weight /= weight.sum(axis=1, keepdims=True)
        g_star[rows], d_star[rows] = weight @ g_hat, weight @ d_hat
    return g_star, d_star


def _non_missing(values: np.ndarray, what: str) -> np.ndarray:
    missing = [v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)) for v in values.tolist()]
    if any(missing):
        raise RadiomicsLabError(f"{what[0].upper()}{what[1:]} has {sum(missing)} missing value(s); every row needs one.")
    return values


def _is_numeric(values: np.ndarray) -> bool:
    try:
        np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True


def _show(labels) -> str:
    values = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
    return ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values)


# Plots ---------------------------------------------------------------------------------------------------------
def harmonisation_plots(before, after, batch, folder, features=None, feature_names=None, n_features: int = 4) -> dict:
    """PNG figures of a harmonisation, written atomically in ``folder``; returns ``{file name: path}``.

    ``before`` and ``after``: the features (rows x features, e.g. ComBat's input feature columns and its
    output), ``batch``: each row's batch label. ``harmonisation_distributions.png``: for ``features`` (positions
    or names; by default the ``n_features`` features whose batch means differ most before, by one-way ANOVA F)
    each batch's distribution (Gaussian kernel density) before and after, on one x axis per feature, with the
    ANOVA F of batch. ``harmonisation_pca.png`` (2 features or more): the rows on the first two principal
    components (of the z-scored features), coloured by batch with each batch's centroid, before and after, and
    the share of each component's variance the batch explains (eta squared: between-batch / total sum of
    squares). Names come from ``feature_names``, else ``before``'s columns when it is a data frame. Batch
    differences that protected covariates explain (e.g. a site with more malignant tumours) rightly remain after
    ComBat, so the F and eta squared after need not be near 0.
    """
    from ..fileio import atomic_output

    names = feature_names if feature_names is not None else getattr(before, "columns", None)
    before, after = (np.asarray(a, dtype=np.float64) for a in (before, after))
    if before.ndim != 2 or before.shape != after.shape:
        raise RadiomicsLabError(f"before and after must be tables of the same shape (rows x features), got "
                                f"{before.shape} and {after.shape}.")
    if not (np.isfinite(before).all() and np.isfinite(after).all()):
        raise RadiomicsLabError("before and after must hold finite numbers only.")
    n, p = before.shape
    names = [str(c) for c in names] if names is not None else [f"feature {j + 1}" for j in range(p)]
    if len(names) != p:
        raise RadiomicsLabError(f"{len(names)} feature names for {p} features.")
    labels = np.asarray(batch)
    if labels.ndim != 1 or len(labels) != n:
        raise RadiomicsLabError(f"batch must give one label per row ({n}), got {labels.shape}.")
    batches, codes = np.unique(labels, return_inverse=True)
    if features is None:
        f_before = _anova_f(before, codes, len(batches))
        chosen = list(np.argsort(-np.nan_to_num(f_before, nan=-1.0), kind="stable")[:max(1, n_features)])
    else:
        chosen = []
        for feature in ([features] if isinstance(features, (str, int, np.integer)) else features):
            if isinstance(feature, str):
                if feature not in names:
                    raise RadiomicsLabError(f"No feature named '{feature}' to plot.")
                chosen.append(names.index(feature))
            elif not 0 <= int(feature) < p:
                raise RadiomicsLabError(f"Feature position {feature} is not in 0..{p - 1}.")
            else:
                chosen.append(int(feature))
    folder = Path(folder)
    written = {}
    figures = {"harmonisation_distributions.png": _distributions_figure(before, after, codes, batches, chosen, names)}
    if p >= 2:
        figures["harmonisation_pca.png"] = _pca_figure(before, after, codes, batches)
    for name, figure in figures.items():
        with atomic_output(folder / name) as tmp:
            figure.savefig(tmp, format="png", dpi=110)
        written[name] = folder / name
    return written


def _anova_f(values: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """One-way ANOVA F of batch per column (NaN where a column is constant)."""
    n = len(values)
    total = values.mean(axis=0)
    between = sum(np.count_nonzero(codes == b) * (values[codes == b].mean(axis=0) - total) ** 2
                  for b in range(k) if np.any(codes == b))
    within = sum(((values[codes == b] - values[codes == b].mean(axis=0)) ** 2).sum(axis=0)
                 for b in range(k) if np.any(codes == b))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (between / max(k - 1, 1)) / (within / max(n - k, 1))


def _eta_squared(values: np.ndarray, codes: np.ndarray, k: int) -> float:
    total = ((values - values.mean()) ** 2).sum()
    between = sum(np.count_nonzero(codes == b) * (values[codes == b].mean() - values.mean()) ** 2
                  for b in range(k) if np.any(codes == b))
    return float(between / total) if total > 0 else float("nan")


def _colour(b: int) -> str:
    return PALETTE[b % len(PALETTE)]


def _distributions_figure(before, after, codes, batches, chosen, names):
    from matplotlib.figure import Figure
    from scipy.stats import gaussian_kde

    rows = len(chosen)
    figure = Figure(figsize=(11, 2.5 * rows + 0.9), layout="constrained")
    axes = figure.subplots(rows, 2, squeeze=False)
    k = len(batches)
    f_before, f_after = _anova_f(before[:, chosen], codes, k), _anova_f(after[:, chosen], codes, k)
    for r, column in enumerate(chosen):
        both = np.concatenate([before[:, column], after[:, column]])
        low, high = both.min(), both.max()
        pad = 0.05 * (high - low) if high > low else 1.0
        grid = np.linspace(low - pad, high + pad, 400)
        for c, (values, f) in enumerate(((before[:, column], f_before[r]), (after[:, column], f_after[r]))):
            ax = axes[r, c]
            for b in range(k):
                part = values[codes == b]
                colour = _colour(b)
                if len(part) >= 2 and np.ptp(part) > 0:
                    density = gaussian_kde(part)(grid)
                    ax.fill_between(grid, density, color=colour, alpha=0.15, linewidth=0)
                    ax.plot(grid, density, color=colour, linewidth=1.6)
                ax.axvline(part.mean(), color=colour, linewidth=1.0, linestyle="--")
            ax.set_xlim(grid[0], grid[-1])
            ax.set_ylim(bottom=0)
            ax.set_yticks([])
            stage = "before" if c == 0 else "after"
            ax.set_title(f"{names[column]}: {stage}", fontsize=10, loc="left")
            text = f"batch ANOVA F = {f:.3g}" if np.isfinite(f) else "constant"
            ax.text(0.99, 0.95, text, transform=ax.transAxes, ha="right", va="top", fontsize=9,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})
            if r == rows - 1:
                ax.set_xlabel("feature value")
            if c == 0:
                ax.set_ylabel("density")
    handles = [axes[0, 0].plot([], [], color=_colour(b), linewidth=3)[0] for b in range(k)]
    counts = np.bincount(codes, minlength=k)
    figure.legend(handles, [f"{batches[b]} (n = {counts[b]})" for b in range(k)], loc="outside upper center",
                  ncols=min(k, 6), title="batch (dashed: batch mean)", fontsize=9, title_fontsize=9, frameon=False)
    return figure


def _pca_scores(values: np.ndarray):
    sd = values.std(axis=0)
    z = (values[:, sd > 0] - values[:, sd > 0].mean(axis=0)) / sd[sd > 0]
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    explained = s ** 2 / (s ** 2).sum() if s.size and (s ** 2).sum() > 0 else np.zeros(2)
    scores = u * s
    if scores.shape[1] < 2:
        scores = np.column_stack([scores, np.zeros(len(scores))])
        explained = np.append(explained, 0.0)
    return scores[:, :2], explained[:2]


def _pca_figure(before, after, codes, batches):
    from matplotlib.figure import Figure

    k = len(batches)
    figure = Figure(figsize=(12, 5.6), layout="constrained")
    axes = figure.subplots(1, 2)
    for ax, values, stage in zip(axes, (before, after), ("before", "after")):
        scores, explained = _pca_scores(values)
        ax.scatter(scores[:, 0], scores[:, 1], c=[_colour(b) for b in codes], s=16, alpha=0.6, linewidths=0)
        for b in range(k):
            centre = scores[codes == b].mean(axis=0)
            ax.scatter(*centre, s=170, marker="X", color=_colour(b), edgecolors="black", linewidths=1.2, zorder=3)
        eta = [_eta_squared(scores[:, i], codes, k) for i in range(2)]
        ax.set_title(f"{stage} harmonisation\nbatch explains {100 * eta[0]:.0f}% of PC1, {100 * eta[1]:.0f}% of PC2",
                     fontsize=11)
        ax.set_xlabel(f"PC1 ({100 * explained[0]:.1f}% of variance)")
        ax.set_ylabel(f"PC2 ({100 * explained[1]:.1f}% of variance)")
        ax.axhline(0, color="0.85", linewidth=0.8, zorder=0)
        ax.axvline(0, color="0.85", linewidth=0.8, zorder=0)
    handles = [axes[0].scatter([], [], s=40, color=_colour(b)) for b in range(k)]
    counts = np.bincount(codes, minlength=k)
    figure.legend(handles, [f"{batches[b]} (n = {counts[b]})" for b in range(k)], loc="outside upper center",
                  ncols=min(k, 6), title="batch (X: batch centroid; PCA of z-scored features)", fontsize=9,
                  title_fontsize=9, frameon=False)
    return figure
