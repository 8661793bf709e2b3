"""moto's ECS backend, extended in-process so that services deploy the way ECS documents.

moto (5.2.5) stores services but does not deploy them: no new PRIMARY deployment
on update, counts that never move, no events, HTTP 500 for the service
deployment APIs, and a few quirks that would hide bugs in an agent. This module
subclasses moto's :class:`EC2ContainerServiceBackend` (no fork) and hands each
ECS service to a :class:`~gitopsd.local_aws.deployments.ServiceSim`:

- CreateService / UpdateService start deployments (new task definition,
  ``forceNewDeployment``, changed network configuration, platform version,
  capacity provider strategy, load balancers or service registries); a
  ``desiredCount`` change alone scales the PRIMARY deployment.
- Before every ECS request the backend replays the simulation up to the
  simulated now, then copies counts, ``deployments[]``, ``events[]``, the task
  definition (a rollback moves it back) and the current service deployment
  and revisions onto moto's ``Service`` object, which moto serializes.
- ListServiceDeployments, DescribeServiceDeployments, StopServiceDeployment
  (stopType ROLLBACK), ContinueServiceDeployment and DescribeServiceRevisions
  are answered from the simulation.
- ``deploymentConfiguration.strategy`` BLUE_GREEN, LINEAR and CANARY walk
  lifecycle stages (:mod:`gitopsd.local_aws.staged`); CreateService and
  UpdateService refuse what ECS refuses for them (load balancers without
  ``advancedConfiguration``, hooks on stages they may not use). Deployment
  alarms are read from moto's CloudWatch of the same account and region
  (:mod:`gitopsd.local_aws.alarms`) each time a service is brought up to date.
- UpdateService keeps the ``lifecycleHooks`` and ``alarms`` a new
  deploymentConfiguration leaves out, as ECS does (sent empty, they are cleared).
- Quirks fixed to behave as AWS: CreateService keeps deploymentConfiguration
  (defaults filled in), enableExecuteCommand, healthCheckGracePeriodSeconds,
  capacityProviderStrategy, placement constraints/strategy; creating an ACTIVE
  service name again fails with "Creation of service was not idempotent."
  unless the same ``clientToken`` comes with identical parameters; launchType
  together with capacityProviderStrategy is refused; an awsvpc task definition
  needs a networkConfiguration; deleted services leave ListServices;
  ListServices paginates (default 10); DescribeServices takes at most 10
  names; UpdateService/DeleteService of an inactive service fail with
  ServiceNotActiveException; an awsvpc configuration without security groups is
  accepted (moto answers HTTP 500).

The request side (parameter parsing, pagination, the new operations) is
:mod:`gitopsd.local_aws.ecs_responses`. :func:`install` swaps the backend
class inside moto's ``ecs_backends`` (the process-wide registry every moto
component reads), so call it only in a process that serves the local
endpoint (``gitopsd local-aws``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, ClassVar

from moto.ecs.exceptions import ECSException, InvalidParameterException
from moto.ecs.models import EC2ContainerServiceBackend, ecs_backends

from gitopsd.local_aws.alarms import alarms_in_alarm
from gitopsd.local_aws.deployments import ServiceSim
from gitopsd.local_aws.paging import PagingError, page
from gitopsd.local_aws.policy import normalize_deployment_configuration
from gitopsd.local_aws.records import ACTION_CONTINUE, ServiceIdentity, SimulationError
from gitopsd.local_aws.runtime import Runtime
from gitopsd.local_aws.shapes import (
    current_service_revisions,
    deployment_shape,
    event_shape,
    service_deployment_brief,
    service_deployment_shape,
    service_revision_shape,
)
from gitopsd.local_aws.strategies import validate_deployment

#: CreateService parameters moto's own handler drops; kept on the service.
CREATE_EXTRAS = (
    "deploymentConfiguration",
    "enableExecuteCommand",
    "enableECSManagedTags",
    "healthCheckGracePeriodSeconds",
    "capacityProviderStrategy",
    "placementConstraints",
    "placementStrategy",
    "availabilityZoneRebalancing",
    "serviceConnectConfiguration",
    "volumeConfigurations",
)

#: Service attributes (moto spelling) whose change starts a new deployment.
DEPLOYING_ATTRIBUTES = (
    "network_configuration",
    "platform_version",
    "capacity_provider_strategy",
    "load_balancers",
    "service_registries",
    "service_connect_configuration",
    "volume_configurations",
)

LIST_SERVICES_DEFAULT = 10
LIST_SERVICE_DEPLOYMENTS_DEFAULT = 20
DESCRIBE_SERVICES_MAX = 10
DESCRIBE_SERVICE_DEPLOYMENTS_MAX = 20
FARGATE_PLATFORM_VERSION = "1.4.0"


class EcsError(ECSException):
    """An ECS error response with any code from the ECS model."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


