"""Collector container images, pinned by tag in this one place.

No collector binary is installed or trusted in this repository: the fleet runs these published
images, and the configurations rendered by :mod:`telemetry_shunt.core.collectors` are written for
these versions. Bump a tag here (and only here) after reading the upstream changelog; the rendered
configuration changes with it only if the renderer changes.

- Vector >= 0.51 is needed for the ``opentelemetry`` sink's ``otlp`` codec (Vector's "OTLP Support"
  release note, 0.50.0: "The above configuration will only work with Vector versions >= 0.51").
  The ``-debian`` variant is used because it ships ``/bin/sh``, which writes the rendered config
  from an environment variable to a file before ``exec vector``.
- The OpenTelemetry Collector *contrib* distribution is needed for ``awss3``, ``awsemf``,
  ``file_storage``, ``prometheus`` and ``metricstransform``; it reads its configuration straight from
  an environment variable (``--config=env:NAME``), so no shell is needed.
"""

from __future__ import annotations

from types import MappingProxyType

from telemetry_shunt.errors import ValidationError

VECTOR_IMAGE = "timberio/vector:0.51.1-debian"
OTEL_COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib:0.139.0"

IMAGES = MappingProxyType({"vector": VECTOR_IMAGE, "otel": OTEL_COLLECTOR_IMAGE})


def image_for(collector: str) -> str:
    """The pinned image of ``collector`` (``"vector"`` or ``"otel"``)."""
    try:
        return IMAGES[collector]
    except KeyError:
        raise ValidationError(f"no image pinned for collector {collector!r}; use one of {', '.join(IMAGES)}") from None
