"""IBSI tags of pyradiomics features that share the IBSI definition.

pyradiomics computes texture matrices in 3D and averages features over the 13 directions
(``weightingNorm: None``), which is IBSI's ``*_3D_avg`` for GLCM / GLRLM and ``*_3D`` for the zone
families; its GLDM is IBSI's NGLDM with coarseness ``gldm_a``. Features whose pyradiomics
definition differs from IBSI's have no tag here (``Kurtosis`` is not excess kurtosis,
``TotalEnergy`` and ``StandardDeviation`` are not IBSI features, ``MCC`` is not in IBSI 1).
"""

_FIRSTORDER = {
    "Energy": "stat_energy", "Minimum": "stat_min", "10Percentile": "stat_p10", "90Percentile": "stat_p90",
    "Maximum": "stat_max", "Mean": "stat_mean", "Median": "stat_median", "InterquartileRange": "stat_iqr",
    "Range": "stat_range", "MeanAbsoluteDeviation": "stat_mad", "RobustMeanAbsoluteDeviation": "stat_rmad",
    "RootMeanSquared": "stat_rms", "Skewness": "stat_skew", "Variance": "stat_var",
    "Entropy": "ih_entropy", "Uniformity": "ih_uniformity",
}
_SHAPE = {
    "MeshVolume": "morph_volume", "VoxelVolume": "morph_vol_approx", "SurfaceArea": "morph_area_mesh",
    "SurfaceVolumeRatio": "morph_av", "Sphericity": "morph_sphericity", "Compactness1": "morph_comp_1",
    "Compactness2": "morph_comp_2", "SphericalDisproportion": "morph_sph_dispr", "Maximum3DDiameter": "morph_diam",
    "MajorAxisLength": "morph_pca_maj_axis", "MinorAxisLength": "morph_pca_min_axis",
    "LeastAxisLength": "morph_pca_least_axis", "Elongation": "morph_pca_elongation", "Flatness": "morph_pca_flatness",
}
_GLCM = {
    "Autocorrelation": "cm_auto_corr", "JointAverage": "cm_joint_avg", "ClusterProminence": "cm_clust_prom",
    "ClusterShade": "cm_clust_shade", "ClusterTendency": "cm_clust_tend", "Contrast": "cm_contrast",
    "Correlation": "cm_corr", "DifferenceAverage": "cm_diff_avg", "DifferenceEntropy": "cm_diff_entr",
    "DifferenceVariance": "cm_diff_var", "JointEnergy": "cm_energy", "JointEntropy": "cm_joint_entr",
    "Imc1": "cm_info_corr1", "Imc2": "cm_info_corr2", "Idm": "cm_inv_diff_mom", "Idmn": "cm_inv_diff_mom_norm",
    "Id": "cm_inv_diff", "Idn": "cm_inv_diff_norm", "InverseVariance": "cm_inv_var", "MaximumProbability": "cm_joint_max",
    "SumAverage": "cm_sum_avg", "SumEntropy": "cm_sum_entr", "SumSquares": "cm_joint_var",
}
_GLRLM = {
    "ShortRunEmphasis": "rlm_sre", "LongRunEmphasis": "rlm_lre", "GrayLevelNonUniformity": "rlm_glnu",
    "GrayLevelNonUniformityNormalized": "rlm_glnu_norm", "RunLengthNonUniformity": "rlm_rlnu",
    "RunLengthNonUniformityNormalized": "rlm_rlnu_norm", "RunPercentage": "rlm_r_perc", "GrayLevelVariance": "rlm_gl_var",
    "RunVariance": "rlm_rl_var", "RunEntropy": "rlm_rl_entr", "LowGrayLevelRunEmphasis": "rlm_lgre",
    "HighGrayLevelRunEmphasis": "rlm_hgre", "ShortRunLowGrayLevelEmphasis": "rlm_srlge",
    "ShortRunHighGrayLevelEmphasis": "rlm_srhge", "LongRunLowGrayLevelEmphasis": "rlm_lrlge",
    "LongRunHighGrayLevelEmphasis": "rlm_lrhge",
}
_GLSZM = {
    "SmallAreaEmphasis": "szm_sze", "LargeAreaEmphasis": "szm_lze", "GrayLevelNonUniformity": "szm_glnu",
    "GrayLevelNonUniformityNormalized": "szm_glnu_norm", "SizeZoneNonUniformity": "szm_zsnu",
    "SizeZoneNonUniformityNormalized": "szm_zsnu_norm", "ZonePercentage": "szm_z_perc", "GrayLevelVariance": "szm_gl_var",
    "ZoneVariance": "szm_zs_var", "ZoneEntropy": "szm_zs_entr", "LowGrayLevelZoneEmphasis": "szm_lgze",
    "HighGrayLevelZoneEmphasis": "szm_hgze", "SmallAreaLowGrayLevelEmphasis": "szm_szlge",
    "SmallAreaHighGrayLevelEmphasis": "szm_szhge", "LargeAreaLowGrayLevelEmphasis": "szm_lzlge",
    "LargeAreaHighGrayLevelEmphasis": "szm_lzhge",
}
_GLDM = {
    "SmallDependenceEmphasis": "ngl_lde", "LargeDependenceEmphasis": "ngl_hde", "GrayLevelNonUniformity": "ngl_glnu",
    "DependenceNonUniformity": "ngl_dcnu", "DependenceNonUniformityNormalized": "ngl_dcnu_norm",
    "GrayLevelVariance": "ngl_gl_var", "DependenceVariance": "ngl_dc_var", "DependenceEntropy": "ngl_dc_entr",
    "LowGrayLevelEmphasis": "ngl_lgce", "HighGrayLevelEmphasis": "ngl_hgce",
    "SmallDependenceLowGrayLevelEmphasis": "ngl_ldlge", "SmallDependenceHighGrayLevelEmphasis": "ngl_ldhge",
    "LargeDependenceLowGrayLevelEmphasis": "ngl_hdlge", "LargeDependenceHighGrayLevelEmphasis": "ngl_hdhge",
}
_NGTDM = {"Coarseness": "ngt_coarseness", "Contrast": "ngt_contrast", "Busyness": "ngt_busyness",
          "Complexity": "ngt_complexity", "Strength": "ngt_strength"}

#: pyradiomics class -> (feature -> IBSI tag, aggregation suffix of pyradiomics' default computation)
_CLASSES = {"firstorder": (_FIRSTORDER, ""), "shape": (_SHAPE, ""), "glcm": (_GLCM, "_3D_avg"),
            "glrlm": (_GLRLM, "_3D_avg"), "glszm": (_GLSZM, "_3D"), "gldm": (_GLDM, "_3D"), "ngtdm": (_NGTDM, "_3D")}

PYRADIOMICS_TO_IBSI = {f"original_{cls}_{name}": tag + suffix
                       for cls, (table, suffix) in _CLASSES.items() for name, tag in table.items()}
IBSI_TO_PYRADIOMICS = {tag: name for name, tag in PYRADIOMICS_TO_IBSI.items()}


def ibsi_tag_of_pyradiomics(name: str) -> str:
    """``original_glcm_Contrast`` -> ``cm_contrast_3D_avg``; empty when IBSI has no identical definition."""
    return PYRADIOMICS_TO_IBSI.get(name, "")


def pyradiomics_name_of_ibsi(tag: str) -> str:
    """``cm_contrast_3D_avg`` -> ``original_glcm_Contrast``; empty when pyradiomics has no such feature."""
    return IBSI_TO_PYRADIOMICS.get(tag, "")
