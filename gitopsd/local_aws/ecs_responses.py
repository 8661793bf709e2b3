"""moto's ECS request handler, extended: it settles the simulation and reads what moto drops.

:class:`SimulatedEcsResponse` is what the ECS routes of the local endpoint
dispatch to (see ``SimulatedEcsBackend._url_module``). Every request takes the
runtime lock and replays the simulation up to now before moto handles it.
CreateService and UpdateService hand every parameter to
:class:`~gitopsd.local_aws.ecs_backend.SimulatedEcsBackend`; ListServices
paginates; DescribeServices takes at most 10 names; ListServiceDeployments,
DescribeServiceDeployments, StopServiceDeployment, ContinueServiceDeployment and
DescribeServiceRevisions (HTTP 500 or missing in moto) are answered from the
simulation.
"""

from __future__ import annotations

import json
from typing import Any

from botocore import xform_name
from moto.core.responses import ActionResult
from moto.ecs.exceptions import InvalidParameterException
from moto.ecs.responses import EC2ContainerServiceResponse

from gitopsd.local_aws.ecs_backend import (
    CREATE_EXTRAS,
    DESCRIBE_SERVICES_MAX,
    LIST_SERVICES_DEFAULT,
    EcsError,
    SimulatedEcsBackend,
)
from gitopsd.local_aws.paging import PagingError, page


class SimulatedEcsResponse(EC2ContainerServiceResponse):
    """moto's ECS request handler: settles the simulation first, reads what moto drops."""

    def call_action(self) -> Any:
        """Every ECS request: under the runtime lock, settle, then dispatch as moto does."""
        with SimulatedEcsBackend.runtime.lock:
            backend = self.ecs_backend
            if isinstance(backend, SimulatedEcsBackend):
                backend.settle()
            return super().call_action()

    def _sim_backend(self) -> SimulatedEcsBackend:
        backend = self.ecs_backend
        if not isinstance(backend, SimulatedEcsBackend):
            raise EcsError("ServerException", "the local ECS simulation is not installed")
        return backend

    def create_service(self) -> Any:
        """CreateService with every parameter (moto's handler drops several)."""
        params: dict[str, Any] = dict(self._get_params())
        significant = {k: v for k, v in params.items() if k != "clientToken"}
        fingerprint = json.dumps(significant, sort_keys=True, default=str)
        service = self._sim_backend().create_service(
            self._get_param("cluster", "default"),
            self._get_param("serviceName"),
            self._get_int_param("desiredCount"),
            self._get_param("taskDefinition"),
            self._get_param("loadBalancers"),
            self._get_param("schedulingStrategy"),
            self._get_param("tags"),
            self._get_param("deploymentController"),
            self._get_param("launchType"),
            network_configuration=self._get_param("networkConfiguration"),
            service_registries=self._get_param("serviceRegistries"),
            platform_version=self._get_param("platformVersion"),
            propagate_tags=self._get_param("propagateTags") or "NONE",
            role_arn=self._get_param("role"),
            extras={k: params.get(k) for k in CREATE_EXTRAS},
            client_token=self._get_param("clientToken"),
            fingerprint=fingerprint,
        )
        return ActionResult({"service": service})

    def update_service(self) -> Any:
        """UpdateService with botocore's snake_case names (moto mangles ``enableECS...``)."""
        props = {xform_name(k): v for k, v in dict(self._get_params()).items()}
        service = self._sim_backend().update_service(props)
        return ActionResult({"service": service})

    def list_services(self) -> Any:
        """ListServices, paginated like AWS (default 10 per page)."""
        arns = self._sim_backend().list_services(
            self._get_param("cluster", "default"),
            self._get_param("schedulingStrategy"),
            launch_type=self._get_param("launchType"),
        )
        try:
            chunk, token = page(
                arns,
                self._get_param("maxResults"),
                self._get_param("nextToken"),
                LIST_SERVICES_DEFAULT,
            )
        except PagingError as exc:
            raise InvalidParameterException(str(exc)) from exc
        result: dict[str, Any] = {"serviceArns": chunk}
        if token is not None:
            result["nextToken"] = token
        return ActionResult(result)

    def describe_services(self) -> Any:
        """DescribeServices; like AWS, at most 10 services per call."""
        names = self._get_param("services", [])
        if len(names) > DESCRIBE_SERVICES_MAX:
            raise InvalidParameterException(
                f"services can have at most {DESCRIBE_SERVICES_MAX} items."
            )
        return super().describe_services()

    def list_service_deployments(self) -> Any:
        """ListServiceDeployments (moto: HTTP 500)."""
        briefs, token = self._sim_backend().list_service_deployments(
            self._get_param("service"),
            self._get_param("cluster"),
            self._get_param("status"),
            self._get_param("createdAt"),
            self._get_param("maxResults"),
            self._get_param("nextToken"),
        )
        result: dict[str, Any] = {"serviceDeployments": briefs}
        if token is not None:
            result["nextToken"] = token
        return ActionResult(result)

    def describe_service_deployments(self) -> Any:
        """DescribeServiceDeployments (moto: HTTP 500)."""
        found, failures = self._sim_backend().describe_service_deployments(
            list(self._get_param("serviceDeploymentArns", []) or [])
        )
        return ActionResult({"serviceDeployments": found, "failures": failures})

    def stop_service_deployment(self) -> Any:
        """StopServiceDeployment (moto: HTTP 500)."""
        arn = self._sim_backend().stop_service_deployment(
            self._get_param("serviceDeploymentArn"), self._get_param("stopType")
        )
        return ActionResult({"serviceDeploymentArn": arn})

    def continue_service_deployment(self) -> Any:
        """ContinueServiceDeployment (not in moto)."""
        arn = self._sim_backend().continue_service_deployment(
            self._get_param("serviceDeploymentArn"),
            self._get_param("hookId"),
            self._get_param("action"),
        )
        return ActionResult({"serviceDeploymentArn": arn})

    def describe_service_revisions(self) -> Any:
        """DescribeServiceRevisions (moto: HTTP 500)."""
        found, failures = self._sim_backend().describe_service_revisions(
            list(self._get_param("serviceRevisionArns", []) or [])
        )
        return ActionResult({"serviceRevisions": found, "failures": failures})
