"""gitopsd's IAM policy, derived from the AWS calls in its code.

``collect`` reads the package's source for every AWS operation it can call,
``actions`` says which IAM actions each needs and how far each can be scoped,
``policy`` builds the documents (full, and read-only for ``diff``/``status``),
``command`` is ``gitopsd iam-policy``. ``python -m gitopsd.iam --write``
regenerates ``config/iam/*.json``; tests/test_iam.py fails when they drift from
the code. See docs/iam.md.
"""
