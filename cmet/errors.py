"""User-facing failures and warnings.

Everything that a person can fix (a bad file, a missing download) is raised as one of these, with
a sentence that names the file and what to do. The CLI prints the sentence and exits non-zero; the
app turns it into ``gr.Error``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class CmetError(Exception):
    """Base for failures whose message is meant for the person running cmet."""


class InputError(CmetError, ValueError):
    """Bad user input: the message says which file and what to do about it."""


class MissingWeightsError(CmetError, FileNotFoundError):
    """A weight file is not present locally; says which, where to put it and how to get it."""

    def __init__(self, file: str, where: str | Path, command: str = "python -m cmet download", detail: str = ""):
        self.file = file
        self.where = str(where)
        self.command = command
        message = f"Missing weights: {file}. Put it in {self.where} or run `{command}`."
        if detail:
            message = f"{message} {detail}"
        super().__init__(message)


class CmetWarning(UserWarning):
    """Something worth telling the user that does not stop the edit (few clips, several faces)."""
