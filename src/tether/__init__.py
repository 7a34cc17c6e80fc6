"""tether: a self-hosted AI coding assistant over a local model."""

__version__ = "0.1.0"

__all__ = ["__version__"]
