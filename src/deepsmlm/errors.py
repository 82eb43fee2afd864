"""The one exception type the CLI turns into a one-line message (no traceback)."""


class UserInputError(ValueError):
    """Bad input from the user: a file, a config key, a value. The message is one line naming it."""
