"""Radiomics study: harmonisation, feature selection, models, validation and report (scikit-learn style, core layer)."""
