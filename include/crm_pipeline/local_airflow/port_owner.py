"""Whose listening socket answers on a loopback port: ours, or another checkout's.

`make up` picks a free port (8080 when it can) and starts the api-server on it seconds later. Two checkouts
starting at once (two test workers, two developers) can pick the same port; the second api-server fails to bind,
and a health check on the port is answered by the first one's. The executors would then send their tasks to the
other checkout's api-server, against the other metadata database. So the start checks that the socket listening
on the port belongs to its own api-server's process tree (Linux's /proc, as the rest of the process handling).
"""

from __future__ import annotations

from pathlib import Path

from crm_pipeline.local_airflow.processes import process_tree

LISTEN = "0A"  # the TCP state column of /proc/net/tcp


def listening_inodes(port: int, proc: Path = Path("/proc")) -> set[str]:
    """Socket inodes listening on ``port`` (any local address, IPv4 or IPv6)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def owns_port(pid: int, port: int) -> bool:
    """True when a process of ``pid``'s tree holds a socket listening on ``port``."""
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    if not wanted:
        return False
    for member in process_tree(pid):
        try:
            fds = list(Path(f"/proc/{member}/fd").iterdir())
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                if str(fd.readlink()) in wanted:
                    return True
            except OSError:  # closed meanwhile (the listing's own descriptor is)
                continue
    return False
