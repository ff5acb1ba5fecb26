"""RadiomicsLab's own IBSI engine (core layer: numpy / scipy / SimpleITK, compiled kernels where needed).

Layout (one module per concern):

- ``roi``             :class:`~RadiomicsLabLib.ibsi.roi.Roi`, the preprocessed region every family works on
- ``config``          :class:`~RadiomicsLabLib.ibsi.config.IbsiSettings`, every setting of the engine
- ``discretisation``  fixed bin number / fixed bin size (IBSI 1, section 2.7)
- ``preprocessing``   resampling with IBSI grid alignment, interpolation, rounding, re-segmentation -> Roi
- ``features/<family>.py``  one module per IBSI feature family, each with ``compute(roi, settings) -> {tag: value}``;
  ``features/common.py`` holds what they share (registry, Undefined -> NaN + note, matrix aggregation)
- ``filters``         IBSI chapter 2 convolutional filters
- ``reference``       the IBSI reference tables in ../shared/data
- ``engine``          preprocessing + families for one image and mask, keyed by IBSI tag
- ``params``          parameter files for the engine (``ibsi:`` section, or pyradiomics keys mapped)
- ``configurations``  IBSI 1 configurations A-E (from the shipped presets)
- ``names``           pyradiomics name <-> IBSI tag
- ``compliance``      ``radiomicslab ibsi``: every IBSI reference value, one report

Conventions: arrays are indexed (z, y, x) as ``SimpleITK.GetArrayFromImage`` gives them; spacings
in this package are (z, y, x) in mm; output keys are the IBSI tags of the reference tables
(``cm_joint_max_2D_avg``); an undefined feature is ``nan`` (the reason goes to the engine's notes),
never an exception.
"""
