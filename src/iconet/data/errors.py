"""Errors of the data layer: one line that names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Input data cannot be used. ``str(err)`` is ``"<path>: <problem>"`` on one line."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = " ".join(problem.split())
        super().__init__(f"{self.path}: {self.problem}" if self.path is not None else self.problem)
