"""Deployment alarms as ECS sees them: the state of CloudWatch alarms in this same process.

ECS watches the alarms named in ``deploymentConfiguration.alarms`` by calling
CloudWatch; the local endpoint's ECS reads moto's CloudWatch backend of the
same account and region directly (``set-alarm-state`` or ``put-metric-alarm``
over the endpoint drive it). It is read each time the simulation is brought up
to date, i.e. on every ECS request, so an alarm set between two
DescribeServiceDeployments is seen by the second. An alarm that does not exist
is never in ALARM (as for ECS, which then sees no alarm data).
"""

from __future__ import annotations

from collections.abc import Iterable

from moto.cloudwatch.models import cloudwatch_backends

ALARM_STATE = "ALARM"


def alarms_in_alarm(account_id: str, region: str, names: Iterable[str]) -> set[str]:
    """Which of ``names`` are CloudWatch alarms in state ALARM right now."""
    wanted = set(names)
    if not wanted:
        return set()
    backend = cloudwatch_backends[account_id][region]
    return {
        name
        for name in wanted
        if (alarm := backend.alarms.get(name)) is not None and alarm.state_value == ALARM_STATE
    }
