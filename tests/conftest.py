from __future__ import annotations

import pytest

from infra.stack import LocalStack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """One real broker (Tansu, memory engine) and one real Redis for the whole run."""
    with LocalStack(tmp_path_factory.mktemp("stack"), durable=False, topics={}) as services:
        yield services
