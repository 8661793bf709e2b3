"""Two ``gitopsd sync`` processes on one app at once: one writer at a time, never a duplicate.

Both start together after a commit that changes every family, forked from the
preloaded forkserver (see ``faults.fleet``) so that neither pays the two-second import
and they reach the app's lock within milliseconds of each other. UpdateService is
slowed down on the endpoint (0.15 s a call), so whichever process takes the lock first
holds it for seconds while the other arrives. With a long ``[daemon].lock_timeout``
the second waits, then finds nothing to do; with a short one it gives up with the lock
message, a temporary failure (its ALERT is the only one allowed).
"""

from __future__ import annotations

import pytest

from .fleet import Fleet, Run, false_verdicts

LOCK_MESSAGE = "error (ApplyFailed, temporary): app 'fleet' is being synced by pid"


def wrote(run: Run) -> bool:
    return "  app fleet: applied " in run.out


@pytest.mark.parametrize("lock_timeout", ["30s", "0.2s"], ids=["both-succeed", "second-gives-up"])
def test_two_processes_syncing_one_app_never_interleave(fleet: Fleet, lock_timeout: str) -> None:
    first = fleet.sync_until_ok(1)
    fleet.configure(lock_timeout=lock_timeout)
    fleet.change(fleet.families, "new images")
    fleet.aws.inject_faults([{"operation": "UpdateService", "latency": 0.15, "count": None}])

    procs = [fleet.fork("sync"), fleet.fork("sync")]
    runs = [p.result(timeout=90) for p in procs]
    context = f"[lock_timeout {lock_timeout}]\n" + "\n".join(r.show() for r in runs)
    codes = sorted(r.code for r in runs)
    writers = [r for r in runs if wrote(r)]
    assert len(writers) == 1, context  # one wrote everything, the other nothing
    (writer,) = writers
    other = runs[1 - runs.index(writer)]
    assert writer.code == 0, context
    if lock_timeout == "30s":
        assert codes == [0, 0], context
        assert "in sync: nothing to do" in other.out, context
    else:
        assert codes == [0, 2], context
        assert LOCK_MESSAGE in other.out, context
        assert "[daemon].lock_timeout" in other.out, context
        assert "ALERT app fleet: ApplyFailed: app 'fleet' is being synced by pid" in other.err, (
            context
        )

    fleet.check_converged(context=context)
    lies = false_verdicts([*first, *runs])
    assert not lies, context + "\n".join(lies)
