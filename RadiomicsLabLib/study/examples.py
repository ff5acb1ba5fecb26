"""Example study tables from real public data shipped by Python packages, for the README's worked example,
the GUIs' "try it" buttons and the tests.

- :func:`write_breast_cancer_example`: scikit-learn's breast cancer Wisconsin (diagnostic) table (Street,
  Wolberg & Mangasarian 1993; UCI): 569 patients, 30 real features measured on digitised images of fine-needle
  aspirates (radius, texture, ..., each as mean, standard error and worst), outcome malignant (212) vs benign
  (357). 'mean radius' goes to the clinical table as a clinical covariate (a tumour size); the other 29 are the
  "radiomic" features. The table comes from one site, so three imaging sites are MADE here
  (:func:`site_effects`, documented and seeded) to give ComBat something to remove; every 5th patient is in the
  test split.
- :func:`write_gbsg2_example`: scikit-survival's GBSG2 (German Breast Cancer Study Group 2; Schumacher et al.
  1994): 686 patients, recurrence-free survival (days) and recurrence; its numeric variables (age, tumour size,
  positive nodes, progesterone and oestrogen receptors) as features, menopausal status as covariate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..results import csv_text


def site_effects(x0, malignant):
    """Three imaging sites with ComBat-model batch effects made from real features: a patient goes to site A/B/C
    with probabilities (0.20, 0.30, 0.50) if malignant, (0.45, 0.35, 0.20) if benign; feature v becomes
    mu_dv + a_sv + b_sv (x_v - mu_dv) with a_sv = SD_v N(m_s, 0.25), m = (0, 0.8, -0.5), and
    b_sv = exp(N(log l_s, 0.1)), l = (1, 1.5, 0.7); mu_dv the real mean of v over diagnosis d. Seed 2007.
    Returns (site per patient 0/1/2, the features with the site effects)."""
    rng = np.random.default_rng(2007)
    probabilities = np.where(malignant[:, None], [0.20, 0.30, 0.50], [0.45, 0.35, 0.20])
    site = np.array([rng.choice(3, p=p) for p in probabilities])
    sd = x0.std(axis=0)
    shift = sd * rng.normal(np.array([0.0, 0.8, -0.5])[:, None], 0.25, (3, x0.shape[1]))
    scale = np.exp(rng.normal(np.log([1.0, 1.5, 0.7])[:, None], 0.1, (3, x0.shape[1])))
    class_mean = np.where(malignant[:, None], x0[malignant].mean(axis=0), x0[~malignant].mean(axis=0))
    return site, class_mean + shift[site] + scale[site] * (x0 - class_mean)


def write_tables(tables: dict) -> dict:
    """Write ``{path: text}`` (atomically), after checking that no existing file would be replaced by other
    content (an edited copy of an example is the user's: one line naming it, nothing written); an existing
    identical file is left as it is. Returns the paths."""
    from ..errors import RadiomicsLabError
    from ..fileio import write_text_atomic

    for path, text in tables.items():
        if path.exists() and (not path.is_file() or path.read_text(encoding="utf-8", errors="replace") != text):
            raise RadiomicsLabError(f"'{path}' exists and is not this example's table; move it away or write the "
                                    "examples into another folder (-o).")
    for path, text in tables.items():
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, text)
    return list(tables)


def breast_cancer_tables(folder) -> dict:
    """{path: text} of the breast cancer example's features.csv and clinical.csv in ``folder``."""
    from sklearn.datasets import load_breast_cancer

    folder = Path(folder)
    bunch = load_breast_cancer()
    malignant = bunch.target == 0
    site, values = site_effects(bunch.data, malignant)
    ids = [f"P{i + 1:04d}" for i in range(len(site))]
    names = [str(n) for n in bunch.feature_names]
    features = csv_text(["id", *names[1:]], [[i, *map(repr, row[1:].tolist())] for i, row in zip(ids, values)])
    clinical = csv_text(["id", "diagnosis", "site", "mean radius", "split"],
                         [[i, "malignant" if m else "benign", "ABC"[s], repr(float(r)), "test" if k % 5 == 4 else "train"]
                          for k, (i, m, s, r) in enumerate(zip(ids, malignant, site, bunch.data[:, 0]))])
    return {folder / "features.csv": features, folder / "clinical.csv": clinical}


def gbsg2_tables(folder) -> dict:
    """{path: text} of the GBSG2 example's features.csv and clinical.csv in ``folder``."""
    from sksurv.datasets import load_gbsg2

    folder = Path(folder)
    X, y = load_gbsg2()
    ids = [f"G{i + 1:04d}" for i in range(len(y))]
    columns = ["age", "tsize", "pnodes", "progrec", "estrec"]
    features = csv_text(["id", *columns], [[i, *(repr(float(X[c].iloc[k])) for c in columns)] for k, i in enumerate(ids)])
    clinical = csv_text(["id", "days", "recurrence", "postmenopausal"],
                         [[i, repr(float(y["time"][k])), int(y["cens"][k]), int(X["menostat"].iloc[k] == "Post")]
                          for k, i in enumerate(ids)])
    return {folder / "features.csv": features, folder / "clinical.csv": clinical}


def write_breast_cancer_example(folder) -> dict:
    """features.csv (id + 29 features, with the made sites' effects) and clinical.csv (id, diagnosis
    malignant/benign, site A/B/C, mean radius, split train/test) in ``folder``; returns {name: path}."""
    features, clinical = write_tables(breast_cancer_tables(folder))
    return {"features": features, "clinical": clinical}


def write_gbsg2_example(folder) -> dict:
    """features.csv (id, age, tsize, pnodes, progrec, estrec) and clinical.csv (id, days, recurrence 0/1,
    postmenopausal 0/1) of GBSG2 in ``folder``; returns {name: path}."""
    features, clinical = write_tables(gbsg2_tables(folder))
    return {"features": features, "clinical": clinical}
