"""What the kernel shows of a live server, from /proc: evidence to wait on instead of sleeps.

A test that stages a fault (requests half sent, clients gone, a signal) must
know the server has reached the state it means to test. The kernel knows: a
connection the worker accepted is one of the worker's open files, and a
connection whose queues are empty has had every byte sent on it read by the
server. /proc/net/tcp and /proc/<pid>/fd say both, on Linux.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

from harness import children

ESTABLISHED = "01"
LISTEN = "0A"
POLL_S = 0.01  # how often to look again; the waits end on evidence or their timeout


@dataclass(frozen=True)
class Connection:
    """One TCP socket of /proc/net/tcp: ports, state, queued bytes, inode (0: no file)."""

    local_port: int
    remote_port: int
    state: str
    unsent: int  # tx_queue: sent by this end's application, not yet acknowledged
    unread: int  # rx_queue: arrived, not yet read by this end's application
    inode: int


def connections() -> list[Connection]:
    """Every TCP socket of this network namespace, IPv4 and IPv6."""
    found = []
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():  # no IPv6 on this machine
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            tx_queue, rx_queue = fields[4].split(":")
            found.append(Connection(int(fields[1].rsplit(":", 1)[1], 16),
                                    int(fields[2].rsplit(":", 1)[1], 16), fields[3],
                                    int(tx_queue, 16), int(rx_queue, 16), int(fields[9])))
    return found


def listening(port: int) -> bool:
    """True while any process listens on `port`."""
    return any(c.local_port == port and c.state == LISTEN for c in connections())


def sockets_of(pid: int) -> set[int]:
    """The inodes of the sockets process `pid` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants: gunicorn's master and workers."""
    found, pending = [], [pid]
    while pending:
        found.append(pending.pop())
        pending.extend(children(found[-1]))
    return found


def wait_for(condition, what: str, timeout: float = 30) -> None:
    """Wait until condition() is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(POLL_S)


def wait_until_read(server, socks, timeout: float = 30) -> None:
    """Wait until the server's worker has accepted each socket and read all sent on it.

    Then a request whose headers were sent is in the function's hands: the
    worker parsed them and is reading (or draining) its body.
    """
    ports = {sock.getsockname()[1] for sock in socks}
    deadline = time.monotonic() + timeout
    while True:
        held = set().union(*(sockets_of(pid) for pid in children(server.process.pid)))
        table = connections()
        server_ends = {c.remote_port: c for c in table
                       if c.local_port == server.port and c.state == ESTABLISHED}
        unsent = {c.local_port for c in table if c.remote_port == server.port and c.unsent}
        waiting = sorted(port for port in ports
                         if port not in server_ends or server_ends[port].inode not in held
                         or server_ends[port].unread or port in unsent)
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not accept and read connections {waiting} "
                                 f"within {timeout} s")
        time.sleep(POLL_S)


def wait_until_released(server, ports, timeout: float = 30) -> None:
    """Wait until the server's worker holds no socket for any of these client ports."""
    deadline = time.monotonic() + timeout
    while True:
        held = set().union(*(sockets_of(pid) for pid in children(server.process.pid)))
        kept = sorted(c.remote_port for c in connections()
                      if c.local_port == server.port and c.remote_port in ports
                      and c.inode in held)
        if not kept:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the server still holds connections {kept} after {timeout} s")
        time.sleep(POLL_S)


def peak_rss_kib(pid: int) -> int:
    """The most resident memory process `pid` has held so far (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")
