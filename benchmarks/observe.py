"""What the benchmarks read: the shims' call log, hub and slurmctld logs, slurmctld's RPC
statistics (sdiag), the login node's sshd log and slurmrestd's log, sockets, RSS.

All timestamps are wall-clock seconds (``time.time()``), the clock the shims,
JupyterHub's log and slurmctld's log all use on this one machine. sshd's log (``-E``)
and slurmrestd's have no timestamps: what they gained during a window is read from
the file offset marked at its start.
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
SDIAG = "/usr/bin/sdiag"
#: scripts/cluster/start-sshd.sh (``sshd -E``) and start-slurmrestd.sh
SSHD_LOG = Path("/var/log/hpcspawner-sshd.log")
RESTD_LOG = Path("/var/log/slurm/slurmrestd.log")
#: the account the hubs log in to the login node as (start-sshd.sh)
SSH_SERVICE = "hpcspawner-hub"

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
_CTLD_SUBMIT = re.compile(r"_slurm_rpc_submit_batch_job: JobId=(\d+)\b")


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
    return _ctld_times(_CTLD_START, job_ids)


def job_submit_times(job_ids: set[str]) -> dict[str, float]:
    """When slurmctld accepted each job's submission (its log line of the
    REQUEST_SUBMIT_BATCH_JOB it answered): the same clock whatever submitted it, sbatch
    on the hub's host or a login node, or slurmrestd."""
    return _ctld_times(_CTLD_SUBMIT, job_ids)


def _ctld_times(event: re.Pattern, job_ids: set[str]) -> dict[str, float]:
    """The first slurmctld log line of ``event`` for each job, by job id."""
    found: dict[str, float] = {}
    with SLURMCTLD_LOG.open(errors="replace") as f:
        for line in f:
            match = event.search(line)
            if match and match.group(1) in job_ids and match.group(1) not in found:
                stamp = _CTLD_LINE.match(line)
                if stamp:
                    found[match.group(1)] = _local_ts(stamp.group(1), "%Y-%m-%dT%H:%M:%S.%f")
    return found


# ---------------------------------------------------------------- slurmctld's RPC statistics

#: sdiag's rows: "\tREQUEST_JOB_INFO                        ( 2003) count:12     ave_time:..."
#: (by message type) and "\troot            (       0) count:23     ave_time:..." (by user)
_SDIAG_ROW = re.compile(r"^\s+(\S+)\s*\(\s*\d+\)\s+count:(\d+)")
_SDIAG_SECTIONS = {
    "Remote Procedure Call statistics by message type": "by_type",
    "Remote Procedure Call statistics by user": "by_user",
}

#: RPCs in a window that are not a hub's: the benchmark's own sdiag, and the cluster's
#: daemons (slurmd's node registrations and its job and step completions; every other
#: ``MESSAGE_*`` is a daemon's too)
NOT_THE_HUB = frozenset(
    {
        "REQUEST_STATS_INFO",
        "REQUEST_COMPLETE_BATCH_SCRIPT",
        "REQUEST_COMPLETE_PROLOG",
        "REQUEST_STEP_COMPLETE",
        "REQUEST_PERSIST_INIT",
    }
)


def parse_sdiag(text: str) -> dict[str, dict[str, int]]:
    """sdiag's RPC counts: ``{"by_type": {"REQUEST_JOB_INFO": 12, ...}, "by_user": {...}}``."""
    found: dict[str, dict[str, int]] = {"by_type": {}, "by_user": {}}
    section = None
    for line in text.splitlines():
        if not line.startswith((" ", "\t")):
            section = _SDIAG_SECTIONS.get(line.strip())
            continue
        match = _SDIAG_ROW.match(line)
        if section and match:
            found[section][match.group(1)] = int(match.group(2))
    return found


def hub_rpcs(by_type: dict[str, int]) -> dict[str, int]:
    """The RPCs of ``by_type`` a hub can have caused (see :data:`NOT_THE_HUB`)."""
    return {
        name: count
        for name, count in sorted(by_type.items())
        if name not in NOT_THE_HUB and not name.startswith("MESSAGE_")
    }


def _sdiag(*args: str) -> str:
    argv = [SDIAG, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{argv} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def sdiag_reset() -> None:
    """Start slurmctld's statistics afresh (``sdiag --reset``: root or SlurmUser)."""
    _sdiag("--reset")


def sdiag_rpcs() -> dict[str, dict[str, int]]:
    """slurmctld's RPC counts since the last :func:`sdiag_reset`, by type and by user."""
    return parse_sdiag(_sdiag())


# ---------------------------------------------------------------- the off-cluster daemons' logs

_SSH_LOGIN = re.compile(rf"Accepted publickey for {re.escape(SSH_SERVICE)} ")
#: slurmrestd: "operations_router: [[localhost]:54270] GET /slurm/v0.0.38/job/7"
_REST_REQUEST = re.compile(r"operations_router: \[(.+?)\] ([A-Z]+) (\S+)")
_JOB_ID_IN_PATH = re.compile(r"/\d+(?=/|$)")


def log_offsets() -> dict[str, int]:
    """Where sshd's and slurmrestd's logs end now (0 for a log that does not exist)."""
    return {name: _size(path) for name, path in (("sshd", SSHD_LOG), ("slurmrestd", RESTD_LOG))}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _since(path: Path, offset: int) -> str:
    """What ``path`` gained after ``offset`` (all of it if the file was replaced, shorter)."""
    try:
        with path.open("rb") as f:
            f.seek(0 if _size(path) < offset else offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def ssh_logins(text: str) -> int:
    """Logins of the hubs' service account that sshd accepted in ``text``: one per SSH
    connection opened."""
    return len(_SSH_LOGIN.findall(text))


def rest_requests(text: str) -> dict[str, int]:
    """slurmrestd's requests in ``text``, by method and path (job ids as ``{id}``)."""
    counts: dict[str, int] = {}
    for match in _REST_REQUEST.finditer(text):
        key = f"{match.group(2)} {_JOB_ID_IN_PATH.sub('/{id}', match.group(3))}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def rest_connections(text: str) -> int:
    """The client connections (address and port) slurmrestd's requests in ``text`` came on."""
    return len({match.group(1) for match in _REST_REQUEST.finditer(text)})


def daemon_counts(offsets: dict[str, int]) -> dict:
    """What the login node's sshd and slurmrestd logged since ``offsets``
    (:func:`log_offsets`): SSH logins, slurmrestd's requests and their connections."""
    sshd = _since(SSHD_LOG, offsets["sshd"])
    restd = _since(RESTD_LOG, offsets["slurmrestd"])
    return {
        "ssh_logins": ssh_logins(sshd),
        "rest_requests": rest_requests(restd),
        "rest_connections": rest_connections(restd),
    }


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
