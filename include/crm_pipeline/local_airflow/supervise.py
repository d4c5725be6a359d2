"""Start a component again when it exits on its own, as systemd's ``Restart=on-failure`` or a Kubernetes pod's
restart policy would.

Airflow's scheduler exits when its metadata database goes away (a restart, a failover) and relies on whatever
runs it to start it again; so does any component killed by the kernel. ``make cluster-up`` runs each Airflow
component under this loop: ``python -m crm_pipeline.local_airflow.supervise -- airflow scheduler``.

A stop (SIGTERM or SIGINT to the supervisor, or to its process group as ``make cluster-down`` sends) is passed on
and ends the loop. A component that exits with 0 is done. Anything else is started again after a delay that
doubles while it keeps failing at once (1 s up to 30 s), and resets once it has run for a minute.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
HEALTHY_AFTER_S = 60.0


def supervise(argv: list[str]) -> int:
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    delay = FIRST_DELAY_S
    while True:
        started = time.monotonic()
        child = subprocess.Popen(argv)  # same process group: a stop sent to the group reaches it too
        code = child.wait()
        if stopping or code == 0:
            return code
        if time.monotonic() - started > HEALTHY_AFTER_S:
            delay = FIRST_DELAY_S
        print(f"supervise: {' '.join(argv[:3])} exited with {code}; starting it again in {delay:.0f} s", flush=True)
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        if stopping:
            return code
        delay = min(delay * 2, MAX_DELAY_S)


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m crm_pipeline.local_airflow.supervise -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    code = supervise(args)
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention, 128 + its number


if __name__ == "__main__":
    sys.exit(main())
