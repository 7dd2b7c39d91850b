"""kdbench engine: spec → plan → shared artifacts → trials → result rows → report."""
__version__ = "0.1.0"
