"""What a run has done so far, app by app, so an interrupted run can say it.

A sync can be stopped at any moment (Ctrl-C, SIGTERM, a timeout). The
backend tells the journal about every write as soon as it is made (and about
a write whose answer never came), and the engine records the stage each app
has reached; when the run is cancelled, the caller prints
:meth:`RunJournal.summary` instead of the outcomes it never got. A
:class:`Listener` hears the same things as they happen (the CLI prints the
plan before applying and each write as it is made).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gitopsd.backends.base import Applied
from gitopsd.engine.outcome import Outcome, Stage
from gitopsd.model import Revision


class Listener(Protocol):
    """Hears a run's progress as it happens; every method must return quickly."""

    def planned(self, outcome: Outcome) -> None:
        """The app's plan, before anything of it is applied (sync only)."""

    def wrote(self, app: str, applied: Applied) -> None:
        """One write was made."""

    def unsure(self, app: str, key: str, message: str) -> None:
        """A write got no answer: it may or may not have been made."""

    def warned(self, app: str, message: str) -> None:
        """Something the user must know although the pass goes on."""


@dataclass
class AppJournal:
    """One app's part of a run; the backend's :class:`~gitopsd.backends.base.Journal`."""

    app: str
    listener: Listener | None = None
    stage: Stage | None = None
    revision: Revision | None = None
    writes: list[Applied] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)
    done: bool = False

    def wrote(self, applied: Applied) -> None:
        self.writes.append(applied)
        if self.listener is not None:
            self.listener.wrote(self.app, applied)

    def unsure(self, key: str, message: str) -> None:
        self.uncertain.append(f"{key}: {message}")
        if self.listener is not None:
            self.listener.unsure(self.app, key, message)

    def summary(self) -> list[str]:
        """Lines saying what this app's interrupted pass did."""
        rev = f" @ {self.revision.commit[:12]}" if self.revision else ""
        if self.done:
            return [f"app {self.app}{rev}: finished"]
        lines = [f"app {self.app}{rev}: interrupted during {self.stage or 'start'}"]
        for a in self.writes:
            lines.append(f"  written: {a.key}: {a.message}")
        for u in self.uncertain:
            lines.append(f"  unknown: {u} (the next sync checks)")
        if not self.writes and not self.uncertain:
            lines.append("  nothing was written")
        elif self.stage in (Stage.APPLY, Stage.VERIFY):
            if any(a.rollout for a in self.writes):
                lines.append(
                    "  rollouts were not verified: run `gitopsd sync` again to follow them"
                )
            if self.stage is Stage.APPLY:
                lines.append("  the rest of the plan was not applied: run `gitopsd sync` again")
        return lines


class RunJournal:
    """The journals of every app of one run."""

    def __init__(self, listener: Listener | None = None) -> None:
        self.listener = listener
        self.apps: dict[str, AppJournal] = {}

    def for_app(self, app: str) -> AppJournal:
        if app not in self.apps:
            self.apps[app] = AppJournal(app, self.listener)
        return self.apps[app]

    def summary(self, order: Sequence[str] = ()) -> list[str]:
        names = [n for n in order if n in self.apps] + [n for n in self.apps if n not in order]
        lines: list[str] = []
        for name in names:
            lines += self.apps[name].summary()
        return lines
