"""hpcspawner.auth.mapping, .posix and .oidc: login -> cluster user name, and OIDC discovery."""

from __future__ import annotations

import json
import pwd
import re

import pytest

from hpcspawner.accounts.posix import lookup_posix_account
from hpcspawner.auth.mapping import (
    MappingError,
    MappingRules,
    check_account_map,
    check_pin,
    check_template,
    check_username,
    compile_pattern,
    identity_pin,
    parse_username_map,
    username_from_claims,
)
from hpcspawner.auth.oidc import (
    DiscoveryError,
    ProviderMetadata,
    check_issuer,
    discovery_url,
    is_loopback,
    parse_discovery,
)


def rules(**kwargs) -> MappingRules:
    pattern = kwargs.pop("pattern", "")
    return MappingRules(pattern=compile_pattern(pattern), **kwargs)


# ---------------------------------------------------------------- claims -> user name


@pytest.mark.parametrize(
    ("claims", "config", "username_map", "expected"),
    [
        pytest.param(
            {"preferred_username": "alice"}, {}, None, ("alice", "alice"), id="preferred-username"
        ),
        pytest.param(
            {"preferred_username": "Alice"}, {}, None, ("Alice", "alice"), id="lower-cased"
        ),
        pytest.param(
            {"eppn": "alice@uni.example"},
            {"claim": "eppn", "strip_domains": ("uni.example",)},
            None,
            ("alice@uni.example", "alice"),
            id="eppn-domain-stripped",
        ),
        pytest.param(
            {"email": "Bob@Physics.Uni.Example"},
            {"claim": "email", "strip_domains": ("uni.example", "physics.uni.example")},
            None,
            ("Bob@Physics.Uni.Example", "bob"),
            id="second-domain-any-case",
        ),
        pytest.param(
            {"preferred_username": "Alice_B"},
            {"lowercase": False},
            None,
            ("Alice_B", "Alice_B"),
            id="case-kept",
        ),
        pytest.param(
            {"email": "alice.smith@hpc.uni.example"},
            {
                "claim": "email",
                "pattern": r"(?P<first>[a-z]+)\.(?P<last>[a-z]+)@(?:hpc\.)?uni\.example",
                "template": "{last}_{first}",
            },
            None,
            ("alice.smith@hpc.uni.example", "smith_alice"),
            id="rewrite-named-groups",
        ),
        pytest.param(
            {"sub": "uni:staff:carol"},
            {"claim": "sub", "pattern": r"uni:(staff|students):([a-z]+)", "template": "{2}"},
            None,
            ("uni:staff:carol", "carol"),
            id="rewrite-numbered-group",
        ),
        pytest.param(
            {"preferred_username": "dave"},
            {"pattern": r"[a-z]+"},
            None,
            ("dave", "dave"),
            id="pattern-alone-filters",
        ),
        pytest.param(
            {"attributes": {"uid": ["erin"]}},
            {"claim": lambda claims: claims["attributes"]["uid"][0]},
            None,
            ("erin", "erin"),
            id="callable-claim",
        ),
        pytest.param(
            {"eppn": "A.Person@uni.example"},
            {"claim": "eppn"},
            {"a.person@uni.example": "ap123"},
            ("A.Person@uni.example", "ap123"),
            id="map-file",
        ),
        pytest.param(
            {"eppn": "a.person@uni.example"},
            {"claim": "eppn", "strip_domains": ("uni.example",)},
            {"a.person": "ap123"},
            ("a.person@uni.example", "ap123"),
            id="map-after-transforms",
        ),
        pytest.param(
            {"preferred_username": "x" * 32}, {}, None, ("x" * 32, "x" * 32), id="32-characters"
        ),
        pytest.param(
            {"preferred_username": "_svc.data-1"},
            {},
            None,
            ("_svc.data-1", "_svc.data-1"),
            id="underscore-dot-dash",
        ),
    ],
)
def test_username_from_claims(claims, config, username_map, expected):
    assert username_from_claims(claims, rules(**config), username_map) == expected


