import pytest

from ingress.redaction import redact_reason


@pytest.mark.parametrize(
    ("reason", "logged"),
    [
        (
            "callStarted: not an ISO-8601 date-time: '+15557710042'",
            "callStarted: not an ISO-8601 date-time: '…'",
        ),
        ('date: not an ISO-8601 date-time: "a@b.test"', "date: not an ISO-8601 date-time: '…'"),
        ("callDuration: 15557710043 is out of range", "callDuration: # is out of range"),
        ("x: 'it\\'s' and 'two'", "x: '…' and '…'"),
        ("id: required", "id: required"),
    ],
)
def test_values_leave_the_logged_reason_and_field_names_stay(reason: str, logged: str) -> None:
    assert redact_reason(reason) == logged
