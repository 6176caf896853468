"""Settings from a TOML file and ``FOS_*`` environment variables, for every CLI flag.

Precedence: command-line flags > environment > file > built-in defaults. Both sources use
the flags' own names: ``data-dir = "/var/lib/fos"`` (``data_dir`` works too) in the file,
``FOS_COORDINATOR_DATA_DIR`` / ``FOS_AGENT_DATA_DIR`` in the environment (one prefix per
program, so a host that runs both, or fosctl's ``FOS_TLS_*``, never cross over).

How: every value is validated alone through its flag's own type (so an error names the
key and where it came from: one line, exit 2), then turned back into flag tokens placed
*before* the real command line; argparse keeps the last occurrence, so real flags win.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

EXIT_BAD_CONFIG = 2
SKIP = {"help", "version", "config"}  # never taken from a file or the environment


class ConfigError(Exception):
    """A bad setting; the message names the key and its source."""


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit 2 (no usage dump, no traceback)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """dest -> action, for every optional flag that settings may set."""
    out = {}
    for action in parser._actions:
        if action.option_strings and action.dest not in SKIP and action.dest != "help":
            out[action.dest] = action
    return out


def _tokens(action: argparse.Action, value: Any, where: str) -> list[str]:
    flag = max(action.option_strings, key=len)
    if action.nargs == 0:  # store_true / store_false
        if not isinstance(value, bool):
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                value = True
            elif isinstance(value, str) and value.lower() in ("0", "false", "no", "off", ""):
                value = False
            else:
                raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return [flag] if value == isinstance(action, argparse._StoreTrueAction) else []
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, bool):
        raise ConfigError(f"{where}: expected a value, got {value!r}")
    elif isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a value, got a table")
    text = str(value)
    if action.type is not None and callable(action.type):
        try:
            action.type(text)  # type: ignore[misc]
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc or 'invalid value ' + repr(text)}") from None
    if action.choices is not None and text not in action.choices:
        raise ConfigError(f"{where}: {text!r} is not one of {', '.join(action.choices)}")
    return [flag, text]


def file_settings(parser: argparse.ArgumentParser, path: Path) -> list[str]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path}: not TOML: {exc}") from None
    options = _options(parser)
    tokens: list[str] = []
    for key, value in data.items():
        action = options.get(key.replace("-", "_"))
        if action is None:
            raise ConfigError(f"config {path}: unknown key {key!r}")
        tokens += _tokens(action, value, f"config {path}: key {key!r}")
    return tokens


def env_settings(parser: argparse.ArgumentParser, prefix: str,
                 environ: Mapping[str, str]) -> list[str]:
    options = _options(parser)
    tokens: list[str] = []
    for name in sorted(environ):
        if not name.startswith(prefix) or name == prefix + "CONFIG":
            continue
        action = options.get(name[len(prefix):].lower())
        if action is None:
            raise ConfigError(f"environment: unknown variable {name}")
        tokens += _tokens(action, environ[name], f"environment: {name}")
    return tokens


def with_settings(parser: argparse.ArgumentParser, argv: Sequence[str] | None, prefix: str,
                  *, config_flag: bool = False,
                  environ: Mapping[str, str] | None = None) -> list[str]:
    """The command line with file and environment settings put in front of ``argv``.
    ``config_flag``: honour ``--config FILE`` (or ``<prefix>CONFIG``). Raises ConfigError."""
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    tokens: list[str] = []
    if config_flag:
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--config", type=Path, default=environ.get(prefix + "CONFIG"))
        known, _ = pre.parse_known_args(argv)
        if known.config:
            tokens += file_settings(parser, Path(known.config))
    tokens += env_settings(parser, prefix, environ)
    return [*tokens, *argv]


def add_config_argument(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="FILE",
        help=f"TOML file of settings named like the flags (env {prefix}CONFIG); "
             f"flags > {prefix}* environment > file")


def enable_completion(parser: argparse.ArgumentParser) -> None:
    """Shell completion when argcomplete is installed (pip install 'factoryos[completion]');
    without it, nothing happens. Activate with ``eval "$(register-python-argcomplete
    fos-coordinator)"``."""
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)