@pytest.mark.parametrize(
    ("claims", "config", "username_map", "reason"),
    [
        pytest.param({}, {}, None, "missing-claim", id="missing-claim"),
        pytest.param({"preferred_username": ""}, {}, None, "missing-claim", id="empty-claim"),
        pytest.param({"preferred_username": None}, {}, None, "missing-claim", id="null-claim"),
        pytest.param({"preferred_username": ["alice"]}, {}, None, "invalid-claim", id="list-claim"),
        pytest.param({"preferred_username": 1001}, {}, None, "invalid-claim", id="number-claim"),
        pytest.param(
            {"x": 1}, {"claim": lambda claims: None}, None, "missing-claim", id="callable-none"
        ),
        pytest.param(
            {"eppn": "alice@elsewhere.example"},
            {"claim": "eppn", "strip_domains": ("uni.example",)},
            None,
            "foreign-domain",
            id="foreign-domain",
        ),
        pytest.param(
            {"eppn": "alice@evil.uni.example.attacker.example"},
            {"claim": "eppn", "strip_domains": ("uni.example",)},
            None,
            "foreign-domain",
            id="look-alike-domain",
        ),
        pytest.param(
            {"eppn": "alice@uni.example"},
            {"claim": "eppn"},
            None,
            "invalid-username",
            id="domain-not-stripped",
        ),
        pytest.param(
            {"preferred_username": "alice smith"}, {}, None, "invalid-username", id="space"
        ),
        pytest.param(
            {"preferred_username": "alice;rm -rf ~"}, {}, None, "invalid-username", id="shell"
        ),
        pytest.param({"preferred_username": "../etc"}, {}, None, "invalid-username", id="path"),
        pytest.param({"preferred_username": "-alice"}, {}, None, "invalid-username", id="dash"),
        pytest.param({"preferred_username": "1alice"}, {}, None, "invalid-username", id="digit"),
        pytest.param({"preferred_username": "älice"}, {}, None, "non-ascii-claim", id="unicode"),
        # non-ASCII that lower-cases or normalises towards ASCII: refused before folding
        pytest.param(
            {"preferred_username": "\u212aarl"}, {}, None, "non-ascii-claim", id="kelvin-sign"
        ),
        pytest.param(
            {"preferred_username": "\u0130rene"},
            {},
            None,
            "non-ascii-claim",
            id="capital-i-with-dot",
        ),
        pytest.param({"preferred_username": "\u017fam"}, {}, None, "non-ascii-claim", id="long-s"),
        pytest.param(
            {"eppn": "\u212aarl@uni.example"},
            {"claim": "eppn", "strip_domains": ("uni.example",)},
            None,
            "non-ascii-claim",
            id="kelvin-sign-scoped",
        ),
        pytest.param(
            {"preferred_username": "\u212aarl"},
            {"lowercase": False},
            None,
            "non-ascii-claim",
            id="kelvin-sign-case-kept",
        ),
        pytest.param(
            {"eppn": "alice"},
            {"claim": "eppn", "strip_domains": ("uni.example",)},
            None,
            "unscoped-claim",
            id="unscoped-claim-with-domains",
        ),
        pytest.param(
            {"eppn": "Alice"},
            {"claim": "eppn", "strip_domains": ("uni.example",), "lowercase": False},
            None,
            "unscoped-claim",
            id="unscoped-claim-case-kept",
        ),
        pytest.param({"preferred_username": "alice\n"}, {}, None, "invalid-username", id="newline"),
        pytest.param(
            {"preferred_username": "x" * 33}, {}, None, "invalid-username", id="33-characters"
        ),
        pytest.param(
            {"preferred_username": "Alice"},
            {"pattern": r"[A-Z][a-z]+", "template": "{0}X"},
            None,
            "no-match",
            id="pattern-sees-lower-case",
        ),
        pytest.param(
            {"preferred_username": "alice.smith"},
            {"pattern": r"[a-z]+"},
            None,
            "no-match",
            id="pattern-must-match-in-full",
        ),
        pytest.param({"preferred_username": "root"}, {}, None, "reserved-username", id="root"),
        pytest.param(
            {"preferred_username": "ROOT"}, {}, None, "reserved-username", id="root-upper-case"
        ),
        pytest.param(
            {"eppn": "mallory@uni.example"},
            {"claim": "eppn"},
            {"alice@uni.example": "alice"},
            "unmapped",
            id="not-in-map",
        ),
    ],
)
def test_username_from_claims_refuses(claims, config, username_map, reason):
    with pytest.raises(MappingError) as info:
        username_from_claims(claims, rules(**config), username_map)
    assert info.value.reason == reason, info.value.detail