def service_not_active() -> EcsError:
    """The error ECS returns for updates to a deleted service."""
    return EcsError("ServiceNotActiveException", "Service was not ACTIVE.")


def _as_aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


def _to_millis(value: datetime) -> datetime:
    """A timestamp as the wire carries it (milliseconds), for comparisons with client values."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _for_moto_validation(network: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy moto can validate: AWS allows awsvpc without securityGroups, moto gives HTTP 500."""
    if not network or "awsvpcConfiguration" not in network:
        return network
    awsvpc = dict(network["awsvpcConfiguration"])
    awsvpc.setdefault("securityGroups", [])
    awsvpc.setdefault("subnets", [])
    return {**network, "awsvpcConfiguration": awsvpc}


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


class SimulatedEcsBackend(EC2ContainerServiceBackend):
    """moto's ECS backend with deployments simulated by :class:`ServiceSim`."""

    #: Settings, clock and lock of the serving process; set by :func:`install`.
    runtime: ClassVar[Runtime] = Runtime()

    def __init__(self, region_name: str, account_id: str) -> None:
        super().__init__(region_name, account_id)
        #: ``cluster:service`` (moto's key of ``self.services``) -> simulation.
        self.sims: dict[str, ServiceSim] = {}
        #: ``cluster:service`` -> (clientToken, fingerprint of the create parameters).
        self.create_tokens: dict[str, tuple[str, str]] = {}

    @property
    def _url_module(self) -> Any:
        """moto's ECS URLs, dispatched to :class:`SimulatedEcsResponse`."""
        from moto.ecs import urls

        from gitopsd.local_aws.ecs_responses import SimulatedEcsResponse

        return SimpleNamespace(
            url_bases=urls.url_bases,
            url_paths={path: SimulatedEcsResponse.dispatch for path in urls.url_paths},
        )

    # ------------------------------------------------------------ simulation

    def settle(self) -> None:
        """Look at deployment alarms, replay every step due up to now, refresh changed services."""
        rt = self.runtime
        now = rt.clock.now()
        interval = rt.interval()
        for key, sim in list(self.sims.items()):
            self._tune(sim)
            changed = False
            names = sim.alarm_names()
            if names:
                changed = sim.observe_alarms(self._in_alarm(names), interval)
            if sim.next_step_at is not None and sim.next_step_at <= now:
                sim.advance_to(now, interval, rt.probe)
                changed = True
            if changed:
                service = self.services.get(key)
                if service is not None and service.status == "ACTIVE":
                    self._sync(service, sim)

    def _tune(self, sim: ServiceSim) -> None:
        """Hand the current knobs to a simulation (they may change while the server runs)."""
        sim.minute = self.runtime.minute()
        sim.hook_fails = self.runtime.hook_fails

    def _in_alarm(self, names: tuple[str, ...]) -> set[str]:
        """Which of these CloudWatch alarms (this account and region) are in ALARM."""
        return alarms_in_alarm(self.account_id, self.region_name, names)

    def _identity(self, cluster: Any, service_name: str, service_arn: str) -> ServiceIdentity:
        prefix = cluster.arn.split(":cluster/")[0]
        return ServiceIdentity(service_name, cluster.name, service_arn, cluster.arn, prefix)

    def _sync(self, service: Any, sim: ServiceSim) -> None:
        """Copy the simulation's view onto moto's Service object (what moto serializes)."""
        cluster = self.clusters.get(service.cluster_name)
        running, pending = sim.running_count, sim.pending_count
        if cluster is not None:
            self.update_cluster_resources(cluster, running - service.running_count, "RUNNING")
            self.update_cluster_resources(cluster, pending - service.pending_count, "PENDING")
        service.running_count = running
        service.pending_count = pending
        service.deployments = [deployment_shape(d) for d in sim.deployments]
        service.events = [event_shape(e) for e in sim.events]
        if sim.task_definition is not None:
            service.task_definition = sim.task_definition
        record = sim.current_record
        service.current_service_deployment = record.arn if record is not None else None
        service.current_service_revisions = current_service_revisions(sim)

    def _revision_config(self, service: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "launchType": service.launch_type,
            "capacityProviderStrategy": getattr(service, "capacity_provider_strategy", None),
            "platformVersion": service.platform_version,
            "networkConfiguration": service.network_configuration or None,
            "loadBalancers": service.load_balancers,
            "serviceRegistries": service.service_registries,
            "serviceConnectConfiguration": getattr(service, "service_connect_configuration", None),
            "volumeConfigurations": getattr(service, "volume_configurations", None),
        }
        if service.launch_type == "FARGATE":
            if config["platformVersion"] in (None, "LATEST"):
                config["platformVersion"] = FARGATE_PLATFORM_VERSION
            config["platformFamily"] = "Linux"
        return {k: v for k, v in config.items() if not _empty(v)}

    def _deploy(self, service: Any, sim: ServiceSim, task_definition: Any) -> None:
        rt = self.runtime
        now = rt.clock.now()
        images = [
            (str(c.get("name", "")), str(c.get("image", "")))
            for c in task_definition.container_definitions
        ]
        revision = sim.new_revision(
            task_definition.arn, images, now, self._revision_config(service)
        )
        alarms = sim.deployment_configuration.get("alarms") or {}
        names = tuple(alarms.get("alarmNames") or ()) if alarms.get("enable") else ()
        self._tune(sim)
        sim.start_deployment(revision, now, rt.interval(), in_alarm=self._in_alarm(names))

    def _key(self, cluster_str: str, service_str: str) -> tuple[Any, str]:
        cluster = self._get_cluster(cluster_str)
        return cluster, f"{cluster.name}:{service_str.split('/')[-1]}"

    # ------------------------------------------------------------- services

    def create_service(
        self,
        cluster_str: str,
        service_name: str,
        desired_count: int,
        task_definition_str: str | None = None,
        load_balancers: list[dict[str, Any]] | None = None,
        scheduling_strategy: Any = None,
        tags: list[dict[str, str]] | None = None,
        deployment_controller: dict[str, str] | None = None,
        launch_type: str | None = None,
        service_registries: list[dict[str, Any]] | None = None,
        platform_version: str | None = None,
        propagate_tags: str = "NONE",
        network_configuration: dict[str, Any] | None = None,
        role_arn: str | None = None,
        *,
        extras: Mapping[str, Any] | None = None,
        client_token: str | None = None,
        fingerprint: str = "",
    ) -> Any:
        """CreateService, refusing duplicates and keeping what moto drops."""
        cluster, key = self._key(cluster_str, service_name)
        existing = self.services.get(key)
        if existing is not None and existing.status == "ACTIVE":
            if client_token and self.create_tokens.get(key) == (client_token, fingerprint):
                return existing
            raise InvalidParameterException("Creation of service was not idempotent.")
        extra = dict(extras or {})
        strategy = extra.get("capacityProviderStrategy")
        if launch_type and strategy:
            raise InvalidParameterException(
                "Specifying both a launch type and capacity provider strategy is not "
                "supported. Remove one and try again."
            )
        task_definition = (
            self.describe_task_definition(task_definition_str) if task_definition_str else None
        )
        if (
            task_definition is not None
            and task_definition.network_mode == "awsvpc"
            and not network_configuration
        ):
            raise InvalidParameterException(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified."
            )
        _validate(extra.get("deploymentConfiguration"), load_balancers)
        if launch_type == "FARGATE" and platform_version is None:
            platform_version = "LATEST"
        service: Any = super().create_service(
            cluster_str,
            service_name,
            desired_count,
            task_definition_str=task_definition_str,
            load_balancers=load_balancers,
            scheduling_strategy=scheduling_strategy,
            tags=tags,
            deployment_controller=deployment_controller,
            launch_type=launch_type,
            service_registries=service_registries,
            platform_version=platform_version,
            propagate_tags=propagate_tags,
            network_configuration=_for_moto_validation(network_configuration),
            role_arn=role_arn,
        )
        if network_configuration is not None:
            service.network_configuration = network_configuration
        if strategy and not launch_type:
            service.launch_type = None
        service.deployment_configuration = normalize_deployment_configuration(
            extra.get("deploymentConfiguration"), str(service.scheduling_strategy)
        )
        service.enable_execute_command = bool(extra.get("enableExecuteCommand") or False)
        service.enable_ecs_managed_tags = bool(extra.get("enableECSManagedTags") or False)
        service.health_check_grace_period_seconds = extra.get("healthCheckGracePeriodSeconds")
        service.capacity_provider_strategy = strategy
        service.placement_constraints = extra.get("placementConstraints") or []
        service.placement_strategy = extra.get("placementStrategy") or []
        service.availability_zone_rebalancing = extra.get("availabilityZoneRebalancing")
        service.service_connect_configuration = extra.get("serviceConnectConfiguration")
        service.volume_configurations = extra.get("volumeConfigurations")
        service.created_at = self.runtime.clock.now()
        cluster.active_services_count += 1
        if client_token:
            self.create_tokens[key] = (client_token, fingerprint)
        else:
            self.create_tokens.pop(key, None)
        self.sims.pop(key, None)
        controller = (service.deployment_controller or {}).get("type", "ECS")
        if controller == "ECS" and task_definition is not None:
            sim = ServiceSim(
                self._identity(cluster, service.name, service.arn),
                desired_count=service.desired_count,
                deployment_configuration=service.deployment_configuration,
            )
            self.sims[key] = sim
            self._deploy(service, sim, task_definition)
            self._sync(service, sim)
        return service

    def update_service(self, service_properties: dict[str, Any]) -> Any:
        """UpdateService: scale, reconfigure, and deploy when a deploying field changed."""
        props = dict(service_properties)
        cluster_str = props.pop("cluster", None) or "default"
        service_str = str(props.pop("service"))
        _, key = self._key(cluster_str, service_str)
        service: Any = self._get_service(cluster_str, service_str.split("/")[-1])
        if service.status != "ACTIVE":
            raise service_not_active()
        sim = self.sims.get(key)
        if sim is None:
            props["cluster"] = cluster_str
            props["service"] = service_str
            return super().update_service(props)

        task_definition_str = props.pop("task_definition", None)
        force = bool(props.pop("force_new_deployment", False))
        desired = props.pop("desired_count", None)
        configuration = _keep_unsent(
            props.pop("deployment_configuration", None), service.deployment_configuration
        )
        new_td = self.describe_task_definition(task_definition_str) if task_definition_str else None
        _validate(
            configuration if configuration is not None else service.deployment_configuration,
            props.get("load_balancers") or service.load_balancers,
        )
        if props.get("network_configuration"):
            service._validate_network(_for_moto_validation(props["network_configuration"]))
        redeploy = force or (new_td is not None and new_td.arn != service.task_definition)
        for name, value in props.items():
            if value is None:
                continue
            if name in DEPLOYING_ATTRIBUTES and value != getattr(service, name, None):
                redeploy = True
            setattr(service, name, value)
        if configuration is not None:
            service.deployment_configuration = normalize_deployment_configuration(
                configuration, str(service.scheduling_strategy)
            )
            sim.set_deployment_configuration(service.deployment_configuration)
        now = self.runtime.clock.now()
        if desired is not None:
            service.desired_count = int(desired)
            sim.set_desired_count(int(desired), now, self.runtime.interval())
        if new_td is not None:
            service.task_definition = new_td.arn
        if redeploy:
            current = sim.task_definition or service.task_definition
            self._deploy(service, sim, new_td or self.describe_task_definition(current))
        self._sync(service, sim)
        return service

    def delete_service(self, cluster_name: str, service_name: str, force: bool) -> Any:
        """DeleteService: the service goes INACTIVE, leaves ListServices, tasks stop."""
        cluster, key = self._key(cluster_name, service_name)
        existing = self._get_service(cluster_name, service_name.split("/")[-1])
        if existing.status != "ACTIVE":
            raise service_not_active()
        service: Any = super().delete_service(cluster_name, existing.name, force)
        cluster.active_services_count = max(0, cluster.active_services_count - 1)
        sim = self.sims.get(key)
        if sim is not None:
            sim.deactivate(self.runtime.clock.now())
            service.deployments = [deployment_shape(d) for d in sim.deployments]
            service.current_service_revisions = []
        service.running_count = 0
        service.pending_count = 0
        service.desired_count = 0
        self.create_tokens.pop(key, None)
        return service

    def list_services(
        self,
        cluster_str: str,
        scheduling_strategy: str | None = None,
        launch_type: str | None = None,
    ) -> list[str]:
        """ARNs of the cluster's ACTIVE services (deleted ones are gone, as on AWS)."""
        cluster = self._get_cluster(cluster_str)
        arns = []
        for service in self.services.values():
            if service.cluster_name != cluster.name or service.status != "ACTIVE":
                continue
            if scheduling_strategy is not None and service.scheduling_strategy != (
                scheduling_strategy
            ):
                continue
            if launch_type is not None and service.launch_type != launch_type:
                continue
            arns.append(service.arn)
        return sorted(arns)

    # -------------------------------------------------- service deployments

    def _sim_for(self, cluster_str: str, service_str: str) -> ServiceSim | None:
        _, key = self._key(cluster_str, service_str)
        self._get_service(cluster_str, service_str.split("/")[-1])
        return self.sims.get(key)

    def _sim_for_arn(self, arn: str, kind: str) -> ServiceSim | None:
        try:
            resource = arn.split(":", 5)[5]
            resource_kind, cluster_name, service_name, _ = resource.split("/")
        except (IndexError, ValueError):
            return None
        if resource_kind != kind:
            return None
        return self.sims.get(f"{cluster_name}:{service_name}")

    def list_service_deployments(
        self,
        service: str,
        cluster: str | None,
        status: list[str] | None,
        created_at: Mapping[str, Any] | None,
        max_results: int | None,
        next_token: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """ListServiceDeployments: newest first, filtered, paginated (default 20)."""
        sim = self._sim_for(cluster or "default", service)
        records = list(reversed(sim.records)) if sim is not None else []
        if status:
            records = [r for r in records if r.status in status]
        window = created_at or {}
        before, after = _as_aware(window.get("before")), _as_aware(window.get("after"))
        if before is not None:
            records = [r for r in records if _to_millis(r.created_at) < before]
        if after is not None:
            records = [r for r in records if _to_millis(r.created_at) > after]
        try:
            chunk, token = page(records, max_results, next_token, LIST_SERVICE_DEPLOYMENTS_DEFAULT)
        except PagingError as exc:
            raise InvalidParameterException(str(exc)) from exc
        if sim is None:
            return [], token
        return [service_deployment_brief(sim, r) for r in chunk], token

    def describe_service_deployments(
        self, arns: list[str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """DescribeServiceDeployments: found ones, and MISSING failures for the rest."""
        if len(arns) > DESCRIBE_SERVICE_DEPLOYMENTS_MAX:
            raise InvalidParameterException(
                f"serviceDeploymentArns can have at most {DESCRIBE_SERVICE_DEPLOYMENTS_MAX} items."
            )
        found, failures = [], []
        for arn in arns:
            sim = self._sim_for_arn(arn, "service-deployment")
            record = sim.find_record(arn) if sim is not None else None
            if sim is None or record is None:
                failures.append({"arn": arn, "reason": "MISSING"})
            else:
                found.append(service_deployment_shape(sim, record))
        return found, failures

    def stop_service_deployment(self, arn: str, stop_type: str | None) -> str:
        """StopServiceDeployment: ROLLBACK rolls back to the last completed revision."""
        if stop_type not in (None, "ROLLBACK"):
            raise EcsError(
                "UnsupportedFeatureException",
                f"stopType {stop_type} is not supported for rolling update deployments; "
                "use ROLLBACK.",
            )
        sim = self._sim_for_arn(arn, "service-deployment")
        if sim is None or sim.find_record(arn) is None:
            raise EcsError(
                "ServiceDeploymentNotFoundException", f"Service deployment {arn} was not found."
            )
        try:
            sim.stop_deployment(arn, self.runtime.clock.now(), self.runtime.interval())
        except SimulationError as exc:
            raise EcsError(exc.code, str(exc)) from exc
        service = self.services.get(f"{sim.identity.cluster_name}:{sim.name}")
        if service is not None:
            self._sync(service, sim)
        return arn

    def continue_service_deployment(self, arn: str, hook_id: str, action: str | None) -> str:
        """ContinueServiceDeployment: CONTINUE or ROLLBACK at a PAUSE hook awaiting action."""
        chosen = action or ACTION_CONTINUE
        if chosen not in ("CONTINUE", "ROLLBACK"):
            raise InvalidParameterException(
                f"action '{chosen}' is invalid. Valid values are CONTINUE and ROLLBACK."
            )
        sim = self._sim_for_arn(arn, "service-deployment")
        if sim is None or sim.find_record(arn) is None:
            raise EcsError(
                "ServiceDeploymentNotFoundException", f"Service deployment {arn} was not found."
            )
        rt = self.runtime
        self._tune(sim)
        try:
            sim.continue_deployment(arn, hook_id, chosen, rt.clock.now(), rt.interval(), rt.probe)
        except SimulationError as exc:
            raise EcsError(exc.code, str(exc)) from exc
        service = self.services.get(f"{sim.identity.cluster_name}:{sim.name}")
        if service is not None:
            self._sync(service, sim)
        return arn

    def describe_service_revisions(
        self, arns: list[str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """DescribeServiceRevisions: found ones, and MISSING failures for the rest."""
        if len(arns) > DESCRIBE_SERVICE_DEPLOYMENTS_MAX:
            raise InvalidParameterException(
                f"serviceRevisionArns can have at most {DESCRIBE_SERVICE_DEPLOYMENTS_MAX} items."
            )
        found, failures = [], []
        for arn in arns:
            sim = self._sim_for_arn(arn, "service-revision")
            revision = sim.revisions.get(arn) if sim is not None else None
            if sim is None or revision is None:
                failures.append({"arn": arn, "reason": "MISSING"})
            else:
                found.append(service_revision_shape(sim, revision))
        return found, failures


#: deploymentConfiguration members UpdateService keeps when a request leaves them out: ECS
#: clears them only when sent (``lifecycleHooks: []``, alarms with ``enable`` false).
KEPT_WHEN_UNSENT = ("lifecycleHooks", "alarms")


def _keep_unsent(configuration: Any, current: Any) -> Any:
    """UpdateService's ``deploymentConfiguration`` with the kept members of ``current``."""
    if not isinstance(configuration, dict) or not isinstance(current, dict):
        return configuration
    kept = {k: current[k] for k in KEPT_WHEN_UNSENT if k not in configuration and k in current}
    return {**configuration, **kept}


def _validate(configuration: Any, load_balancers: Any) -> None:
    """CreateService/UpdateService checks of strategy, hooks and load balancers."""
    try:
        validate_deployment(configuration, load_balancers)
    except SimulationError as exc:
        raise InvalidParameterException(str(exc)) from exc


def install(runtime: Runtime) -> None:
    """Make moto's ECS registry create :class:`SimulatedEcsBackend` (idempotent).

    Existing ECS backends of the process are dropped: call this before serving.
    """
    SimulatedEcsBackend.runtime = runtime
    if ecs_backends.backend is not SimulatedEcsBackend:
        ecs_backends.backend = SimulatedEcsBackend
        for account_backend in ecs_backends.values():
            account_backend.backend = SimulatedEcsBackend
            account_backend.clear()


def all_backends() -> list[SimulatedEcsBackend]:
    """Every ECS backend created so far in this process (all accounts and regions)."""
    result = []
    for account_backend in list(ecs_backends.values()):
        for backend in list(account_backend.values()):
            if isinstance(backend, SimulatedEcsBackend):
                result.append(backend)
    return result


def settle_all() -> None:
    """Settle every backend (after the clock moved); the caller holds the runtime lock."""
    for backend in all_backends():
        backend.settle()


def create_cluster(name: str, region: str, account_id: str | None = None) -> None:
    """Create a cluster directly in the backend (``--create-cluster``), if missing."""
    from moto.core.models import DEFAULT_ACCOUNT_ID

    backend = ecs_backends[account_id or DEFAULT_ACCOUNT_ID][region]
    if name not in backend.clusters:
        backend.create_cluster(name)
