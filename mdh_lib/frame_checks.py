"""Pandera schemas whose checks are polars expressions, run as one query.

Pandera validates a polars frame column by column and check by check, each a query of its
own plus bookkeeping: ~50 ms for a raw file of any size, which made it most of the cost of
ingesting a venue's 2,000 tiny files. A `FrameSchema` states each check once, as a polars
expression (`Rule`), and is both:

- the Pandera schema (`pandera()`: the same columns, types, nullability and checks, each
  check evaluating its rule), which reports what failed, and
- one ``select`` of every rule, nullability, names, order and types (`passes`), which is
  how a good frame is accepted: Pandera runs only when that query finds a failure, so a
  frame passes exactly when Pandera's validation passes and fails with Pandera's report.

A rule's null result is a pass, as in Pandera (``ignore_na``); nulls where a column does
not allow them fail the nullability check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:  # pandera (and the pandas it imports) loads only when a frame fails
    import pandera.polars as pdp


@dataclass(frozen=True)
class Rule:
    """One check: ``expr`` is true for every good row; ``column`` is the column it guards
    (None for a check of the whole frame)."""

    name: str
    expr: pl.Expr
    column: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Column:
    dtype: pl.DataType
    nullable: bool = False


@dataclass(eq=False)
class FrameSchema:
    """Columns in order (strict) and rules: Pandera's schema and its one-query equivalent."""

    name: str
    columns: dict[str, Column]
    rules: list[Rule] = field(default_factory=list)

    @cached_property
    def _query(self) -> tuple[list[str], list[pl.Expr]]:
        names = [f"{c}: not_nullable" for c, col in self.columns.items() if not col.nullable]
        exprs = [pl.col(c).null_count().eq(0) for c, col in self.columns.items() if not col.nullable]
        names += [f"{r.column or 'frame'}: {r.name}" for r in self.rules]
        exprs += [r.expr.fill_null(True).all() for r in self.rules]
        return names, [e.alias(f"_{i}") for i, e in enumerate(exprs)]

    def failed_rules(self, frame: pl.DataFrame) -> list[str]:
        """What fails on ``frame`` (``column: check``), in one query; empty when it passes."""
        if frame.columns != list(self.columns):
            return ["frame: column names and order"]
        wrong = [f"{c}: dtype" for c, t in frame.schema.items() if t != self.columns[c].dtype]
        if wrong:
            return wrong
        names, exprs = self._query
        return [name for name, ok in zip(names, frame.select(exprs).row(0)) if not ok]

    def passes(self, frame: pl.DataFrame) -> bool:
        return not self.failed_rules(frame)

    def failures(self, frame: pl.DataFrame) -> list[dict]:
        """Pandera's report of every failed check on ``frame`` (dicts with ``check``,
        ``column``, ``error``; empty when the frame passes)."""
        if self.passes(frame):
            return []
        import pandera.errors

        try:
            self.pandera.validate(frame, lazy=True)
        except pandera.errors.SchemaErrors as exc:
            return [e for part in exc.message.values() for group in part.values() for e in group]
        return []

    @cached_property
    def pandera(self) -> pdp.DataFrameSchema:
        """The same schema as Pandera's (built, and pandera imported, on first use)."""
        import pandera.polars as pdp

        def check(rule: Rule):
            expr = rule.expr.alias(rule.name)
            return pdp.Check(lambda data: data.lazyframe.select(expr), name=rule.name, error=rule.error)

        by_column = {c: [check(r) for r in self.rules if r.column == c] for c in self.columns}
        return pdp.DataFrameSchema(
            {c: pdp.Column(col.dtype, checks=by_column[c], nullable=col.nullable) for c, col in self.columns.items()},
            checks=[check(r) for r in self.rules if r.column is None], strict=True, ordered=True, name=self.name)
