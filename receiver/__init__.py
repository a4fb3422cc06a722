"""autoheal: turn alerts and job exceptions into guarded, recorded repairs."""

__version__ = "0.1.0"
