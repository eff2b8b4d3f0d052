"""Carrying a cosmic-ray session's results over to an edited module, for bench_mutation.py --survivors-again.

cosmic-ray finds a mutant again by its operator's occurrence number in the module, so an edit that
adds or removes one mutation point (a new `==`, a new number) shifts the numbers of every later
point of that operator: a kept session would then apply those mutants at the wrong places. When the
module changed since the session was made, the session is made again on the module as it is, and
the result of each mutant on a line the edit left alone (same operator, same place once lines are
matched) is copied over; mutants on edited lines start afresh. The source each session was made on
is kept beside it to tell.
"""
from __future__ import annotations

import difflib
import sqlite3
from pathlib import Path

_SPEC = "operator_name, operator_args, start_pos_row, start_pos_col, end_pos_row, end_pos_col"
# Some operators make several mutants at one place (NumberReplacer: n - 1 and n + 1), numbered in order:
# the rank among them tells them apart.
_RANK = ("occurrence - min(occurrence) OVER (PARTITION BY operator_name, operator_args, start_pos_row, start_pos_col, "
         "end_pos_row, end_pos_col)")


def line_map(old: str, new: str) -> dict[int, int]:
    """1-based line numbers of `old` that are unchanged in `new` -> their number there."""
    a, b = old.splitlines(), new.splitlines()
    out: dict[int, int] = {}
    for tag, i1, i2, j1, _ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.update({i1 + k + 1: j1 + k + 1 for k in range(i2 - i1)})
    return out


def carry_results(old_db: Path, new_db: Path, old_src: str, new_src: str) -> tuple[int, int]:
    """Copy old_db's results into new_db for mutants whose every line is unchanged; (carried, left to run)."""
    moved = line_map(old_src, new_src)
    with sqlite3.connect(old_db) as old:
        done = old.execute(f"SELECT {_SPEC}, rank, r.worker_outcome, r.output, r.test_outcome, r.diff FROM "
                           f"(SELECT *, {_RANK} AS rank FROM mutation_specs) s JOIN work_results r ON r.job_id = s.job_id").fetchall()
    with sqlite3.connect(new_db) as new:
        jobs = {tuple(row[:-1]): row[-1] for row in new.execute(f"SELECT {_SPEC}, {_RANK}, job_id FROM mutation_specs")}
        carried = []
        for op, args, sr, sc, er, ec, rank, *result in done:
            rows = range(sr, er + 1)
            # Every line of the mutated node unchanged and still consecutive: the same text mutated the same way.
            if not all(r in moved for r in rows) or moved[er] - moved[sr] != er - sr:
                continue
            job = jobs.get((op, args, moved[sr], sc, moved[er], ec, rank))
            if job is not None:
                carried.append((*result, job))
        new.executemany("INSERT INTO work_results (worker_outcome, output, test_outcome, diff, job_id) VALUES (?, ?, ?, ?, ?)",
                        carried)
        total = new.execute("SELECT count(*) FROM mutation_specs").fetchone()[0]
    return len(carried), total - len(carried)
