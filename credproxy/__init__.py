"""credproxy: a local authenticating proxy for package registries."""

__version__ = "0.1.0"
