"""pytest fixtures for the fake GitHub server.

Import them where needed (e.g. ``from tests.fakes.github.fixture import fake_github,
github_app_key, make_fake_github``).  Every server they create must end the test without
OpenAPI violations: requests the fake received or responses it sent that do not match
GitHub's description.  Tests that provoke violations on purpose call
``server.take_violations()`` to acknowledge them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.github.client import RequestPolicy

from .server import FakeGitHub

TEST_TOKEN = "test-token"
TEST_APP_ID = 4242
# How fixloop talks to the fake: without PyGithub's pacing (1 s between writes, meant for
# api.github.com's rate limits) and retry backoff, which on loopback only make the tests slow.
LOOPBACK_POLICY = RequestPolicy(throttle=False, backoff=0)


@dataclass(frozen=True)
class AppKey:
    """An RSA key pair for a fake GitHub App."""

    private_pem: str
    public_pem: str


def generate_app_key() -> AppKey:
    """A fresh RSA key pair for a fake GitHub App (tests and benchmarks)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return AppKey(private_pem, public_pem)


@pytest.fixture(scope="session")
def github_app_key() -> AppKey:
    return generate_app_key()


def _assert_clean(server: FakeGitHub) -> None:
    violations = server.violations
    assert violations == [], "fake GitHub saw OpenAPI violations:\n" + "\n".join(violations)


@pytest.fixture
def make_fake_github(github_app_key: AppKey) -> Iterator[Callable[..., FakeGitHub]]:
    """Factory: ``make_fake_github(**FakeGitHub kwargs)`` -> a started server (App auth with
    ``github_app_key`` and app id ``TEST_APP_ID`` unless overridden)."""
    servers: list[FakeGitHub] = []

    def make(**kwargs: Any) -> FakeGitHub:
        kwargs.setdefault("tokens", (TEST_TOKEN,))
        kwargs.setdefault("app_id", TEST_APP_ID)
        kwargs.setdefault("app_public_key", github_app_key.public_pem)
        server = FakeGitHub(**kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
    for server in servers:
        _assert_clean(server)


@pytest.fixture
def fake_github(make_fake_github: Callable[..., FakeGitHub]) -> FakeGitHub:
    """A running fake GitHub (token ``TEST_TOKEN``, App ``TEST_APP_ID``); fails the test on
    teardown if any request or response violated GitHub's OpenAPI description."""
    return make_fake_github()
