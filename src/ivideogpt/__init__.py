"""ivideogpt: interactive video world models (iVideoGPT)."""

__version__ = "0.1.0"
