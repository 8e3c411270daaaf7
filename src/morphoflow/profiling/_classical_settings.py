"""The settings and the feature lists of the classical feature sets, in one place.

Private module of :mod:`morphoflow.profiling.classical` (which documents every feature).
Every setting is CellProfiler 4's module default unless its comment says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Version of the classical feature definitions; recorded with every table as
#: ``Metadata_FeatureSet = "<FEATURE_SET_VERSION>:<set>"``. Bump it whenever a definition or a
#: setting below changes (1 = morphoflow's own crop-based definitions before issue 15).
FEATURE_SET_VERSION = "cp4-v2"

#: The feature sets (``features.set``).
FEATURE_SETS: tuple[str, ...] = ("default", "extended")

#: Compartments (CellProfiler object names).
COMPARTMENTS: tuple[str, ...] = ("Nuclei", "Cells", "Cytoplasm")


@dataclass(frozen=True)
class CellProfilerSettings:
    """Module settings of the CellProfiler measurements (CellProfiler 4 names).

    Attributes:
        texture_scale: MeasureTexture "Texture scale to measure" (pixels).
        texture_gray_levels: MeasureTexture "Enter how many gray levels to measure".
        granularity_subsample: MeasureGranularity "Subsampling factor for granularity".
        granularity_background_subsample: "Subsampling factor for background reduction".
        granularity_element_size: "Radius of structuring element" (after subsampling).
        granularity_spectrum_length: "Range of the granular spectrum" (extended set; the
            default set keeps the first :attr:`granularity_default_length` values, which are
            identical: each spectrum value depends only on the smaller scales).
        granularity_default_length: Spectrum values of the default set (morphoflow's choice).
        radial_bins: MeasureObjectIntensityDistribution "Number of bins".
        radial_maximum_radius: "Maximum radius" (unused with scaled bins, CellProfiler's
            default "Scale the bins? Yes").
        correlation_threshold: MeasureColocalization "Set threshold as percentage of maximum
            intensity for the images" (Manders, RWC), percent.
        zernike_degree: MeasureObjectSizeShape Zernike moments up to this degree (9).
    """

    texture_scale: int = 3
    texture_gray_levels: int = 256
    granularity_subsample: float = 0.25
    granularity_background_subsample: float = 0.25
    granularity_element_size: int = 10
    granularity_spectrum_length: int = 16
    granularity_default_length: int = 3
    radial_bins: int = 4
    radial_maximum_radius: int = 100
    correlation_threshold: int = 15
    zernike_degree: int = 9


#: The one settings object the classical extractor uses.
SETTINGS = CellProfilerSettings()

# ---------------------------------------------------------------------------------------------
# Feature lists (CellProfiler measurement names without compartment and channel)
# ---------------------------------------------------------------------------------------------

#: MeasureObjectSizeShape features of the default set (per object; no position features).
SHAPE_DEFAULT: tuple[str, ...] = (
    "Area",
    "Perimeter",
    "FormFactor",
    "Compactness",
    "Eccentricity",
    "Solidity",
    "Extent",
    "MajorAxisLength",
    "MinorAxisLength",
    "EquivalentDiameter",
    "ConvexArea",
    "BoundingBoxArea",
    "EulerNumber",
    "MaximumRadius",
    "MeanRadius",
    "MedianRadius",
    "MinFeretDiameter",
    "MaxFeretDiameter",
    *(f"HuMoment_{k}" for k in range(7)),
)

#: Position features of MeasureObjectSizeShape, never reported (they locate, not describe).
SHAPE_POSITIONAL_PREFIXES: tuple[str, ...] = (
    "Center_",
    "BoundingBoxMinimum_",
    "BoundingBoxMaximum_",
)

#: MeasureObjectIntensity features of the default set (per compartment and channel).
INTENSITY_DEFAULT: tuple[str, ...] = (
    "IntegratedIntensity",
    "MeanIntensity",
    "StdIntensity",
    "MinIntensity",
    "MaxIntensity",
    "LowerQuartileIntensity",
    "MedianIntensity",
    "UpperQuartileIntensity",
    "MADIntensity",
    "MassDisplacement",
)

#: MeasureObjectIntensity edge features (extended set).
INTENSITY_EDGE: tuple[str, ...] = (
    "IntegratedIntensityEdge",
    "MeanIntensityEdge",
    "StdIntensityEdge",
    "MinIntensityEdge",
    "MaxIntensityEdge",
)

#: MeasureTexture Haralick features, in CellProfiler's order.
TEXTURE_ALL: tuple[str, ...] = (
    "AngularSecondMoment",
    "Contrast",
    "Correlation",
    "Variance",
    "InverseDifferenceMoment",
    "SumAverage",
    "SumVariance",
    "SumEntropy",
    "Entropy",
    "DifferenceVariance",
    "DifferenceEntropy",
    "InfoMeas1",
    "InfoMeas2",
)

#: Haralick features of the default set (direction 00 only: horizontal pairs).
TEXTURE_DEFAULT: tuple[str, ...] = (
    "AngularSecondMoment",
    "Contrast",
    "Correlation",
    "InverseDifferenceMoment",
    "Entropy",
)

#: MeasureObjectIntensityDistribution features.
RADIAL_DEFAULT: tuple[str, ...] = ("FracAtD", "MeanFrac")
RADIAL_ALL: tuple[str, ...] = ("FracAtD", "MeanFrac", "RadialCV")

#: Which compartments each group measures, per set.
GROUP_COMPARTMENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "default": {
        "AreaShape": ("Nuclei", "Cells"),
        "Intensity": COMPARTMENTS,
        "Correlation": ("Cells",),
        "Granularity": ("Cells",),
        "RadialDistribution": ("Cells",),
        "Texture": ("Nuclei", "Cytoplasm"),
    },
    "extended": {
        "AreaShape": COMPARTMENTS,
        "Intensity": COMPARTMENTS,
        "Correlation": COMPARTMENTS,
        "Granularity": COMPARTMENTS,
        "RadialDistribution": ("Nuclei", "Cells"),
        "Texture": COMPARTMENTS,
    },
}
