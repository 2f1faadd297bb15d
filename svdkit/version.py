"""svdkit's version, in one place: `svdkit.__version__`, and the one every `Video`'s record names."""

__version__ = "0.1.0"
