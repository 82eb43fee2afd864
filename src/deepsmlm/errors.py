"""The one exception type the CLI turns into a one-line message (no traceback)."""


class UserInputError(ValueError):
    """Bad input from the user: a file, a config key, a value. The message is one line naming it."""


def check_positive(value: float | None, option: str) -> None:
    """A finite, positive number (None: not given); otherwise a one-line UserInputError naming ``option``."""
    if value is not None and not (value > 0 and value != float("inf")):
        raise UserInputError(f"{option} {value:g}: must be a finite positive number")
