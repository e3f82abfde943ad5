"""The errors that cross into the CLI, in a module light enough for every command to import."""


class ConfigError(Exception):
    """One or more problems with the configuration; `problems` holds one line each."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class StoreError(Exception):
    """The database cannot be opened, read or written; the message is one line naming the file."""
