"""gitopsd: a GitOps agent for Amazon ECS.

Git holds the desired task definitions and services; gitopsd renders them,
plans a normalised diff against live state and applies exactly the difference.
"""

__version__ = "0.1.0.dev0"
