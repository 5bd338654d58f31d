"""The fleet's index of rule states by host agrees with the states themselves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.evaluation.rules import RuleState, Severity
from collector.view.fleet import StateTable

KEYS = st.tuples(
    st.sampled_from(["disk", "load", "stale"]),
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["{}", '{"m":"/"}']),
)
STATE = RuleState(severity=Severity.WARNING)
OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["set", "del", "pop", "pop-missing", "clear"]), KEYS), max_size=60
)


@given(OPERATIONS)
def test_each_hosts_keys_are_the_states_of_that_host(
    operations: list[tuple[str, tuple[str, str, str]]],
) -> None:
    table = StateTable()
    for operation, key in operations:
        if operation == "set":
            table[key] = STATE
        elif operation == "del" and key in table:
            del table[key]
        elif operation == "pop":
            table.pop(key, None)
        elif operation == "pop-missing" and key not in table:
            with pytest.raises(KeyError):
                table.pop(key)
        elif operation == "clear":
            table.clear()
        for host in "abc":
            assert sorted(table.keys_of(host)) == sorted(k for k in table if k[1] == host)


def test_the_index_cannot_be_bypassed() -> None:
    table = StateTable()
    with pytest.raises(NotImplementedError):
        table.update({("disk", "a", "{}"): STATE})
    with pytest.raises(NotImplementedError):
        table.setdefault(("disk", "a", "{}"), STATE)


WORST_OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["set", "del", "clear", "ask"]),
        KEYS,
        st.sampled_from(list(Severity)),
    ),
    max_size=60,
)


@given(WORST_OPERATIONS)
def test_the_worst_state_kept_between_calls_is_the_worst_state_now(
    operations: list[tuple[str, tuple[str, str, str], Severity]],
) -> None:
    """worst_by_host reads again only the hosts whose states changed: it must still agree
    with reading every host's states afresh (worst_of, the one rule of a host's state)."""
    from collector.view.fleet import Fleet

    fleet = Fleet()
    for operation, key, severity in operations:
        if operation == "set":
            fleet.states[key] = RuleState(severity=severity)
        elif operation == "del" and key in fleet.states:
            del fleet.states[key]
        elif operation == "clear":
            fleet.states.clear()
        else:
            fleet.worst_by_host()
        afresh = {host: fleet.worst_of(host) for host in {k[1] for k in fleet.states}}
        assert fleet.worst_by_host() == {
            host: worst for host, worst in afresh.items() if worst is not Severity.OK
        }
