"""runwatch: the run groups' monitoring agent and collector."""

__version__ = "0.1.0"
