"""What the benchmarks read: the shims' call log, hub and slurmctld logs, sockets, RSS.

All timestamps are wall-clock seconds (``time.time()``), the clock the shims,
JupyterHub's log and slurmctld's log all use on this one machine.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

SLURMCTLD_LOG = Path("/var/log/slurm/slurmctld.log")
SQUEUE = "/usr/bin/squeue"  # the benchmark's own queries bypass the shims

# ---------------------------------------------------------------- scheduler calls


@dataclass(frozen=True)
class Call:
    start: float
    #: None when the call never returned (killed on a timeout or with its hub)
    end: float | None
    command: str
    uid: int
    rc: int | None
    args: str


def read_calls(log: Path) -> list[Call]:
    """The shims' calls, in start order, from their start (S) and end (E) lines."""
    calls: list[Call] = []
    running: dict[str, int] = {}  # "command:shim pid" -> index in calls
    for line in log.read_text().splitlines():
        parts = line.split(" ", 5)
        if len(parts) < 5:
            continue
        kind, stamp, command, uid, pid = parts[:5]
        rest = parts[5] if len(parts) > 5 else ""
        key = f"{command}:{pid}"
        if kind == "S":
            running[key] = len(calls)
            calls.append(Call(float(stamp), None, command, int(uid), None, rest))
        elif kind == "E" and key in running:
            index = running.pop(key)
            calls[index] = replace(calls[index], end=float(stamp), rc=int(rest or 0))
    return calls


def calls_between(log: Path, since: float, until: float | None = None) -> list[Call]:
    until = float("inf") if until is None else until
    return [c for c in read_calls(log) if since <= c.start < until]


def count_by_command(calls: list[Call]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        counts[call.command] = counts.get(call.command, 0) + 1
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------- log timestamps

_HUB_LINE = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")
_CTLD_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})\] ")
_CTLD_START = re.compile(r"(?:sched: Allocate JobId=|_start_job: Started JobId=)(\d+)\b")


def _local_ts(text: str, fmt: str) -> float:
    return datetime.strptime(text, fmt).timestamp()


def hub_log_events(path: Path, pattern: str, since: float) -> list[tuple[float, re.Match]]:
    """(time, match) of the hub log lines matching ``pattern`` logged at or after ``since``."""
    regex = re.compile(pattern)
    found = []
    for line in path.read_text(errors="replace").splitlines():
        stamp = _HUB_LINE.match(line)
        if not stamp:
            continue
        when = _local_ts(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f")
        if when < since - 0.001:
            continue
        match = regex.search(line)
        if match:
            found.append((when, match))
    return found


def job_start_times(job_ids: set[str]) -> dict[str, float]:
    """When slurmctld started each job (its log, millisecond resolution)."""
    found: dict[str, float] = {}
    with SLURMCTLD_LOG.open(errors="replace") as f:
        for line in f:
            match = _CTLD_START.search(line)
            if match and match.group(1) in job_ids and match.group(1) not in found:
                stamp = _CTLD_LINE.match(line)
                if stamp:
                    found[match.group(1)] = _local_ts(stamp.group(1), "%Y-%m-%dT%H:%M:%S.%f")
    return found


# ---------------------------------------------------------------- sockets


def _listening(uid: int) -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 7 and fields[3] == "0A" and int(fields[7]) == uid:
                ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


class ListenWatcher:
    """Records when each new listening TCP port of ``uid`` appears (root network namespace).

    Polls ``/proc/net/tcp{,6}`` every 10 ms in a thread; jobs on node ``vm`` share
    the hub's network namespace, so their servers show up here.
    """

    def __init__(self, uid: int, interval: float = 0.01):
        self.uid = uid
        self.interval = interval
        self.first_seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._known = _listening(uid)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ListenWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            current = _listening(self.uid)
            for port in current - self._known:
                self.first_seen.setdefault(port, now)
            self._known = current
            time.sleep(self.interval)


# ---------------------------------------------------------------- the hub


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time of the process itself, and of its waited-for children (the Slurm commands)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(v) / ticks for v in fields[11:15])
    return utime + stime, cutime + cstime


class ApiSampler:
    """A second client: ``GET /hub/api/users`` back to back, recording each latency."""

    def __init__(self, hub, pause: float = 0.1):
        self.hub = hub
        self.pause = pause
        self.samples: list[tuple[float, float, int]] = []  # (sent at, seconds, status)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ApiSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import requests

        session = requests.Session()
        session.trust_env = False
        session.verify = self.hub.session.verify
        headers = {"Authorization": f"token {self.hub.admin_token}"}
        while not self._stop.is_set():
            sent = time.time()
            t0 = time.perf_counter()
            try:
                status = session.get(
                    f"{self.hub.url}/hub/api/users", headers=headers, timeout=60
                ).status_code
            except requests.RequestException:
                status = 0
            self.samples.append((sent, time.perf_counter() - t0, status))
            time.sleep(self.pause)


def job_visible(job_id: str) -> bool:
    """Whether ``squeue`` (default filter: pending, running, completing) still lists the job."""
    out = subprocess.run(
        [SQUEUE, "--noheader", f"--jobs={job_id}", "--format=%T"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    return bool(out.strip())


# ---------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def spread(values: list[float]) -> dict[str, float] | None:
    """min / median / max (and n) of a list of seconds."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {
        "n": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }
