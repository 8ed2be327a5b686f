"""Feature extraction with a disk cache that resumes."""
from deephash.features.extract import FeatureSet, embed_images, extract_features

__all__ = ["FeatureSet", "extract_features", "embed_images"]
