"""hpcspawner.spawner.callback.parse_port_body: the only thing a starting job may tell the hub."""

from __future__ import annotations

import pytest

from hpcspawner.spawner.callback import parse_port_body


@pytest.mark.parametrize(
    ("body", "port_range", "port"),
    [
        pytest.param(b'{"port": 8888}', None, 8888, id="valid"),
        pytest.param(b'{"port":1}', None, 1, id="lowest"),
        pytest.param(b'{"port": 65535}', None, 65535, id="highest"),
        pytest.param(b' \n{"port": 8888}\n', None, 8888, id="whitespace"),
        pytest.param(b'{"port": 40000}', (40000, 49999), 40000, id="range-low-end"),
        pytest.param(b'{"port": 49999}', (40000, 49999), 49999, id="range-high-end"),
        pytest.param('{"port": 8888}'.encode("utf-16"), None, 8888, id="utf-16"),
    ],
)
def test_valid(body, port_range, port):
    assert parse_port_body(body, port_range) == port


@pytest.mark.parametrize(
    ("body", "port_range", "message"),
    [
        pytest.param(b"", None, 'body must be JSON: {"port": <int>}', id="empty"),
        pytest.param(None, None, 'body must be JSON: {"port": <int>}', id="none"),
        pytest.param(b"port=8888", None, 'body must be JSON: {"port": <int>}', id="form-encoded"),
        pytest.param(b'{"port": 88', None, 'body must be JSON: {"port": <int>}', id="truncated"),
        pytest.param(b"\xff\xfe\xfd", None, 'body must be JSON: {"port": <int>}', id="binary"),
        pytest.param(b"[8888]", None, 'body must be a JSON object: {"port": <int>}', id="list"),
        pytest.param(b"8888", None, 'body must be a JSON object: {"port": <int>}', id="number"),
        pytest.param(b'"8888"', None, 'body must be a JSON object: {"port": <int>}', id="string"),
        pytest.param(b"null", None, 'body must be a JSON object: {"port": <int>}', id="null"),
        pytest.param(
            b'{"port": 8888, "ip": "10.0.0.66"}',
            None,
            "only 'port' may be reported, not 'ip'",
            id="extra-ip",
        ),
        pytest.param(
            b'{"port": 8888, "user": "root", "cmd": "sh"}',
            None,
            "only 'port' may be reported, not 'cmd', 'user'",
            id="extra-keys-sorted",
        ),
        pytest.param(
            b'{"' + b"k" * 100 + b'": 1, "port": 8888}',
            None,
            "only 'port' may be reported, not '" + "k" * 40 + "'",
            id="long-key-shortened",
        ),
        pytest.param(b"{}", None, "'port' must be an integer", id="no-port"),
        pytest.param(b'{"port": "8888"}', None, "'port' must be an integer", id="string-port"),
        pytest.param(b'{"port": true}', None, "'port' must be an integer", id="bool-port"),
        pytest.param(b'{"port": 8888.0}', None, "'port' must be an integer", id="float-port"),
        pytest.param(b'{"port": null}', None, "'port' must be an integer", id="null-port"),
        pytest.param(b'{"port": [8888]}', None, "'port' must be an integer", id="list-port"),
        pytest.param(b'{"port": NaN}', None, "'port' must be an integer", id="nan-port"),
        pytest.param(
            b'{"port": 0}', None, "port 0 is outside the allowed range 1-65535", id="zero"
        ),
        pytest.param(
            b'{"port": -1}', None, "port -1 is outside the allowed range 1-65535", id="negative"
        ),
        pytest.param(
            b'{"port": 65536}', None, "port 65536 is outside the allowed range 1-65535", id="big"
        ),
        pytest.param(
            b'{"port": 39999}',
            (40000, 49999),
            "port 39999 is outside the allowed range 40000-49999",
            id="below-configured-range",
        ),
        pytest.param(
            b'{"port": 50000}',
            (40000, 49999),
            "port 50000 is outside the allowed range 40000-49999",
            id="above-configured-range",
        ),
    ],
)
def test_invalid(body, port_range, message):
    with pytest.raises(ValueError) as caught:
        parse_port_body(body, port_range)
    assert str(caught.value) == message


def test_duplicate_keys_last_wins():
    """JSON allows repeated keys; the last one counts, and it must still be valid."""
    assert parse_port_body(b'{"port": 1, "port": 8888}', None) == 8888
    with pytest.raises(ValueError, match="must be an integer"):
        parse_port_body(b'{"port": 8888, "port": "x"}', None)


def test_deeply_nested_body_is_a_value_error():
    with pytest.raises(ValueError):
        parse_port_body(b"[" * 100_000, None)
