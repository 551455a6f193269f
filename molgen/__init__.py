"""scoregen.molgen."""

__version__ = "0.1.0"
