"""The kill-switch decision rule: the one copy.

``telemetry_shunt.core.killswitch`` imports this module, and the host watcher runs this same file's text
with ``python3 -c`` (standard library only, Python 3.6+ syntax: Amazon Linux 2 ships 3.7):

    python3 -c "$RULE" <global flag> <per-AZ flag prefix> [<az>] < flag-json

prints ``on`` or ``off``; exits 2 without output when the body is not a JSON object, which the watcher
treats like an unreachable agent. The flag names are arguments so that they are defined in one place
(``core/contract.py``).
"""

import json
import sys
from collections.abc import Mapping


def telemetry_enabled(flags, az, global_flag, az_flag_prefix):
    """On only if the global flag is enabled and, when ``az`` is given, its per-AZ flag is not disabled.

    An absent or malformed flag is "not set": the global flag then means off (a kill switch that cannot be
    read as on must not keep telemetry running), a per-AZ flag follows the global one. Only the JSON value
    ``true`` enables.
    """

    def enabled(key, default):
        value = flags.get(key)
        if not isinstance(value, Mapping) or "enabled" not in value:
            return default
        return value["enabled"] is True

    if not enabled(global_flag, False):
        return False
    return az is None or enabled(az_flag_prefix + az, True)


def main(argv):
    global_flag, az_flag_prefix = argv[0], argv[1]
    az = argv[2] if len(argv) > 2 and argv[2] else None
    try:
        flags = json.load(sys.stdin)
    except ValueError:
        return 2
    if not isinstance(flags, dict):
        return 2
    print("on" if telemetry_enabled(flags, az, global_flag, az_flag_prefix) else "off")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
