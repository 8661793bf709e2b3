"""Open the state store the configuration names (``[state]``), for the composition roots.

Kept apart from the interface so the engine, which only needs
:class:`~gitopsd.statestore.StateStore`, never imports a backend's client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gitopsd.config import Config
from gitopsd.statestore import AGENT, StateStore
from gitopsd.statestore.dirstore import DirStore


def dir_store(config: Config) -> DirStore:
    """The state-directory store: ``<[daemon].state_dir>/store``."""
    return DirStore(config.daemon.state_dir / "store")


@asynccontextmanager
async def open_store(config: Config, *, check: bool = False) -> AsyncIterator[StateStore]:
    """The configured store, open for the body of the ``async with``.

    ``check``: read once first, so a missing table or a refused permission is raised
    here (a :class:`~gitopsd.statestore.StateRejected` saying what to do), before
    anything else starts.
    """
    if config.state.backend == "dynamodb":
        from gitopsd.statestore.dynamodb import DynamoDbStore

        assert config.state.table is not None  # the config requires it
        async with DynamoDbStore(
            config.state.table, config.aws, region=config.state.region
        ) as store:
            if check:
                await store.get(AGENT, "-")
            yield store
    else:
        yield dir_store(config)