def test_kelvin_sign_does_not_become_karl():
    # what made this check necessary: str.lower folds U+212A to ASCII
    assert "\u212aarl".lower() == "karl"
    with pytest.raises(MappingError, match="non-ascii-claim"):
        check_username("\u212aarl")
    with pytest.raises(ValueError, match=re.escape("line 1: '\\u212aarl' is not ASCII")):
        parse_username_map("karl@uni.example \u212aarl\n")


def test_unscoped_claim_without_domains_is_kept():
    assert username_from_claims({"eppn": "alice"}, rules(claim="eppn")) == ("alice", "alice")


def test_mixed_case_needs_lowercase_off():
    assert check_username("Alice", lowercase=False) == "Alice"
    with pytest.raises(MappingError, match="invalid-username"):
        check_username("Alice", lowercase=True)
    with pytest.raises(MappingError, match="invalid-username"):
        check_username(None)


@pytest.mark.parametrize(
    ("pattern", "template", "message"),
    [
        pytest.param(r"([a-z]+)", "{2}", "uses group 2, but the pattern has 1", id="group-number"),
        pytest.param(r"(?P<user>[a-z]+)", "{login}", "uses {login}", id="unknown-name"),
        pytest.param(r"[a-z]+", "user", "uses no group", id="no-field"),
        pytest.param(r"([a-z]+)", "{1.__class__}", "uses {1.__class__}", id="attribute-access"),
        pytest.param(r"([a-z]+)", "{1", "username_rewrite_template", id="syntax"),
        pytest.param("", "{user}", "uses {user}", id="template-without-pattern"),
    ],
)
def test_rewrite_template_is_checked_against_the_pattern(pattern, template, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_template(template, compile_pattern(pattern))


def test_rewrite_pattern_must_compile():
    with pytest.raises(ValueError, match="not a regular expression"):
        compile_pattern("(unclosed")
    assert compile_pattern("") is None


# ---------------------------------------------------------------- pinning the provider identity

ISS = "https://idp.uni.example/realms/hpc"


@pytest.mark.parametrize(
    ("pinned", "login", "refused"),
    [
        pytest.param(
            {"username": "alice", "sub": "u-1", "iss": ISS}, ("u-1", ISS), False, id="same-sub"
        ),
        pytest.param(
            {"username": "alice", "sub": "u-1", "iss": ISS}, ("u-2", ISS), True, id="other-sub"
        ),
        pytest.param(
            {"username": "alice", "sub": "u-1", "iss": ISS},
            ("u-1", "https://other.example"),
            True,
            id="other-issuer",
        ),
        pytest.param(
            {"username": "alice", "sub": "u-1", "iss": ISS}, (None, ISS), True, id="no-sub-now"
        ),
        pytest.param({"username": "alice", "uid": 1001}, ("u-2", ISS), False, id="legacy-state"),
        pytest.param(None, ("u-2", ISS), False, id="no-auth-state"),
        pytest.param(
            {"username": "alice", "sub": None, "iss": ISS}, ("u-2", ISS), False, id="never-pinned"
        ),
    ],
)
def test_check_pin(pinned, login, refused):
    sub, iss = login
    pin = identity_pin(iss, {"sub": sub} if sub is not None else {})
    if not refused:
        check_pin(pinned, pin, "alice")
        return
    with pytest.raises(MappingError) as info:
        check_pin(pinned, pin, "alice")
    assert info.value.reason == "identity-changed"
    assert "'alice'" in info.value.detail and "'u-1'" in info.value.detail


def test_identity_pin():
    assert identity_pin(ISS, {"sub": "u-1"}) == {"iss": ISS, "sub": "u-1"}
    assert identity_pin(ISS, {"sub": 42}) == {"iss": ISS, "sub": "42"}
    assert identity_pin(ISS, {"sub": ["u-1"]}) == {"iss": ISS, "sub": None}
    assert identity_pin(ISS, {}) == {"iss": ISS, "sub": None}


# ---------------------------------------------------------------- the username map file


def test_username_map_lines():
    text = """
    # login                 cluster user
    Alice@Uni.Example       alice      # the identity is lower-cased
    bob@uni.example         bob

    """
    assert parse_username_map(text) == {"alice@uni.example": "alice", "bob@uni.example": "bob"}
    assert parse_username_map(text, lowercase=False) == {
        "Alice@Uni.Example": "alice",
        "bob@uni.example": "bob",
    }


def test_username_map_json():
    text = json.dumps({"Alice@uni.example": "alice", "bob@uni.example": "bob"})
    assert parse_username_map(text) == {"alice@uni.example": "alice", "bob@uni.example": "bob"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("alice@uni.example\n", "line 1: expected 'identity username'", id="one-word"),
        pytest.param("a b c\n", "line 1: expected", id="three-words"),
        pytest.param("ok ok\nalice@uni.example al;ce\n", "line 2:", id="bad-username"),
        pytest.param("x root\n", "line 1: logins may not map to 'root'", id="root"),
        pytest.param("a@u alice\nA@U bob\n", "line 2: 'A@U' is mapped twice", id="conflict"),
        pytest.param('{"a": 1}', "key 'a'", id="json-number"),
        pytest.param("{not json", "not valid JSON", id="json-syntax"),
        pytest.param("  [1, 2]", "line 1: '2]' is not a valid", id="json-list-is-not-a-map"),
    ],
)
def test_username_map_errors_name_the_entry(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_username_map(text)


def test_username_map_same_entry_twice_is_fine():
    assert parse_username_map("a@u alice\nA@U alice\n") == {"a@u": "alice"}


# ---------------------------------------------------------------- the system's user database


def test_lookup_posix_account():
    root = lookup_posix_account("root")
    assert (root.username, root.uid, root.gid) == ("root", 0, 0)
    assert "root" in root.groups
    assert root.shell == pwd.getpwnam("root").pw_shell
    assert lookup_posix_account("no-such-user-hpcspawner") is None


# ---------------------------------------------------------------- Slurm accounts


def test_account_map_is_checked():
    assert check_account_map({"alice": ["projA", "projA", "projB"], "bob": []}) == {
        "alice": ("projA", "projB"),
        "bob": (),
    }
    for bad, message in [
        ({"alice": "projA"}, "must be a list"),
        ({"alice": ["proj A"]}, "'proj A' is not a Slurm account name"),
        ({"alice": [None]}, "None is not a Slurm account name"),
        ({1: ["projA"]}, "key 1 is not a user name"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            check_account_map(bad)


# ---------------------------------------------------------------- OIDC discovery

KEYCLOAK = {
    "issuer": "https://keycloak.uni.example/realms/hpc",
    "authorization_endpoint": "https://keycloak.uni.example/realms/hpc/protocol/openid-connect/auth",
    "token_endpoint": "https://keycloak.uni.example/realms/hpc/protocol/openid-connect/token",
    "userinfo_endpoint": "https://keycloak.uni.example/realms/hpc/protocol/openid-connect/userinfo",
    "end_session_endpoint": "https://keycloak.uni.example/realms/hpc/protocol/openid-connect/logout",
    "jwks_uri": "https://keycloak.uni.example/realms/hpc/protocol/openid-connect/certs",
    "scopes_supported": ["openid", "profile", "email", "roles"],
    "code_challenge_methods_supported": ["plain", "S256"],
    "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
}
MOCK = {
    "issuer": "http://127.0.0.1:9400",
    "authorization_endpoint": "http://127.0.0.1:9400/oauth2/authorize",
    "token_endpoint": "http://127.0.0.1:9400/oauth2/token",
    "userinfo_endpoint": "http://127.0.0.1:9400/userinfo",
}


def test_parse_discovery_keycloak():
    metadata = parse_discovery(json.dumps(KEYCLOAK), "https://keycloak.uni.example/realms/hpc/")
    assert metadata == ProviderMetadata(
        issuer="https://keycloak.uni.example/realms/hpc",
        authorization_endpoint=KEYCLOAK["authorization_endpoint"],
        token_endpoint=KEYCLOAK["token_endpoint"],
        userinfo_endpoint=KEYCLOAK["userinfo_endpoint"],
        end_session_endpoint=KEYCLOAK["end_session_endpoint"],
        jwks_uri=KEYCLOAK["jwks_uri"],
        scopes_supported=("openid", "profile", "email", "roles"),
        code_challenge_methods_supported=("plain", "S256"),
        token_endpoint_auth_methods_supported=("client_secret_basic", "client_secret_post"),
    )
    assert not metadata.pkce_s256_refused
    assert not metadata.basic_auth_refused


def test_parse_discovery_loopback_http_and_bytes():
    metadata = parse_discovery(json.dumps(MOCK).encode(), "http://127.0.0.1:9400")
    assert metadata.token_endpoint == MOCK["token_endpoint"]
    assert metadata.code_challenge_methods_supported == ()
    assert not metadata.pkce_s256_refused  # not listed: PKCE is sent anyway


def test_parse_discovery_without_userinfo_when_the_id_token_is_used():
    document = {key: value for key, value in MOCK.items() if key != "userinfo_endpoint"}
    assert parse_discovery(document, MOCK["issuer"], need_userinfo=False).userinfo_endpoint == ""


def test_provider_refusing_s256_or_basic_auth_is_noticed():
    metadata = parse_discovery(
        {
            **KEYCLOAK,
            "code_challenge_methods_supported": ["plain"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        },
        KEYCLOAK["issuer"],
    )
    assert metadata.pkce_s256_refused
    assert metadata.basic_auth_refused


@pytest.mark.parametrize(
    ("document", "issuer", "message"),
    [
        pytest.param(
            {**KEYCLOAK, "issuer": "https://evil.example/realms/hpc"},
            KEYCLOAK["issuer"],
            "says its issuer is 'https://evil.example/realms/hpc'",
            id="issuer-mismatch",
        ),
        pytest.param(
            {key: value for key, value in KEYCLOAK.items() if key != "issuer"},
            KEYCLOAK["issuer"],
            "says its issuer is None",
            id="no-issuer",
        ),
        pytest.param(
            {key: value for key, value in KEYCLOAK.items() if key != "token_endpoint"},
            KEYCLOAK["issuer"],
            "has no token_endpoint",
            id="no-token-endpoint",
        ),
        pytest.param(
            {key: value for key, value in MOCK.items() if key != "userinfo_endpoint"},
            MOCK["issuer"],
            "has no userinfo_endpoint",
            id="no-userinfo",
        ),
        pytest.param(
            {**KEYCLOAK, "token_endpoint": "http://keycloak.uni.example/token"},
            KEYCLOAK["issuer"],
            "token_endpoint 'http://keycloak.uni.example/token' of",
            id="http-endpoint",
        ),
        pytest.param(
            {**MOCK, "token_endpoint": "http://attacker.example/token"},
            MOCK["issuer"],
            "must use https",
            id="http-endpoint-off-loopback",
        ),
        pytest.param(
            {**KEYCLOAK, "userinfo_endpoint": ["https://x"]},
            KEYCLOAK["issuer"],
            "userinfo_endpoint in the discovery document",
            id="endpoint-not-a-string",
        ),
        pytest.param("<html>", KEYCLOAK["issuer"], "is not JSON", id="html"),
        pytest.param("[]", KEYCLOAK["issuer"], "not a JSON object", id="list"),
        pytest.param(
            KEYCLOAK, "http://keycloak.uni.example/realms/hpc", "must use https", id="http-issuer"
        ),
    ],
)
def test_parse_discovery_refuses(document, issuer, message):
    with pytest.raises(DiscoveryError, match=re.escape(message)):
        parse_discovery(document, issuer)


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        pytest.param("https://cilogon.org", "https://cilogon.org", id="cilogon"),
        pytest.param("https://kc.example/realms/hpc/", "https://kc.example/realms/hpc", id="slash"),
        pytest.param("http://127.0.0.1:9400", "http://127.0.0.1:9400", id="loopback-v4"),
        pytest.param("http://localhost:9400/", "http://localhost:9400", id="localhost"),
        pytest.param("http://[::1]:9400", "http://[::1]:9400", id="loopback-v6"),
    ],
)
def test_check_issuer(issuer, expected):
    assert check_issuer(issuer) == expected
    assert discovery_url(issuer) == expected + "/.well-known/openid-configuration"


@pytest.mark.parametrize(
    "issuer",
    [
        pytest.param("http://idp.uni.example", id="http"),
        pytest.param("http://127.0.0.1.attacker.example", id="look-alike-loopback"),
        pytest.param("idp.uni.example", id="no-scheme"),
        pytest.param("ftp://idp.uni.example", id="ftp"),
        pytest.param("https://idp.uni.example/?realm=hpc", id="query"),
        pytest.param("https://idp.uni.example/#x", id="fragment"),
    ],
)
def test_check_issuer_refuses(issuer):
    with pytest.raises(DiscoveryError):
        check_issuer(issuer)


def test_is_loopback():
    assert is_loopback("http://127.0.0.2:1/x")
    assert not is_loopback("http://10.0.0.1/")
    assert not is_loopback("http://localhost.attacker.example/")
