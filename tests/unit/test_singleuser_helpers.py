"""hpcspawner.job.launcher: the pure helpers of the job-side launcher."""

from __future__ import annotations

import random

import pytest

from hpcspawner.job.launcher import (
    candidate_ports,
    exit_code,
    listening_inodes,
    parse_port_range,
    server_environment,
    service_url_with_port,
    take_token,
)

# ---------------------------------------------------------------- parse_port_range


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(None, None, id="unset"),
        pytest.param("", None, id="empty"),
        pytest.param("40000-49999", (40000, 49999), id="range"),
        pytest.param(" 40000 - 49999 ", (40000, 49999), id="spaces"),
        pytest.param("8888-8888", (8888, 8888), id="one-port"),
        pytest.param("1-65535", (1, 65535), id="everything"),
    ],
)
def test_parse_port_range(text, expected):
    assert parse_port_range(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("40000", "is not LOW-HIGH", id="single"),
        pytest.param("40000:49999", "is not LOW-HIGH", id="colon"),
        pytest.param("a-b", "is not LOW-HIGH", id="words"),
        pytest.param("-5-10", "is not LOW-HIGH", id="negative"),
        pytest.param("40000-", "is not LOW-HIGH", id="open-end"),
        pytest.param("1.5-2", "is not LOW-HIGH", id="fraction"),
        pytest.param("49999-40000", "is not a valid port range", id="reversed"),
        pytest.param("0-100", "is not a valid port range", id="zero"),
        pytest.param("60000-65536", "is not a valid port range", id="too-high"),
    ],
)
def test_parse_port_range_rejects(text, message):
    with pytest.raises(ValueError, match=message) as caught:
        parse_port_range(text)
    assert f"HPCSPAWNER_PORT_RANGE={text!r}" in str(caught.value)


# ---------------------------------------------------------------- candidate_ports


@pytest.mark.parametrize("count", [1, 10])
def test_candidate_ports_without_range_lets_the_os_choose(count):
    assert candidate_ports(None, count, random.Random(1)) == [0] * count


def test_candidate_ports_in_range():
    ports = candidate_ports((40000, 49999), 10, random.Random(42))
    assert len(ports) == 10
    assert len(set(ports)) == 10
    assert all(40000 <= port <= 49999 for port in ports)
    assert ports != sorted(ports)  # random order, not a scan from the bottom


def test_candidate_ports_seeded_is_reproducible():
    first = candidate_ports((40000, 49999), 10, random.Random(7))
    assert candidate_ports((40000, 49999), 10, random.Random(7)) == first
    assert candidate_ports((40000, 49999), 10, random.Random(8)) != first


@pytest.mark.parametrize(
    ("port_range", "count", "size"),
    [
        pytest.param((8888, 8890), 10, 3, id="range-smaller-than-count"),
        pytest.param((8888, 8888), 10, 1, id="one-port"),
        pytest.param((8000, 8009), 10, 10, id="range-equals-count"),
        pytest.param((8000, 8999), 0, 0, id="zero-count"),
    ],
)
def test_candidate_ports_never_repeats(port_range, count, size):
    ports = candidate_ports(port_range, count, random.Random(3))
    assert len(ports) == size
    assert len(set(ports)) == size
    low, high = port_range
    assert set(ports) <= set(range(low, high + 1))


# ---------------------------------------------------------------- listening_inodes

# A /proc/net/tcp as a compute node shows it while jupyterhub-singleuser starts on 8888
# (0x22B8): the server listens on 0.0.0.0:8888 (inode 5512301), a client is connected to it
# (ESTABLISHED, both directions), another user's server listens on 8889, sshd on 22, and a
# TIME_WAIT socket still names port 8888 from a previous run.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20431 1 0000000000000000 100 0 0 10 0
   1: 00000000:22B8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 5512301 1 0000000000000000 100 0 0 10 0
   2: 0100007F:22B9 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1002        0 5512377 1 0000000000000000 100 0 0 10 0
   3: 0A000042:22B8 0A000001:D3C4 01 00000000:00000000 02:000A7E2C 00000000  1001        0 5512390 1 0000000000000000 20 4 30 10 -1
   4: 0A000001:D3C4 0A000042:22B8 01 00000000:00000000 00:00000000 00000000  1001        0 5512389 1 0000000000000000 20 4 0 10 -1
   5: 0A000042:22B8 0A000001:C001 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
"""

# /proc/net/tcp6: the server also listens on [::]:8888 (inode 5512302).
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:22B8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 5512302 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19001 1 0000000000000000 100 0 0 10 0
"""


@pytest.mark.parametrize(
    ("table", "port", "inodes"),
    [
        pytest.param(PROC_NET_TCP, 8888, {"5512301"}, id="listen-not-established"),
        pytest.param(PROC_NET_TCP, 8889, {"5512377"}, id="other-port"),
        pytest.param(PROC_NET_TCP, 22, {"20431"}, id="sshd"),
        pytest.param(PROC_NET_TCP, 9999, set(), id="nobody-listens"),
        pytest.param(PROC_NET_TCP, 54212, set(), id="client-port-established-only"),
        pytest.param(PROC_NET_TCP6, 8888, {"5512302"}, id="tcp6"),
        pytest.param(PROC_NET_TCP6, 631, {"19001"}, id="tcp6-loopback"),
        pytest.param("", 8888, set(), id="empty"),
        pytest.param(PROC_NET_TCP.splitlines()[0], 8888, set(), id="header-only"),
    ],
)
def test_listening_inodes(table, port, inodes):
    assert listening_inodes(table, port) == inodes


