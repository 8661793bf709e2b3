"""A local ECS endpoint that deploys services the way ECS does (``gitopsd local-aws``).

moto's server, extended in-process: rolling deployments with a configurable
pace, images that fail to start, the circuit breaker with rollback, service
events and the service deployment APIs. Layers, bottom up:

- :mod:`~gitopsd.local_aws.settings`, :mod:`~gitopsd.local_aws.clock`,
  :mod:`~gitopsd.local_aws.policy`, :mod:`~gitopsd.local_aws.ids`,
  :mod:`~gitopsd.local_aws.records`, :mod:`~gitopsd.local_aws.deployments` (the state
  machine), :mod:`~gitopsd.local_aws.shapes`, :mod:`~gitopsd.local_aws.paging`: pure,
  no moto;
- :mod:`~gitopsd.local_aws.runtime`: the state a server shares (no moto);
- :mod:`~gitopsd.local_aws.ecs_backend`, :mod:`~gitopsd.local_aws.ecs_responses`,
  :mod:`~gitopsd.local_aws.server`: the moto glue (needs the ``local`` extra);
- :mod:`~gitopsd.local_aws.command` (the CLI) and :mod:`~gitopsd.local_aws.testing`
  (:class:`~gitopsd.local_aws.testing.LocalAws` for tests).

Importing this package imports nothing else.
"""
