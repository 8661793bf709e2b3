"""The fault-injection suite: gitopsd stays correct when AWS, Git and its own process fail.

Everything is real: the ``gitopsd`` command line (in-process, as a ``python -m gitopsd``
subprocess, or in a process forked from a server that preloaded gitopsd), the local ECS
endpoint (one per session, ``pace`` 50 tasks/s, real clock) with its seeded fault rules,
and a ``git daemon`` serving a generated repository: the app ``fleet``, one file per
family ``fleet-NN`` holding a task definition (EC2, one container) and its service
(desiredCount 1 or 2, circuit breaker with rollback). Every image is good: nothing ever
has a reason to fail or roll back.

What the suite promises (each test checks it from outside gitopsd, through the endpoint's
call log and a boto3 client, the Git repository and the state directory):

- **Converged.** After the faults stop, a sync exits 0 (a bounded number of runs), then
  ``gitopsd diff`` exits 0 and every service is ACTIVE with one deployment, PRIMARY and
  COMPLETED, on its family's newest revision, whose image is the one Git holds.
- **No duplicate revision.** No two revisions of a family have the same content.
  Revisions per family = distinct contents committed for it, where every commit was
  synced to completion (API faults, signals, two processes); at most that many in the
  crash test, where a killed run may never have registered a content that the next
  commit replaced.
- **No orphaned revision.** Every registered revision's content was committed at some point.
- **No false verdict** (:func:`faults.fleet.false_verdicts`): no rollout verdict
  ROLLED_BACK, FAILED, REPLACED or TIMED_OUT, no "rolled back"/"rolling back" text, no
  permanent error, and no ALERT line, except the ALERT of a run that failed with a
  *temporary* error of the same reason (SourceFailed, PlanFailed, ApplyFailed: retries
  that ran out under a fault storm, or another process holding the app's lock).
  RolloutFailed is never excused.
- **Never an internal error or a traceback**, in any output.
- **Idempotent.** Once converged, the next sync makes zero write calls.

The tests:

- ``test_api_faults``: seeded random faults (5xx and dropped connections after the write
  took effect, 5xx before any call, a throttling storm, latency, answers later than the
  client's timeout), syncing a first time and after a new image everywhere.
- ``test_crash``: 26 runs SIGKILLed at seeded points (after N calls, N writes, N polls, or
  a few milliseconds into the Git fetch; at least 20 must die before they finish); the
  next run picks up; state files stay JSON.
- ``test_concurrent``: two processes sync one app at once: one writer, the other waits
  (or gives up with the lock message when ``[daemon].lock_timeout`` is short).
- ``test_cache_damage``: the Git cache truncated, a byte flipped, objects deleted, stale
  lock files; with the remote up and down.
- ``test_signals``: SIGINT and SIGTERM during apply and verify: exit 130/143 and a journal
  listing exactly the writes the endpoint received.

Seeds: every random choice derives from one seed, printed by each test (``-rA`` shows
it) and named in every assertion message. ``GITOPSD_FAULT_SEED=<seed> pytest tests/faults``
replays a run: the same fault rules with the same seeds, the same kill points, the same
changed families. Which concurrent call a rule's draw falls on, and exactly where a
process is when the kill arrives, still depend on timing; the verdicts do not.
"""
