"""Prove synthesized auth policies push-only: ``shunt policy prove`` (``pip install 'telemetry-shunt[verify]'``).

- :mod:`telemetry_shunt.verify.subject` (pure Python): read templates, find the Lattice service, its
  policies and the pushers and routes to prove them against.
- :mod:`telemetry_shunt.verify.proof` (Z3 and iamprover, the ``verify`` extra): the five invariants.
"""
