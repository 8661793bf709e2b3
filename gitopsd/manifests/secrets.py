"""Which rendered values are secret, and their registration with :mod:`gitopsd.redact`.

Render registers three kinds of value, so every output masks them from then on:

- the values of an app's ``secret_vars`` and ``vars_from_env`` (read here, at
  render time, from the environment);
- whatever the backend's :class:`~gitopsd.manifests.schema.Schema` finds in the
  rendered resources (ECS: ``secrets[].valueFrom`` and environment entries whose
  name matches ``[manifests].secret_env_names``).

Registering never changes what is applied: the real value still reaches the
backend, it is only hidden wherever gitopsd writes something down.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gitopsd.config import AppConfig
from gitopsd.errors import ConfigError
from gitopsd.redact import REDACTOR


def name_matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches one of the shell ``patterns`` (``*PASSWORD*``), ignoring case."""
    folded = name.casefold()
    return any(fnmatch.fnmatchcase(folded, p.casefold()) for p in patterns)


@dataclass(frozen=True)
class AppVariables:
    """An app's ``${VAR}`` values (``vars`` and ``vars_from_env`` merged) and the secret ones."""

    values: Mapping[str, str]
    secret: frozenset[str]

    def register(self) -> None:
        """Mark every secret variable's value secret in all outputs."""
        REDACTOR.register_all(self.values[n] for n in self.secret if n in self.values)


def app_variables(app: AppConfig, environ: Mapping[str, str] | None = None) -> AppVariables:
    """``app.vars`` plus ``app.vars_from_env`` read from ``environ`` (default: the process's).

    A variable named in ``vars_from_env`` that is not set is a :class:`ConfigError`
    naming the key and the variable. Values read from the environment are always
    secret, as are the ``vars`` listed in ``secret_vars``.
    """
    env = os.environ if environ is None else environ
    values = dict(app.vars)
    missing = []
    for name, var in app.vars_from_env.items():
        value = env.get(var)
        if value is None:
            missing.append(
                f"apps[{app.name}].vars_from_env.{name}: the environment variable {var} "
                f"is not set (it holds the value of ${{{name}}})"
            )
        else:
            values[name] = value
    if missing:
        raise ConfigError("\n".join(missing))
    return AppVariables(values, frozenset(app.secret_vars) | frozenset(app.vars_from_env))
