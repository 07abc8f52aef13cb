"""The command line of ``python -m modnet_jax.train`` around absl / ml_collections flags.

absl parses the flags and ``config_flags`` applies ``--config.FIELD=VALUE`` overrides; this
module checks everything a user can get wrong first, so each mistake ends in one line
(``error: ...``, exit status 2) instead of a flag-library traceback:

* ``--config NAME[:VARIANT]`` finds a config shipped with the package (``supervised:quick``)
  from any folder; a path (``configs/supervised.py:quick``) works as before;
* an unknown variant or a config file that fails to load, and a mistyped ``--config.FIELD``
  (named with the closest real field);
* dashes and underscores are both accepted in flag names (``--num-processes``,
  ``--config.data.bg-root``); ``--no-distributed`` is absl's ``--nodistributed``;
* ``--help`` prints the command's description with its examples and exits 0; ``--version``.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
import textwrap
from typing import Iterable, List, Optional

from modnet_jax import __version__
from modnet_jax.cliutil import folder_problem
from modnet_jax.configs import NAMES, config_path

CONFIG_FLAG = "config"


class UsageError(Exception):
    """A user mistake on the command line: printed as one ``error:`` line, exit status 2."""


def fail(message: str, status: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def normalise_argv(argv: List[str], flag_names: Iterable[str]) -> List[str]:
    """``argv`` with flag names spelled as absl defines them: ``--num-processes`` ->
    ``--num_processes``, ``--config.data.bg-root=x`` -> ``--config.data.bg_root=x``,
    ``--no-distributed`` -> ``--nodistributed``. Values and positional arguments are kept."""
    known = set(flag_names)
    out = list(argv[:1])
    for arg in argv[1:]:
        if arg == "--":
            out.extend(argv[len(out):])
            break
        if not arg.startswith("--") or "-" not in arg[2:].partition("=")[0]:
            out.append(arg)
            continue
        name, eq, value = arg[2:].partition("=")
        under = name.replace("-", "_")
        if under.startswith(CONFIG_FLAG + "."):
            name = under
        elif under in known:
            name = under
        elif under.startswith("no_") and under[3:] in known:
            name = "no" + under[3:]
        out.append(f"--{name}{eq}{value}")
    return out


def config_spec(argv: List[str]) -> Optional[str]:
    """The value of ``--config`` in ``argv`` (None if absent)."""
    for i, arg in enumerate(argv):
        if arg == f"--{CONFIG_FLAG}":
            return argv[i + 1] if i + 1 < len(argv) else None
        if arg.startswith(f"--{CONFIG_FLAG}="):
            return arg.split("=", 1)[1]
    return None


def _replace_config_spec(argv: List[str], spec: str) -> List[str]:
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == f"--{CONFIG_FLAG}" and i + 1 < len(out):
            out[i + 1] = spec
        elif arg.startswith(f"--{CONFIG_FLAG}="):
            out[i] = f"--{CONFIG_FLAG}={spec}"
    return out


def resolve_config_spec(spec: str) -> str:
    """``path[:variant]`` for a config file or a shipped config name (``supervised:quick``)."""
    path, colon, variant = spec.partition(":")
    if os.path.isfile(path):
        return spec
    shipped = config_path(path) if os.sep not in path else None
    if shipped is not None:
        return shipped + colon + variant
    stem = os.path.splitext(os.path.basename(path))[0]
    if config_path(stem) is not None:  # configs/supervised.py outside a clone
        raise UsageError(f"--config {spec}: no file {path!r} here; the shipped config of that "
                         f"name is --config {stem}{colon}{variant}")
    raise UsageError(f"--config {spec}: no config file {path!r}; give a config file "
                     f"(configs/supervised.py:quick) or a shipped config: {', '.join(NAMES)}")


def load_config(spec: str):
    """The ConfigDict of a resolved ``path[:variant]`` (UsageError on failure, one line)."""
    path, _, variant = spec.partition(":")
    try:
        module_spec = importlib.util.spec_from_file_location("_modnet_config", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - any failure of the user's file is reported
        raise UsageError(f"--config {path}: cannot load it ({type(err).__name__}: {err})") from err
    get_config = getattr(module, "get_config", None)
    if get_config is None:
        raise UsageError(f"--config {path}: the file has no get_config() function")
    try:
        return get_config(variant) if variant else get_config()
    except TypeError as err:
        raise UsageError(f"--config {spec}: {err}") from err
    except ValueError as err:
        raise UsageError(str(err)) from err


def field_paths(config, prefix: str = "") -> List[str]:
    """Every dotted field name of a (nested) ConfigDict."""
    paths = []
    for key, value in config.items():
        paths.append(prefix + key)
        if hasattr(value, "items") and hasattr(value, "lock"):
            paths.extend(field_paths(value, prefix + key + "."))
    return paths


def check_overrides(config, argv: List[str]) -> None:
    """UsageError naming the closest real field for each ``--config.FIELD`` not in ``config``."""
    paths = field_paths(config)
    for arg in argv[1:]:
        if not arg.startswith(f"--{CONFIG_FLAG}."):
            continue
        field = arg[len(CONFIG_FLAG) + 3:].partition("=")[0]
        if field in paths:
            continue
        close = difflib.get_close_matches(field, paths, n=1, cutoff=0.6)
        hint = f"; did you mean --config.{close[0]}?" if close else \
            " (see modnet_jax/training/config.py for every field)"
        raise UsageError(f"--config.{field}: no such config field{hint}")


def check_workdir(path: str) -> str:
    """The absolute workdir; UsageError if it is a file or cannot be created or written."""
    path, problem = folder_problem(path)
    if problem:
        raise UsageError(f"--workdir {path}: {problem}")
    return path


def help_text(doc: str, flag_objects) -> str:
    """The command's docstring (line breaks kept) and its flags, one per line with their
    defaults, ``--config`` marked required."""
    rows = []
    for flag in flag_objects:
        name = flag.name
        spelled = f"--{name.replace('_', '-')}"
        required = " (required)" if name == CONFIG_FLAG else ""
        default = "" if flag.default in (None, False) or name == CONFIG_FLAG else \
            f" (default: {flag.default})"
        rows.append((spelled, f"{flag.help}{required}{default}"))
    rows += [("--config.FIELD=VALUE", "override a config field, e.g. --config.batch_size=8"),
             ("--version", "print the version"), ("--helpfull", "absl's full flag list")]
    lines = [doc.strip(), "", "flags (dashes or underscores):"]
    for spelled, text in rows:
        lines.extend(textwrap.wrap(text, 96, initial_indent=f"  {spelled:<22}",
                                   subsequent_indent=" " * 24))
    return "\n".join(lines)


def preparse(argv: List[str], doc: str, flag_values, own_flags) -> List[str]:
    """Everything before absl parses ``argv``: --help / --version (exit 0), flag spellings,
    the config (found, loaded, overrides checked). Returns the argv absl should parse."""
    if any(a in ("-h", "--help", "-help", "--helpshort") for a in argv[1:]):
        print(help_text(doc, own_flags))
        sys.exit(0)
    if "--version" in argv[1:]:
        print(f"modnet_jax {__version__}")
        sys.exit(0)
    argv = normalise_argv(argv, list(flag_values))
    spec = config_spec(argv)
    if spec is None:
        raise UsageError("--config is required, e.g. --config supervised:quick "
                         "(python -m modnet_jax.train --help)")
    resolved = resolve_config_spec(spec)
    check_overrides(load_config(resolved), argv)
    return _replace_config_spec(argv, resolved)
