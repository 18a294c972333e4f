"""Staged agent rollouts over SSM Run Command: discovery, preflight, execution, state, lease and audit.

Everything AWS-facing takes its boto3 clients, clock, state store and kill-switch reader as arguments,
so the engine runs unchanged against AWS, a moto server (``shunt sandbox``) or the fakes in the tests.
"""
