"""Conventions shared by the argparse commands (predict, evaluate, prepare, conversions).

* Flag names take dashes or underscores: ``--max_short_side`` is ``--max-short-side``
  (``dashed`` rewrites the names, never the values, before argparse sees them; ``train``,
  which uses absl flags, accepts both spellings too).
* ``--version`` prints ``modnet_jax <version>``.
* Exit status: 0 when every input was used; 1 when the run finished but skipped some inputs
  (each reported on its own ``error:`` line, then one line listing them) or failed on its
  data; 2 when it could not run at all (a usage mistake, a missing checkpoint or dataset:
  one ``error:`` line). The conversions (``interop/torch_io.run_cli``) use 1 for every
  failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Tuple

from modnet_jax import __version__

EXIT_SKIPPED = 1
EXIT_USAGE = 2


def dashed(argv: Optional[List[str]]) -> List[str]:
    """``argv`` (default ``sys.argv[1:]``) with ``--a_b[=v]`` flag names spelled ``--a-b``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        if arg.startswith("--") and "_" in arg.partition("=")[0]:
            name, eq, value = arg.partition("=")
            arg = name.replace("_", "-") + eq + value
        out.append(arg)
    return out


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; each option's help ends with its default (when it
    has one worth showing and the text does not already say it); 100 columns, so that most
    options take one line."""

    def __init__(self, prog, indent_increment=2, max_help_position=28, width=None):
        super().__init__(prog, indent_increment, max_help_position, width or 100)

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default is None or default is argparse.SUPPRESS or isinstance(default, bool)
                or "default" in text or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage mistakes are one ``error:`` line (exit status 2), not
    the usage block followed by the message."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {message} ({self.prog} --help)\n")


def command_parser(module: str, description: str, usage: Optional[str] = None,
                   epilog: str = "") -> argparse.ArgumentParser:
    """The parser of ``python -m <module>``: a short usage line, a short description (usage
    examples; long explanations live in docs/), defaults shown, ``--version``, one-line
    errors. Options go in groups (``parser.add_argument_group``) so ``--help`` reads in
    sections."""
    prog = f"python -m {module}"
    return add_version(CommandParser(
        prog=prog, usage=usage and f"{prog} {usage}", description=description, epilog=epilog,
        formatter_class=HelpFormatter))


def add_version(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--version", action="version", version=f"modnet_jax {__version__}")
    return parser


def folder_problem(path: str) -> Tuple[str, Optional[str]]:
    """(absolute ``path``, what stops it from being a writable folder, or None), without
    creating anything: it is a file, a parent on the way is a file, or the nearest existing
    parent is not writable. Each command phrases the answer as its own one-line error."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and not os.path.isdir(path):
        return path, "exists and is not a folder"
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return path, f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return path, f"{existing} is not writable"
    return path, None
