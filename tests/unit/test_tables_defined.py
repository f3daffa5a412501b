"""A table is defined when first read, with the tables it refers to; ``metadata`` holds
every table."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json
from cobro.store import tables as t
steps = [t.defined()]
t.banking_assignments
steps.append(sorted(t.defined()))
steps.append(str(t.banking_assignments.c.contact_id.type))
steps.append(len(t.metadata.tables))
steps.append(sorted(t.defined()) == sorted(t.metadata.tables))
print(json.dumps(steps))
"""


def test_tables_are_defined_when_first_read_with_those_they_refer_to() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    nothing, banking, typed, every, all_defined = json.loads(proc.stdout)
    assert nothing == []  # importing the module defines no table
    assert banking == ["banking_assignments", "companies", "contacts", "customers"]
    assert typed == "INTEGER"  # typed by the column it refers to
    assert every == 40 and all_defined


def test_a_table_is_the_same_object_each_time_and_under_its_module_name() -> None:
    from cobro.store import tables as t

    assert t.allocations is t.allocations
    assert t.allocations.name == "payment_allocations"
    assert t.metadata.tables["payment_allocations"] is t.allocations


THREADS = """
import threading
from cobro.store import tables as t
barrier = threading.Barrier(8)
found = []
def read():
    barrier.wait()
    found.append(t.outbox)
threads = [threading.Thread(target=read) for _ in range(8)]
for th in threads: th.start()
for th in threads: th.join()
print(len(found), len({id(x) for x in found}))
"""


def test_threads_reading_a_table_first_together_get_one_table() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", THREADS], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.split() == ["8", "1"], proc.stderr
