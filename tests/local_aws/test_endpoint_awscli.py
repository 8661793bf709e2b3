"""The real AWS CLI (`aws ecs ...`) against the local endpoint: same wire protocol and shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalAws


def aws(local_aws: LocalAws, *args: str) -> Any:
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID=DUMMY_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=DUMMY_SECRET_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_MAX_ATTEMPTS="1",
    )
    env.pop("AWS_PROFILE", None)
    out = subprocess.run(
        [sys.executable, "-m", "awscli", "--endpoint-url", local_aws.endpoint_url,
         "--output", "json", *args],
        env=env, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return json.loads(out.stdout) if out.stdout.strip() else None


def test_aws_cli_deploys_and_reads_rollouts(local_aws: LocalAws) -> None:
    aws(local_aws, "ecs", "create-cluster", "--cluster-name", "cli")
    containers = json.dumps([{"name": "app", "image": "nginx:1", "memory": 128}])
    td = aws(local_aws, "ecs", "register-task-definition", "--family", "app",
             "--container-definitions", containers)["taskDefinition"]  # fmt: skip
    created = aws(
        local_aws, "ecs", "create-service", "--cluster", "cli", "--service-name", "app",
        "--task-definition", td["taskDefinitionArn"], "--desired-count", "2",
        "--deployment-configuration",
        "deploymentCircuitBreaker={enable=true,rollback=true},maximumPercent=200,"
        "minimumHealthyPercent=100",
    )["service"]  # fmt: skip
    assert created["deploymentConfiguration"]["deploymentCircuitBreaker"] == {
        "enable": True,
        "rollback": True,
    }
    local_aws.advance(10)

    svc = aws(local_aws, "ecs", "describe-services", "--cluster", "cli", "--services", "app")
    (primary,) = svc["services"][0]["deployments"]
    assert primary["status"] == "PRIMARY"
    assert primary["rolloutState"] == "COMPLETED"
    assert primary["runningCount"] == 2
    assert any("steady state" in e["message"] for e in svc["services"][0]["events"])

    listed = aws(local_aws, "ecs", "list-service-deployments", "--cluster", "cli",
                 "--service", "app")["serviceDeployments"]  # fmt: skip
    assert [d["status"] for d in listed] == ["SUCCESSFUL"]
    described = aws(local_aws, "ecs", "describe-service-deployments",
                    "--service-deployment-arns", listed[0]["serviceDeploymentArn"])  # fmt: skip
    assert described["serviceDeployments"][0]["status"] == "SUCCESSFUL"

    pages = aws(local_aws, "ecs", "list-services", "--cluster", "cli")
    assert [arn.rsplit("/", 1)[-1] for arn in pages["serviceArns"]] == ["app"]