def test_listening_inodes_skips_odd_lines():
    table = (
        PROC_NET_TCP.splitlines()[0]
        + "\n\n   9: short line\n"
        + "  10: 00000000:ZZZZ 00000000:0000 0A 0 0 0 0 0 777 1\n"
        + PROC_NET_TCP.splitlines()[2]
        + "\n"
    )
    assert listening_inodes(table, 8888) == {"5512301"}


def test_listening_inodes_ignores_first_line_even_if_it_looks_like_data():
    """The first line is always the header, whatever it holds."""
    data = PROC_NET_TCP.splitlines()[2]
    assert listening_inodes(data, 8888) == set()
    assert listening_inodes(data + "\n" + data, 8888) == {"5512301"}


# ---------------------------------------------------------------- service_url_with_port


@pytest.mark.parametrize(
    ("url", "port", "expected"),
    [
        pytest.param(
            "http://127.0.0.1:0/user/alice/",
            40001,
            "http://127.0.0.1:40001/user/alice/",
            id="ipv4",
        ),
        pytest.param("http://0.0.0.0:0/", 8888, "http://0.0.0.0:8888/", id="any-ipv4"),
        pytest.param(
            "http://[::1]:0/user/alice/", 40001, "http://[::1]:40001/user/alice/", id="ipv6"
        ),
        pytest.param("http://[::]:8888/", 9000, "http://[::]:9000/", id="any-ipv6"),
        pytest.param(
            "http://[fd00:1::42]/user/alice/",
            9000,
            "http://[fd00:1::42]:9000/user/alice/",
            id="ipv6-without-port",
        ),
        pytest.param(
            "https://node01.cluster.example:0/user/alice/srv/",
            40001,
            "https://node01.cluster.example:40001/user/alice/srv/",
            id="hostname-https",
        ),
        pytest.param("http://node01/", 8888, "http://node01:8888/", id="hostname-without-port"),
        pytest.param(
            "http://node01:1/user/alice/?a=1#frag",
            8888,
            "http://node01:8888/user/alice/?a=1#frag",
            id="query-and-fragment-kept",
        ),
    ],
)
def test_service_url_with_port(url, port, expected):
    assert service_url_with_port(url, port) == expected


# ---------------------------------------------------------------- exit_code


@pytest.mark.parametrize(
    ("returncode", "code"),
    [
        pytest.param(0, 0, id="success"),
        pytest.param(1, 1, id="failure"),
        pytest.param(255, 255, id="255"),
        pytest.param(-15, 143, id="SIGTERM"),
        pytest.param(-9, 137, id="SIGKILL"),
        pytest.param(-2, 130, id="SIGINT"),
    ],
)
def test_exit_code(returncode, code):
    assert exit_code(returncode) == code


# ---------------------------------------------------------------- the API token


def test_take_token_reads_and_deletes_the_file(tmp_path):
    path = tmp_path / "api-token-abc"
    path.write_bytes(b"0123456789abcdef\n")
    env = {"HPCSPAWNER_TOKEN_FILE": str(path), "JUPYTERHUB_API_TOKEN": "from-env"}
    assert take_token(env) == "0123456789abcdef"
    assert not path.exists()


def test_take_token_from_the_environment_without_a_file():
    assert take_token({"JUPYTERHUB_API_TOKEN": "from-env"}) == "from-env"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "cannot read the token file", id="missing"),
        pytest.param(b"", "does not hold a token", id="empty"),
        pytest.param(b"two words", "does not hold a token", id="space-inside"),
        pytest.param("tök".encode(), "does not hold a token", id="non-ascii"),
        pytest.param(b"tok\x00en", "does not hold a token", id="nul"),
        pytest.param(b"t" * 5000, "does not hold a token", id="too-large"),
    ],
)
def test_take_token_refuses_a_bad_file_and_still_deletes_it(tmp_path, content, message):
    path = tmp_path / "api-token-abc"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        take_token({"HPCSPAWNER_TOKEN_FILE": str(path), "JUPYTERHUB_API_TOKEN": "x"})
    assert not path.exists()


def test_take_token_needs_a_token_somewhere():
    with pytest.raises(ValueError, match="neither HPCSPAWNER_TOKEN_FILE nor JUPYTERHUB_API_TOKEN"):
        take_token({"JUPYTERHUB_API_URL": "http://hub:8081/hub/api"})


def test_server_environment_has_the_token_not_the_file():
    env = {"HPCSPAWNER_TOKEN_FILE": "/home/a/t", "JUPYTERHUB_USER": "a", "PATH": "/bin"}
    assert server_environment(env, "tok") == {
        "JUPYTERHUB_USER": "a",
        "PATH": "/bin",
        "JUPYTERHUB_API_TOKEN": "tok",
        "JPY_API_TOKEN": "tok",
    }
    assert "JUPYTERHUB_API_TOKEN" not in env, "the launcher's own environment is left alone"
