"""What every command of the CLI shares: one-line errors, the --device check and the common options."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from deepsmlm.errors import UserInputError

console = Console(stderr=True)


def print_error(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


class OneLineErrors(TyperGroup):
    """The command group whose usage errors (bad option values, missing options) are one line on stderr
    with exit code 2, like every other input error, instead of a multi-line panel."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as err:  # click's UsageError/BadParameter family
            ctx, message = getattr(err, "ctx", None), err.format_message()
            if message:  # empty when the help was printed instead (no arguments given)
                hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
                print_error(f"{message}{hint}")
            sys.exit(getattr(err, "exit_code", 2))
        except typer.Abort:
            print_error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def device_option(name: str) -> str:
    """--device: a torch device this machine has (checked before any work)."""
    from deepsmlm.resources import check_device

    try:
        check_device(name)
    except UserInputError as err:
        raise typer.BadParameter(str(err)) from None
    return name


def guard(fn, *args) -> None:
    """Run a command; a UserInputError becomes one red line on stderr and exit code 2."""
    try:
        fn(*args)
    except UserInputError as err:
        print_error(str(err))
        raise typer.Exit(2) from None


ConfigArg = typer.Argument(..., help="preset name (e.g. tetrapod_paper) or path to a YAML config")
DeviceOpt = typer.Option("cpu", "--device", callback=device_option, help="torch device: cpu or cuda")
StepsOpt = typer.Option(None, "--steps", min=1, help="total training steps (default: config)")
OverwriteOpt = typer.Option(False, "--overwrite", help="train anew over a model already in the folder")
MinutesOpt = typer.Option(None, "--minutes", help="train for this much wall time (minutes > 0)")
