"""The ``autoopt`` command: run a study file, look at stored studies, list what is registered.

``main`` is what the ``autoopt`` script calls (``pyproject.toml``); it imports nothing heavy until a
command needs it.
"""

from .command import main

__all__ = ["main"]
