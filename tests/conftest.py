import os

# jsii prints a Node end-of-life banner on every run unless the major version is listed here.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
# No test may reach AWS: fake credentials and a fixed Region for every boto3/botocore client.
for key, value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}.items():
    os.environ.setdefault(key, value)
os.environ.pop("AWS_PROFILE", None)

# Hypothesis in `make test` is deterministic and load-independent: the same examples on every run (a fresh
# clone has no example database, so random draws could fail CI on an example nobody saw before), no per-example
# deadline and no "too slow" health check (both measure wall time, which a busy machine cannot promise).
# HYPOTHESIS_PROFILE=explore draws new examples, as a developer hunting for bugs wants.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
