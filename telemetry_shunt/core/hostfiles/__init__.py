"""Files shipped to hosts by the SSM documents, kept as files (not Python strings) so that they can be read,
linted (shellcheck) and run as they are. Loaded by :mod:`telemetry_shunt.core.hostside` with
``importlib.resources``; ``@NAME@`` placeholders are filled there. ``killswitch_rule.py`` is also imported
by :mod:`telemetry_shunt.core.killswitch`: the host and everything else decide with the same file.
"""
