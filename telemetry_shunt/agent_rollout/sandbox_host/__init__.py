"""The simulated parts of a sandbox host, installed on its PATH (``sim-bin``): a ``systemctl`` that starts
and stops processes from the real unit files, an ``aws`` that sends ``put-metric-data`` to the sandbox's
moto, ``tc``/``ip`` that touch nothing, and the agent stand-in the artifact store serves.
"""
