"""``gitopsd iam-policy``: print the least-privilege IAM policy for your account.

Registered on the main CLI by :func:`register`. The actions are what the code
calls (never more); the options (or ``-c gitopsd.toml``: the apps' clusters and
regions, the ``[state]`` table) fill in the resources. ``python -m gitopsd.iam
--write`` regenerates the checked-in ``config/iam/*.json`` with placeholders.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Print the IAM policy gitopsd needs, as JSON: exactly the AWS actions its code can
call, each on the narrowest resources IAM allows (docs/iam.md explains each
statement). Without options the values are placeholders (ACCOUNT_ID, REGION,
CLUSTER, TASK_ROLE, EXECUTION_ROLE); -c reads the clusters, regions and state table
from a configuration file (no Git or AWS is contacted). --read-only prints the
variant for validate, diff, status and history (List and Read actions only).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``iam-policy``."""
    parser.add_argument(
        "--read-only", action="store_true", help="only the List and Read actions (diff, status)"
    )
    parser.add_argument("--account", metavar="ID", help="the AWS account id (default ACCOUNT_ID)")
    parser.add_argument(
        "--region", metavar="REGION", help="the region of the clusters (default: the config's)"
    )
    parser.add_argument(
        "--cluster",
        action="append",
        default=[],
        metavar="NAME",
        help="a cluster gitopsd manages (repeatable; added to the config's apps[].cluster)",
    )
    parser.add_argument(
        "--family",
        action="append",
        default=[],
        metavar="PATTERN",
        help="task-definition families gitopsd registers, '*' allowed (repeatable; default *)",
    )
    parser.add_argument(
        "--pass-role",
        action="append",
        default=[],
        metavar="ARN",
        help="a task or execution role ARN the task definitions name (repeatable)",
    )
    parser.add_argument(
        "--table", metavar="NAME", help="the DynamoDB state table (default: [state].table)"
    )
    parser.add_argument(
        "--no-table", action="store_true", help="no DynamoDB statement ([state] backend = dir)"
    )
    parser.add_argument(
        "--ssm-parameter",
        metavar="NAME",
        help="the SSM parameter $GITOPSD_CONFIG_SSM names (default /gitopsd/config)",
    )
    parser.add_argument(
        "--no-ssm", action="store_true", help="no SSM statement (the config is not read from SSM)"
    )
    parser.add_argument(
        "--kms-key",
        metavar="ARN",
        help="the customer managed KMS key of a SecureString parameter (adds kms:Decrypt)",
    )
    parser.add_argument("--partition", metavar="P", help="aws (default), aws-cn, aws-us-gov")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the CLI registers this command on every start.
    from gitopsd.config import load_config
    from gitopsd.iam.policy import build_policy, render, target_from

    clusters: list[tuple[str | None, str]] = []
    table: tuple[str | None, str | None] | None = None
    roles: list[str] | None = None
    region = args.region
    if args.config:
        cfg = load_config(Path(args.config))
        region = region or cfg.aws.region
        clusters = [(app.region, app.cluster) for app in cfg.apps]
        roles = [app.aws.role_arn for app in cfg.apps if app.aws is not None]
        if cfg.state.backend == "dynamodb":
            table = (cfg.state.table, cfg.state.region)
        else:
            table = (None, None)
    target = target_from(
        account=args.account,
        region=region,
        clusters=args.cluster,
        families=args.family,
        roles=args.pass_role,
        table=args.table,
        no_table=args.no_table or (table is not None and table[0] is None and not args.table),
        parameter=args.ssm_parameter,
        no_parameter=args.no_ssm,
        kms_key=args.kms_key,
        partition=args.partition,
        config_clusters=clusters,
        config_table=table,
        config_assume_roles=roles,
    )
    print(render(build_policy(target, read_only=args.read_only)), end="")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``iam-policy`` to the main CLI's subcommands."""
    parser = sub.add_parser(
        "iam-policy",
        help="print the least-privilege IAM policy (JSON) derived from the code",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        help="read the clusters, regions and state table from this configuration file",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
