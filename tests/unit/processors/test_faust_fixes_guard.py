"""The Faust fixes' guard: exact faust-streaming version, and named switches."""

from __future__ import annotations

import faust
import pytest

from processors import faust_fixes


def test_the_installed_faust_is_the_version_the_fixes_were_copied_from():
    assert faust.__version__ == faust_fixes.FAUST_VERSION
    faust_fixes.check_version()


def test_another_faust_version_refuses_with_one_line():
    with pytest.raises(SystemExit) as refused:
        faust_fixes.check_version("0.15.4")
    message = str(refused.value)
    assert "\n" not in message
    assert "0.15.4" in message and faust_fixes.FAUST_VERSION in message


def test_named_fixes_switch_off_and_unknown_names_are_refused():
    env = faust_fixes.OFF_ENV
    assert faust_fixes.switched_off({}) == frozenset()
    assert faust_fixes.switched_off({env: '["paused-records"]'}) == {"paused-records"}
    with pytest.raises(SystemExit):
        faust_fixes.switched_off({env: '["no-such-fix"]'})
    with pytest.raises(SystemExit):
        faust_fixes.switched_off({env: "paused-records"})
