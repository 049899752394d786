"""``iconet`` command line: a thin layer that parses arguments and calls the library.

Each sub-command lives in its own module of this package exposing ``add_parser(subparsers)``
and ``run(args) -> int``. Errors that the user can fix (bad file, bad config) are printed as
one line ``iconet: error: ...`` with exit status 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings

from iconet.config import ConfigError

_python_showwarning = warnings.showwarning

#: sub-command name → module (imported lazily so optional dependencies stay off the start-up path)
COMMANDS = {
    "model": "iconet.cli.model",
    "data": "iconet.cli.data",
    "train": "iconet.cli.train",
    "export": "iconet.cli.export",
    "infer": "iconet.cli.infer",
    "demo": "iconet.cli.demo",
    "eval": "iconet.cli.eval",
    "ablate": "iconet.cli.ablate",
}


class UserError(Exception):
    """An error caused by the user's input; printed as one line, exit status 2."""


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """The ``--quiet`` option of a command that shows progress bars (:mod:`iconet.progress`)."""
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bar (none is shown in a pipe or log file either)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iconet", description="Medical image super-resolution with ICONet and its peers."
    )
    from iconet import __version__

    parser.add_argument("--version", action="version", version=f"iconet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub)
    _plain_help(parser)
    return parser


#: reStructuredText marks of the docstrings that serve as descriptions: ``code``, :role:`target`
_RST_CODE = re.compile(r"``(.+?)``", re.S)
_RST_ROLE = re.compile(r":[a-z]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")


def plain_text(text: str) -> str:
    """``text`` with its reStructuredText marks rendered plainly for a terminal: code between
    double back-quotes loses the quotes, a role keeps its target (``:func:`a.b``` gives a.b, the
    ``~`` form only the last name)."""

    def role(m: re.Match[str]) -> str:
        target = m.group(1)
        return target.rsplit(".", 1)[-1] if m.group(0).count("~") else target

    return _RST_CODE.sub(r"\1", _RST_ROLE.sub(role, text))


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Render the descriptions and option help of ``parser`` and its sub-commands plainly
    (the sub-commands' descriptions are their module docstrings, written in reStructuredText)."""
    if parser.description:
        parser.description = plain_text(parser.description)
    for action in parser._actions:
        if action.help:
            action.help = plain_text(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain_text(choice.help) if choice.help else choice.help
            for sub in dict.fromkeys(action.choices.values()):
                _plain_help(sub)


def _show_notes(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
    """``warnings.showwarning`` for the command line: iconet's data notes
    (:class:`iconet.data.io.DataNote`) as one ``note: ...`` line, other warnings as Python shows them."""
    from iconet.data.io import DataNote

    if issubclass(category, DataNote):
        print(f"note: {message}", file=sys.stderr if file is None else file)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():  # restores warnings.showwarning after the command
            warnings.showwarning = _show_notes
            return int(args.func(args) or 0)
    except (UserError, ConfigError, FileNotFoundError, FileExistsError, ValueError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"iconet: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        return 0
    except KeyboardInterrupt:
        print("iconet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
