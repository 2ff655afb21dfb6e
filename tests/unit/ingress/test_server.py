"""The ingress process keeps the garbage collector off its request path."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ingress.server import GC_YOUNG_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_what_exists_is_frozen_and_young_collections_wait_for_more_objects() -> None:
    _, older, oldest = gc.get_threshold()
    tune_garbage_collector()
    assert gc.get_freeze_count() > 1000  # the modules and objects loaded so far
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, older, oldest)
    assert gc.isenabled()
