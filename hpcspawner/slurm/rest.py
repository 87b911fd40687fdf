"""Reach Slurm through slurmrestd (JWT): the hub needs neither Slurm's clients nor munge.

:class:`RESTSlurmDriver` implements the driver interface with HTTP requests to
slurmrestd. Its parts:

- **The HTTP client is httpx** (the optional extra ``rest``): one
  ``httpx.AsyncClient`` per driver keeps its connections open and reuses them for
  every request (the poller's ``GET .../jobs`` per interval, or its ``GET .../job/{id}``
  per job on a busy cluster, see ``job_query``; the spawn page's
  partitions and nodes, the submissions), speaks to a unix socket through its
  transport's ``uds`` option with the same code, takes an ``ssl.SSLContext`` for a
  CA the admin names, and has separate connect/read timeouts. aiohttp would do too,
  but httpx is already in both test environments and has a smaller surface for a
  client that only sends JSON. Proxies from the hub's environment (``HTTPS_PROXY``) are
  not used: the tokens go to slurmrestd only.
- **API versions** live in one module each (:mod:`~hpcspawner.slurm.rest_v0038` for
  Slurm 22.05's ``openapi/v0.0.38``); with ``api_version = "auto"`` the driver reads
  the daemon's ``GET /openapi/v3`` at first use and takes the newest version both
  sides know, or refuses, naming what the daemon offers.
- **The token**: every request carries ``X-SLURM-USER-NAME`` (the user for
  ``submit``/``cancel``, :attr:`~RESTSlurmDriver.service_user` for queries) and
  ``X-SLURM-USER-TOKEN``: either minted by the hub from the cluster's
  ``jwt_hs256.key`` (:mod:`~hpcspawner.slurm.jwt`; a short lifetime, renewed before
  it ends) for the service user, which must be SlurmUser (or root) for its token to
  act for users; or read from a file the admin rotates (read again when it changes).
  Neither the token nor the key reaches a log or an exception.
- **Errors**: no connection is :class:`~hpcspawner.slurm.errors.ConnectionFailed` (or
  :class:`~hpcspawner.slurm.errors.ConnectTimeout`): nothing was sent; no answer in
  time is :class:`~hpcspawner.slurm.errors.SlurmTimeout` and a connection that broke
  mid-request :class:`~hpcspawner.slurm.errors.ConnectionLost`: a submission is then
  uncertain. All of them are "unknown" to the poller, never "gone". slurmrestd's
  answer to a bad token (HTTP 500 "Unspecified error") becomes a
  :class:`~hpcspawner.slurm.errors.SlurmError` that names the token; a job slurmrestd
  does not know (error 2017), cancelled or looked up, is gone, not an error.
- **The user's files**: slurmrestd cannot read or write files. ``read_output``
  returns a :class:`~hpcspawner.slurm.driver.JobOutput` saying the output is not
  available (the user sees the job's end reason without the tail); ``install_files``
  (the API token's file with ``c.SlurmSpawner.token_delivery = "file"``, the TLS files
  of ``c.JupyterHub.internal_ssl``) raises a :class:`~hpcspawner.slurm.errors.SlurmError`
  naming ``token_delivery = "environment"``, which the spawner shows as a failed start.
  **The seam**: :attr:`~RESTSlurmDriver.files`, another driver (e.g. an
  :class:`~hpcspawner.slurm.ssh.SSHSlurmDriver` to a login node) that does only the
  file operations, as the user, while slurmrestd does the scheduling. It is not
  configurable yet: the lead wires it when a site needs it.
- **update_time**: the poller's listing asks ``GET .../jobs?update_time=T`` with T the
  hub's time of the last full listing less :attr:`~RESTSlurmDriver.update_time_skew`.
  slurmctld answers "no change since T" (slurmrestd 22.05: HTTP 304, no body) when no
  job of the cluster changed, and the driver reuses the last listing; otherwise the
  answer is the whole listing again (v0.0.38 has no delta). It saves slurmctld's work on
  a quiet cluster only: any job's change anywhere sends the whole table. Per-job lookups
  (``GET .../job/{id}``, chosen by ``job_query``) leave it alone: the next listing still
  asks since the last full one. The queue's size for ``job_query = "auto"`` comes from
  ``GET .../diag`` (``jobs_pending`` + ``jobs_running``), if the daemon offers it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import time
from types import ModuleType

import httpx
from traitlets import Bool, Callable, Float, Instance, Integer, Unicode, validate

from ..loopback import is_loopback
from . import jwt, rest_v0038
from .accounting import with_account_tree
from .driver import OUTPUT_TAIL_BYTES, JobOutput, SlurmDriver, may_act_as
from .errors import ConnectionFailed, ConnectionLost, ConnectTimeout, SlurmError, SlurmTimeout
from .history import parse_rest_jobs
from .records import ParseError, check_user_name
from .snapshot import summarize

#: The API versions this driver speaks, newest first: version -> module.
VERSIONS: dict[str, ModuleType] = {rest_v0038.VERSION: rest_v0038}

#: What ``read_output`` says, completing "Its output file PATH ...".
OUTPUT_NOT_AVAILABLE = "cannot be read by the hub: slurmrestd gives no access to files"

#: Why install_files/remove_file cannot work, with the fixes.
NO_FILES = (
    "slurmrestd cannot write the user's files: the server's API token file "
    '(c.SlurmSpawner.token_delivery = "file", the default) and the TLS files of '
    "c.JupyterHub.internal_ssl need file access on the cluster. Set "
    'c.SlurmSpawner.token_delivery = "environment" (the token then travels in the job\'s '
    "environment and sits in Slurm's record of the job, readable by the user and by "
    "Slurm's admins) and turn internal_ssl off, or use a driver with file access"
)

_UNIX_PREFIX = "unix:"


class RESTSlurmDriver(SlurmDriver):
    """Reach Slurm through slurmrestd with JSON Web Tokens.

    The hub talks HTTP(S) to slurmrestd (``auth/jwt``), as the service user for
    queries and in the user's name for submitting and cancelling. See
    :doc:`/howto/rest-driver`.
    """

    #: slurmrestd 22.05 (v0.0.38) refuses ``"signal": "B:USR1@N"`` ("Invalid SIGNAL
    #: specification": its parser takes no ``B:``), and without ``B:`` Slurm signals the job's
    #: steps, never its batch shell, where the launcher waits (tried on the local cluster).
    #: The job's clock then saves on its own count-down only (docs/howto/job-clock.md).
    batch_signal = False

    url = Unicode(
        "",
        config=True,
        help="""Where slurmrestd listens: ``http(s)://host:port`` or a unix socket
        (``unix:/run/slurmrestd/slurmrestd.socket`` or just the absolute path).

        A path after the port is a prefix (a reverse proxy's location). Use https
        (behind a TLS reverse proxy, with :attr:`ca_file`) or a unix socket
        or loopback address: the requests carry a token that may act for every user.
        Required.

            c.RESTSlurmDriver.url = "https://slurmrestd.cluster.example.org:6820"
        """,
    )

    @validate("url")
    def _check_url(self, proposal):
        value = proposal.value.strip()
        if value and not (
            re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value)
            or value.startswith("/")
            or value.startswith(_UNIX_PREFIX + "/")
        ):
            raise ValueError(
                f"c.RESTSlurmDriver.url = {value!r}: expected http(s)://host:port (and a "
                "path prefix, behind a proxy), unix:/path/to/socket or /path/to/socket"
            )
        return value

    ca_file = Unicode(
        "",
        config=True,
        help="""A PEM file with the CA certificate(s) that signed slurmrestd's (or its
        proxy's) TLS certificate. Empty: the system's CAs.

            c.RESTSlurmDriver.ca_file = "/etc/jupyterhub/slurmrestd-ca.pem"
        """,
    )

    token_file = Unicode(
        "",
        config=True,
        help="""A file holding a JWT for :attr:`service_user` (e.g. the output of
        ``scontrol token username=slurm lifespan=...`` without ``SLURM_JWT=``), which the
        admin replaces before it expires. Read again whenever it changes. Readable by the
        hub only. Set this or :attr:`jwt_key_file`, not both.

            c.RESTSlurmDriver.token_file = "/etc/jupyterhub/slurmrestd.jwt"
        """,
    )

    jwt_key_file = Unicode(
        "",
        config=True,
        help="""The cluster's JWT key (``AuthAltParameters=jwt_key=...`` in slurm.conf,
        e.g. ``/var/spool/slurm/statesave/jwt_hs256.key``). The hub then mints its own
        short-lived tokens for :attr:`service_user` and renews them before they end.
        Whoever holds this key can act as any Slurm user: keep the copy readable by the
        hub only. Set this or :attr:`token_file`, not both.

            c.RESTSlurmDriver.jwt_key_file = "/etc/jupyterhub/jwt_hs256.key"
        """,
    )

    token_lifetime = Integer(
        600,
        config=True,
        help="""Seconds a token minted from :attr:`jwt_key_file` is valid. The hub makes a
        new one when less than a quarter of this (at least 30 s) is left.

            c.RESTSlurmDriver.token_lifetime = 600
        """,
    )

    @validate("keepalive")
    def _check_keepalive(self, proposal):
        if proposal.value < 0:
            raise ValueError(f"c.RESTSlurmDriver.keepalive = {proposal.value}: 0 or more seconds")
        return proposal.value

    @validate("token_lifetime")
    def _check_lifetime(self, proposal):
        if proposal.value < 60:
            raise ValueError(f"c.RESTSlurmDriver.token_lifetime = {proposal.value}: at least 60")
        return proposal.value

    service_user = Unicode(
        "slurm",
        config=True,
        help="""The Slurm user the hub's queries run as, and whom its tokens belong to.

        Must be Slurm's ``SlurmUser`` (or root): only their tokens may name another user
        in ``X-SLURM-USER-NAME``, which submitting and cancelling as the user needs.

            c.RESTSlurmDriver.service_user = "slurm"
        """,
    )

    request_timeout = Float(
        30.0,
        config=True,
        help="""Seconds a request to slurmrestd may take (connecting included).

        slurmrestd waits up to MessageTimeout (10 s) for slurmctld, so keep it above
        that. A slow request is "unknown": no server is stopped for it. (This driver
        runs no commands: ``command_timeout`` does not apply to it.)

            c.RESTSlurmDriver.request_timeout = 30
        """,
    )

    keepalive = Float(
        300.0,
        config=True,
        help="""Seconds an idle connection to slurmrestd stays open for the next request.

        Keep it above ``c.SlurmSpawner.poll_interval``: the poller's requests then all
        travel on one connection, with no TCP (and TLS) set-up per poll. httpx's own
        default, 5 s, is shorter than any usual poll interval. A connection slurmrestd (or
        a proxy in front of it) closed meanwhile is noticed before reuse, and a new one is
        opened. 0 opens a connection per request.

            c.RESTSlurmDriver.keepalive = 300
        """,
    )

    api_version = Unicode(
        "auto",
        config=True,
        help=f"""The slurmrestd API version to use: ``"auto"`` (read the daemon's
        ``/openapi/v3`` at first use and take the newest one both sides know) or one of
        {", ".join(VERSIONS)}.

            c.RESTSlurmDriver.api_version = "auto"
        """,
    )

    @validate("api_version")
    def _check_version(self, proposal):
        if proposal.value != "auto" and proposal.value not in VERSIONS:
            raise ValueError(
                f'c.RESTSlurmDriver.api_version = {proposal.value!r}: use "auto" or one of '
                f"{', '.join(VERSIONS)}"
            )
        return proposal.value

    use_update_time = Bool(
        True,
        config=True,
        help="""Ask slurmrestd for the job listing only if a job changed since the last
        full listing (``update_time``); an unchanged cluster answers "not modified" and
        costs slurmctld less. Turn off if the hub's clock cannot be kept within
        :attr:`update_time_skew` of slurmctld's.

            c.RESTSlurmDriver.use_update_time = True
        """,
    )

    update_time_skew = Float(
        60.0,
        config=True,
        help="""Seconds by which the hub's clock may be ahead of slurmctld's: ``update_time``
        is the time of the last full listing less this, so that no change is missed.

            c.RESTSlurmDriver.update_time_skew = 60
        """,
    )

    files = Instance(
        SlurmDriver,
        allow_none=True,
        help="""A driver for the user's files only (see the module's docstring); None:
        file operations are refused.""",
    )

    clock = Callable(
        time.time,
        help="""The time (seconds since the epoch) tokens are
        minted by; a test gives its own.""",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._client: httpx.AsyncClient | None = None
        self._api: ModuleType | None = None
        self._paths: frozenset[str] = frozenset()
        self._minted: tuple[str, int] | None = None
        self._token_cache: tuple[tuple, str] | None = None
        #: (the hub's time when the last full listing was asked for, the answer)
        self._listing: tuple[float, object] | None = None
        self._lock = asyncio.Lock()
        #: the log said once that there is no usage through slurmrestd
        self._said_no_usage = False

    @property
    def handles_files(self) -> bool:
        return self.files is not None

    def config_problems(self) -> list[str]:
        problems = []
        if not self.url:
            problems.append("c.RESTSlurmDriver.url is not set: name slurmrestd's address")
        try:
            self._token()
        except SlurmError as e:
            problems.append(e.stderr.strip())
        return problems

    # ------------------------------------------------------------ the token

    def _fail(self, what: str, message: str) -> SlurmError:
        return ConnectionFailed(["slurmrestd", what], None, message)

    def _token(self) -> str:
        """The token to send: minted (and renewed) from the key, or the file's."""
        if bool(self.jwt_key_file) == bool(self.token_file):
            raise self._fail(
                "token",
                "set exactly one of c.RESTSlurmDriver.jwt_key_file (the hub mints tokens) "
                "and c.RESTSlurmDriver.token_file (a token the admin rotates)",
            )
        if self.jwt_key_file:
            now = int(self.clock())
            renew_before = max(self.token_lifetime // 4, 30)
            if self._minted is None or now >= self._minted[1] - renew_before:
                try:
                    with open(self.jwt_key_file, "rb") as f:
                        key = f.read()
                except OSError as e:
                    raise self._fail(
                        "token", f"cannot read c.RESTSlurmDriver.jwt_key_file: {e.strerror}"
                    ) from None
                if not key:
                    raise self._fail("token", f"the JWT key file {self.jwt_key_file} is empty")
                token = jwt.mint(key, self.service_user, now, self.token_lifetime)
                self._minted = (token, now + self.token_lifetime)
                self.log.debug("Minted a slurmrestd token for %s", self.service_user)
            return self._minted[0]
        try:
            info = os.stat(self.token_file)
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
            if self._token_cache is None or self._token_cache[0] != stamp:
                with open(self.token_file, encoding="ascii") as f:
                    text = f.read().strip()
                text = text.removeprefix("SLURM_JWT=")
                if not re.fullmatch(r"[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]*", text):
                    raise self._fail(
                        "token", f"the token file {self.token_file} does not hold a JWT"
                    )
                self._token_cache = (stamp, text)
                self.log.info("Read the slurmrestd token from %s", self.token_file)
        except (OSError, UnicodeDecodeError) as e:
            raise self._fail(
                "token", f"cannot read c.RESTSlurmDriver.token_file {self.token_file}: {e}"
            ) from None
        token = self._token_cache[1]
        try:
            expires = jwt.claims_of(token).get("exp")
        except ValueError:
            expires = None  # not readable here: slurmrestd judges it
        if isinstance(expires, int) and expires <= self.clock():
            expired_at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires))
            raise self._fail(
                "token",
                f"the token in {self.token_file} expired at {expired_at}: put a new one "
                "there (scontrol token username=SlurmUser lifespan=...)",
            )
        return token

    # ------------------------------------------------------------ the connection

    def _make_client(self) -> httpx.AsyncClient:
        url = self.url
        if not url:
            raise self._fail("url", "c.RESTSlurmDriver.url is not set")
        timeout = httpx.Timeout(self.request_timeout)
        if url.startswith("/") or url.startswith(_UNIX_PREFIX):
            socket_path = url.removeprefix(_UNIX_PREFIX)
            transport = httpx.AsyncHTTPTransport(uds=socket_path, retries=0, limits=self._limits())
            return httpx.AsyncClient(
                base_url="http://slurmrestd", transport=transport, timeout=timeout, trust_env=False
            )
        verify: ssl.SSLContext | bool = True
        if url.startswith("https:"):
            try:
                verify = ssl.create_default_context(cafile=self.ca_file or None)
            except (OSError, ssl.SSLError) as e:
                raise self._fail("ca_file", f"cannot read c.RESTSlurmDriver.ca_file: {e}") from None
        elif not is_loopback(url):
            self.log.warning(
                "c.RESTSlurmDriver.url = %s is plain http to another host: every request "
                "carries a token that may act for every Slurm user. Put slurmrestd behind a "
                "TLS proxy (https) or use a unix socket",
                url,
            )
        transport = httpx.AsyncHTTPTransport(verify=verify, retries=0, limits=self._limits())
        # trust_env=False: no HTTP(S)_PROXY from the hub's environment sees the tokens
        return httpx.AsyncClient(
            base_url=url.rstrip("/"), transport=transport, timeout=timeout, trust_env=False
        )

    def _limits(self) -> httpx.Limits:
        return httpx.Limits(keepalive_expiry=self.keepalive)

    def _where(self, method: str, path: str) -> list[str]:
        return [method, f"{self.url.rstrip('/')}{path}"]

    async def _request(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        as_user: str | None = None,
        params: dict | None = None,
        body: dict | None = None,
    ) -> tuple[int, object]:
        """One request; returns (HTTP status, the decoded JSON answer or None).

        Raises the connection errors of the module docstring; the caller judges
        the status and Slurm's errors. ``body`` may hold secrets: never logged.
        """
        self._count(kind)
        argv = self._where(method, path)
        headers = {
            "X-SLURM-USER-NAME": as_user or self.service_user,
            "X-SLURM-USER-TOKEN": self._token(),
            "Accept": "application/json",
        }
        if self._client is None:
            self._client = self._make_client()
        self.log.debug("slurmrestd %s %s as %s", method, path, headers["X-SLURM-USER-NAME"])
        try:
            # httpx bounds each phase (connect, each read); this bounds the whole request
            response = await asyncio.wait_for(
                self._client.request(method, path, headers=headers, params=params, json=body),
                self.request_timeout + 1,
            )
        except asyncio.TimeoutError:
            raise SlurmTimeout(argv, self.request_timeout) from None
        except httpx.ConnectTimeout:
            raise ConnectTimeout(
                argv, self.request_timeout, f"no connection within {self.request_timeout:g} s"
            ) from None
        except httpx.TimeoutException:
            raise SlurmTimeout(argv, self.request_timeout) from None
        except httpx.ConnectError as e:
            raise ConnectionFailed(argv, None, f"cannot connect to slurmrestd: {e}") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
            raise ConnectionLost(argv, None, f"the connection to slurmrestd broke: {e}") from None
        except httpx.HTTPError as e:
            raise ConnectionFailed(argv, None, f"slurmrestd request failed: {e}") from None
        try:
            answer = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            answer = None
        return response.status_code, answer

    def _error(self, argv: list[str], status: int, answer: object) -> SlurmError:
        """A failed answer as a SlurmError whose text is Slurm's words (never the token)."""
        api = self._api or rest_v0038
        if api.token_rejected(status, answer):
            message = (
                'slurmrestd rejected the hub\'s token (HTTP 500 "Unspecified error", its '
                "answer to an invalid, expired or mismatched JWT): check "
                + (
                    "that c.RESTSlurmDriver.jwt_key_file is the cluster's jwt_hs256.key"
                    if self.jwt_key_file
                    else f"that the token in {self.token_file} is current"
                )
                + f" and that c.RESTSlurmDriver.service_user ({self.service_user}) is "
                "SlurmUser"
            )
            self.log.error("%s", message)
            return SlurmError(argv, status, message)
        if status == 401:
            return SlurmError(argv, status, "slurmrestd refused the request: no valid token")
        if status == 404:
            self._api = None  # the daemon may have been restarted with other versions: ask again
        words = "; ".join(text for _, text in api.errors_of(answer) if text)
        return SlurmError(argv, status, words or f"HTTP {status}")

    # ------------------------------------------------------------ the version

    async def _version(self) -> ModuleType:
        """The API module to use; probes ``/openapi/v3`` once."""
        if self._api is not None:
            return self._api
        async with self._lock:
            if self._api is not None:
                return self._api
            status, answer = await self._request("GET", "/openapi/v3", kind="openapi")
            if status != 200 or not isinstance(answer, dict):
                raise self._error(self._where("GET", "/openapi/v3"), status, answer)
            paths = answer.get("paths")
            paths = frozenset(paths if isinstance(paths, list | dict) else ())
            if self.api_version != "auto":
                api = VERSIONS[self.api_version]
                usable = [api] if api.offered(paths) else []
            else:
                usable = [api for api in VERSIONS.values() if api.offered(paths)]
            if not usable:
                offered = sorted(
                    {m.group(1) for p in paths if (m := re.match(r"/slurm/(v[^/]+)/", p))}
                )
                message = (
                    f"slurmrestd at {self.url} offers {', '.join(offered) or 'no Slurm API'}; "
                    f"this hub speaks {', '.join(VERSIONS)}"
                    + ("" if self.api_version == "auto" else f" (configured {self.api_version})")
                    + ": start slurmrestd with -s openapi/"
                    + next(iter(VERSIONS))
                )
                self.log.error("%s", message)
                raise SlurmError(["GET", "/openapi/v3"], status, message)
            self._paths, self._api = paths, usable[0]
            self.log.info("Using slurmrestd's API %s at %s", usable[0].VERSION, self.url)
            return self._api

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # ------------------------------------------------------------ the driver interface

    def _check_user(self, username: str, what: str) -> None:
        if not may_act_as(username):
            raise SlurmError(
                ["slurmrestd", what],
                None,
                f"refusing to {what} as {username!r:.40}: not a user name a server may run as",
            )

    async def submit(self, username, script, env):
        self._check_user(username, "submit")
        api = await self._version()
        argv = self._where("POST", api.SUBMIT_PATH)
        try:
            body = api.submit_body(script, env)
        except ValueError as e:
            raise SlurmError(
                argv, None, f"the job cannot be submitted through slurmrestd: {e}"
            ) from None
        status, answer = await self._request(
            "POST", api.SUBMIT_PATH, kind="sbatch", as_user=username, body=body
        )
        if status != 200:
            raise self._error(argv, status, answer)
        try:
            job_id = api.submitted_job_id(answer)
        except ParseError:
            raise self._error(argv, status, answer) from None
        # a job id means the job exists: errors beside it are reported, never a failure
        # (that would leave a job the hub does not know about)
        for number, text in api.errors_of(answer):
            self.log.warning(
                "slurmrestd accepted job %s of %s with error %s: %s", job_id, username, number, text
            )
        return job_id

    async def _jobs(self, api: ModuleType) -> object:
        """The job listing: asked again only if a job changed (see :attr:`use_update_time`)."""
        asked_at = self.clock()
        params = None
        if self.use_update_time and self._listing is not None:
            params = {"update_time": int(self._listing[0] - self.update_time_skew)}
        status, answer = await self._request("GET", api.JOBS_PATH, kind="squeue", params=params)
        if status == 304 and params is not None and self._listing is not None:
            self._count("squeue_unchanged")
            return self._listing[1]
        if status != 200 or api.errors_of(answer):
            raise self._error(self._where("GET", api.JOBS_PATH), status, answer)
        self._listing = (asked_at, answer)
        return answer

    async def _query_batch(self, job_ids):
        api = await self._version()
        jobs = api.parse_jobs(await self._jobs(api))
        return {job_id: jobs[job_id] for job_id in job_ids if job_id in jobs}

    async def _query_one(self, job_id):
        api = await self._version()
        try:
            path = api.job_path(job_id)
        except ValueError as e:
            raise SlurmError(["GET", str(job_id)[:40]], None, str(e)) from None
        status, answer = await self._request("GET", path, kind="squeue_job")
        if api.job_unknown(answer):
            return None  # Slurm does not know the job (any more): it is gone
        if status != 200 or api.errors_of(answer):
            raise self._error(self._where("GET", path), status, answer)
        return api.parse_job_lookup(answer, job_id)

    async def _read_queue_size(self):
        api = await self._version()
        if not api.has_diag(self._paths):
            return None  # not offered: the queue's size is unknown
        status, answer = await self._request("GET", api.DIAG_PATH, kind="sdiag")
        if status != 200 or api.errors_of(answer):
            raise self._error(self._where("GET", api.DIAG_PATH), status, answer)
        return api.parse_diag(answer)

    async def find_jobs(self, username, comment):
        api = await self._version()
        return api.comment_matches(await self._jobs(api), username, comment)

    async def cancel(self, username, job_id):
        self._check_user(username, "cancel")
        api = await self._version()
        try:
            path = api.job_path(job_id)
        except ValueError as e:
            raise SlurmError(["DELETE", str(job_id)[:40]], None, str(e)) from None
        status, answer = await self._request("DELETE", path, kind="scancel", as_user=username)
        if api.job_unknown(answer):
            return  # Slurm does not know the job (any more): it is gone
        if status != 200 or api.errors_of(answer):
            raise self._error(self._where("DELETE", path), status, answer)

    async def cluster_snapshot(self):
        api = await self._version()
        answers = []
        for path in (api.PARTITIONS_PATH, api.NODES_PATH):
            status, answer = await self._request("GET", path, kind="scontrol")
            if status != 200 or api.errors_of(answer):
                raise self._error(self._where("GET", path), status, answer)
            answers.append(answer)
        return summarize(api.parse_partitions(answers[0]), api.parse_nodes(answers[1]))

    async def user_associations(self, username):
        check_user_name(username)
        api = await self._version()
        answer = await self._accounting_get(api, api.ASSOCIATIONS_PATH, {"user": username})
        return None if answer is None else api.parse_associations(answer, username)

    async def qos_limits(self):
        api = await self._version()
        answer = await self._accounting_get(api, api.QOS_PATH)
        return None if answer is None else api.parse_qos(answer)

    async def user_accounting(self, username):
        check_user_name(username)
        api = await self._version()
        associations = await self._accounting_get(api, api.ASSOCIATIONS_PATH, {"user": username})
        if associations is None:
            return None
        user = await self._accounting_get(api, api.user_path(username))
        if user is None:
            return None
        accounting = api.parse_user_accounting(associations, user, username)

        async def account_rows(accounts: list[str]):
            params = {"account": ",".join(accounts)}
            answer = await self._accounting_get(api, api.ASSOCIATIONS_PATH, params)
            return None if answer is None else api.parse_account_rows(answer)

        return await with_account_tree(accounting, account_rows)

    async def _accounting_get(self, api, path: str, params: dict | None = None):
        """The answer to ``GET path`` of slurmrestd's accounting plugin; None when it serves
        none (no slurmdbd plugin loaded: no accounting). slurmdbd down (HTTP 500, "Unable
        to connect to database") is a :class:`SlurmError`."""
        if not api.has_accounting(self._paths):
            self.log.debug("slurmrestd serves no accounting (no slurmdbd plugin)")
            return None
        status, answer = await self._request("GET", path, kind="sacctmgr", params=params)
        if status == 404:
            return None
        if status != 200 or api.errors_of(answer):
            raise self._error(self._where("GET", path), status, answer)
        return answer

    async def job_history(self, job_ids):
        api = await self._version()
        if not api.has_accounting(self._paths):
            return None  # no slurmdbd plugin (dbv0.0.38) loaded: no accounting
        found = {}
        for job_id in job_ids:  # dbv0.0.38 looks jobs up one by one
            try:
                path = api.db_job_path(job_id)
            except ValueError as e:
                raise SlurmError(["GET", str(job_id)[:40]], None, str(e)) from None
            status, answer = await self._request("GET", path, kind="sacct")
            if api.job_unknown(answer):
                continue
            if status != 200 or api.errors_of(answer):
                raise self._error(self._where("GET", path), status, answer)
            found.update(
                (found_id, end)
                for found_id, end in parse_rest_jobs(answer).items()
                if found_id == str(job_id)
            )
        return found

    async def user_usage(self, username):
        check_user_name(username)
        if not self._said_no_usage:
            self._said_no_usage = True
            self.log.info(
                "Account usage is not available through slurmrestd (v0.0.38 has no shares "
                "endpoint): the spawn page shows none"
            )
        return None

    # ------------------------------------------------------------ the user's files

    async def install_files(self, username, directory, files):
        if self.files is not None:
            return await self.files.install_files(username, directory, files)
        raise SlurmError(["slurmrestd", "install_files"], None, NO_FILES)

    async def remove_file(self, username, path):
        if self.files is not None:
            return await self.files.remove_file(username, path)
        raise SlurmError(["slurmrestd", "remove_file"], None, NO_FILES)

    async def read_output(self, username, path, max_bytes=OUTPUT_TAIL_BYTES):
        if self.files is not None:
            return await self.files.read_output(username, path, max_bytes)
        return JobOutput(problem=OUTPUT_NOT_AVAILABLE)
