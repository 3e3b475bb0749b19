"""Fixtures shared by the runtime tests."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from idp.runtime import logs


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The root logger's lines as JSON, one object a line, into a string buffer."""
    stream = io.StringIO()
    handler = logs.configure("json", stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)
