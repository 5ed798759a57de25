"""The lab's budget ledger: one SQLite file that charges requests and caches their results.

Handout section "The training API": the course's remote API charges every query against a total
FLOPs budget. This module is that accounting, kept separate from how a run is trained
(scaling/lab.py) so its promises can be read (and graded) on their own. Each promise is kept inside a
``BEGIN IMMEDIATE`` transaction, so several processes can share one file:

- the total budget is never exceeded: a request that does not fit is refused with a
  :class:`BudgetExceeded` naming the remaining budget;
- a request is charged at most once: re-querying a finished config returns its cached result
  for free, and a config that was charged but never finished (an interrupted sweep) is run again
  without a second charge -- so an interrupted sweep resumes by simply running it again;
- results are cached by the request's canonical key, and a ledger is bound to the lab settings
  the losses depend on (data, vocabulary, context), so a cache hit is never stale.

Simplification: two processes submitting the *same* new config at once are charged once but may
both train it (the second result overwrites the first).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class LabRequest:
    """What a student submits: the model shape, the optimiser knobs and the compute to spend."""

    d_model: int
    num_layers: int
    num_heads: int
    batch_size: int
    learning_rate: float
    train_flops: float
    seed: int = 0  # model initialisation and data order: repeat a config with another seed to see the noise

    def key(self) -> str:
        """Canonical JSON: the cache and ledger key (equal requests, equal keys)."""
        fields = asdict(self)
        fields["learning_rate"] = float(self.learning_rate)
        fields["train_flops"] = float(self.train_flops)
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_dict(cls, fields: dict) -> LabRequest:
        missing = {"d_model", "num_layers", "num_heads", "batch_size", "learning_rate", "train_flops"} - set(
            fields
        )
        if missing:
            raise ValueError(f"request lacks {sorted(missing)}")
        return cls(**{k: fields[k] for k in cls.__dataclass_fields__ if k in fields})


class BudgetExceeded(ValueError):
    """A request would take the ledger past its total budget."""


@dataclass(frozen=True)
class LabResult:
    """A finished run. ``charged`` is the FLOPs this query cost (0 for a cache hit or a free re-run)."""

    request: LabRequest
    train_loss: float
    val_loss: float
    parameters: int
    tokens: int
    steps: int
    exact_flops: float
    seconds: float
    cached: bool = False
    charged: float = 0.0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS charges (key TEXT PRIMARY KEY, flops REAL NOT NULL, charged_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY, train_loss REAL, val_loss REAL, parameters INTEGER, tokens INTEGER,
    steps INTEGER, exact_flops REAL, seconds REAL, finished_at REAL NOT NULL
);
"""


class Ledger:
    """The budget ledger in one SQLite file, safe to share between processes.

    The total budget is written when the file is created; opening an existing ledger with a
    different ``total_budget`` is an error (pass ``None`` to open whatever is there).
    """

    def __init__(self, path: str | Path, total_budget: float | None = None):
        self.path = Path(path)
        if total_budget is not None and (not math.isfinite(total_budget) or total_budget <= 0):
            raise ValueError(f"total_budget must be a positive number of FLOPs, got {total_budget!r}")
        if total_budget is None and not self.path.is_file():
            raise FileNotFoundError(f"no ledger at {self.path}; give a total budget to create one")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE name = 'total_budget'").fetchone()
            if row is None:
                if total_budget is None:
                    raise ValueError(f"ledger {self.path} has no total budget; give one")
                db.execute("INSERT INTO meta VALUES ('total_budget', ?)", (repr(float(total_budget)),))
                self.total_budget = float(total_budget)
            else:
                self.total_budget = float(row[0])
                if total_budget is not None and float(total_budget) != self.total_budget:
                    raise ValueError(
                        f"ledger {self.path} was created with total budget {self.total_budget:.4g}, "
                        f"not {float(total_budget):.4g}"
                    )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` takes the write lock up front, so a read-check-write sequence (is
        there budget left? then charge) cannot interleave with another process's."""
        db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def bind(self, settings: dict) -> None:
        """Tie the ledger to the lab settings its results depend on (data, vocabulary, context...):
        the first call records them, later calls must match, so a cached result never answers a
        request made under other settings."""
        text = json.dumps(settings, sort_keys=True)
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE name = 'settings'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('settings', ?)", (text,))
            elif row[0] != text:
                old, new = json.loads(row[0]), settings
                changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise ValueError(
                    f"ledger {self.path} holds results made with other lab settings ({', '.join(changed)}); "
                    "use another ledger file"
                )

    def spent(self) -> float:
        with self._transaction() as db:
            return float(db.execute("SELECT COALESCE(SUM(flops), 0) FROM charges").fetchone()[0])

    def remaining(self) -> float:
        return self.total_budget - self.spent()

    def charge(self, request: LabRequest) -> float:
        """Charge ``request`` unless it was charged before; returns the FLOPs charged now (0 if
        already paid). Raises :class:`BudgetExceeded` if it does not fit."""
        key = request.key()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM charges WHERE key = ?", (key,)).fetchone():
                return 0.0
            spent = float(db.execute("SELECT COALESCE(SUM(flops), 0) FROM charges").fetchone()[0])
            remaining = self.total_budget - spent
            cost = float(request.train_flops)
            if cost > remaining:
                raise BudgetExceeded(
                    f"request of {cost:.4g} FLOPs exceeds the remaining budget of {remaining:.4g} FLOPs "
                    f"(spent {spent:.4g} of {self.total_budget:.4g})"
                )
            db.execute("INSERT INTO charges VALUES (?, ?, ?)", (key, cost, time.time()))
            return cost

    def charged_requests(self) -> list[LabRequest]:
        """Every request charged so far (finished or not)."""
        with self._transaction() as db:
            keys = [row[0] for row in db.execute("SELECT key FROM charges ORDER BY charged_at")]
        return [LabRequest.from_dict(json.loads(key)) for key in keys]

    def is_charged(self, request: LabRequest) -> bool:
        with self._transaction() as db:
            return db.execute("SELECT 1 FROM charges WHERE key = ?", (request.key(),)).fetchone() is not None

    def cached(self, request: LabRequest) -> LabResult | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT train_loss, val_loss, parameters, tokens, steps, exact_flops, seconds FROM results WHERE key = ?",
                (request.key(),),
            ).fetchone()
        return None if row is None else _result(request, row, cached=True)

    def record(self, result: LabResult) -> None:
        r = result
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.request.key(),
                    _nullable(r.train_loss),
                    _nullable(r.val_loss),
                    r.parameters,
                    r.tokens,
                    r.steps,
                    r.exact_flops,
                    r.seconds,
                    time.time(),
                ),
            )

    def results(self) -> list[LabResult]:
        """Every finished run, oldest first."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT key, train_loss, val_loss, parameters, tokens, steps, exact_flops, seconds "
                "FROM results ORDER BY finished_at"
            ).fetchall()
        return [_result(LabRequest.from_dict(json.loads(row[0])), row[1:], cached=True) for row in rows]


def _nullable(value: float) -> float | None:
    return value if math.isfinite(value) else None  # SQLite has no NaN; a diverged run stores NULL


def _result(request: LabRequest, row: Sequence, cached: bool) -> LabResult:
    train_loss, val_loss, parameters, tokens, steps, exact_flops, seconds = row
    nan = float("nan")
    return LabResult(
        request,
        nan if train_loss is None else train_loss,
        nan if val_loss is None else val_loss,
        parameters,
        tokens,
        steps,
        exact_flops,
        seconds,
        cached=cached,
    )
