"""atlasgen: an offline generator of feature-visualisation atlases for convolutional networks."""

__version__ = "0.1.0"
