"""phototag: tags photos with a CNN and writes keywords other programs read."""

__version__ = "0.1.0"
