"""Domain errors. Library code raises these; only the CLI edge turns them into one `Error:` line."""

from __future__ import annotations


class TfcliError(Exception):
    """A problem the user can fix. The message says what, where and how to fix it, in one line."""

    exit_code = 1


class RecipeError(TfcliError):
    """A recipe (or its overrides) is malformed. Carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[str], source: str = "recipe") -> None:
        self.problems = list(problems)
        self.source = source
        if len(self.problems) == 1:
            msg = f"{source}: {self.problems[0]}"
        else:
            listed = "; ".join(self.problems)
            msg = f"{source}: {len(self.problems)} problems: {listed}"
        super().__init__(msg)


class DataError(TfcliError):
    """Input text or encoded shards are missing, empty, misaligned or not valid UTF-8."""


class TokenizerError(TfcliError):
    """A tokenizer cannot be trained, loaded or does not match the data."""


class CheckpointError(TfcliError):
    """A checkpoint is missing, corrupt, or of the wrong kind for the command."""


class TrainingError(TfcliError):
    """Training cannot continue (diverged, out of memory, bad resume state)."""
