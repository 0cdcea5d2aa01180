"""Fixtures of the clearing tests: a localstripe server for the run, a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.localstripe import WebhookReceiver, running_localstripe


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    """Base URL of a localstripe started for this run on a free loopback port."""
    with running_localstripe() as url:
        yield url


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A loopback HTTP server recording the webhooks posted to its `url`."""
    with WebhookReceiver() as receiver:
        yield receiver
