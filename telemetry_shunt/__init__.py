"""telemetry-shunt: take observability traffic off the application's network path.

Sub-packages by role:

- ``core``: pure Python (routes, pushers, push-only policies and their offline evaluator,
  collector configs, rollout plans, validation). Imports nothing from CDK or boto3.
- ``constructs``: CDK L3 constructs (``pip install telemetry-shunt[cdk]``).
- ``stacks``: deployable stacks wiring the constructs.
- ``agent_rollout``: staged agent rollouts and the kill switch (``[rollout]``).
- ``client``: the in-app telemetry client (``[client]``, botocore only).
- ``verify``: the push-only proof behind ``shunt policy prove`` (``[verify]``: z3-solver, iamprover).

``shunt sandbox`` needs ``[sandbox]`` (moto server); ``[all]`` installs every extra.
"""

__version__ = "0.1.0"
