"""The package version (its own module, so lower layers can name it without importing the api)."""

__version__ = "0.1.0"
