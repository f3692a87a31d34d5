"""seg4seg: find the subgroups of cases where a trained segmentation model fails systematically."""

__version__ = "0.1.0"
