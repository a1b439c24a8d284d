"""Float sums in one fixed order, so a feature has the same bits however its input was assembled.

polars' ``sum`` in a group-by may add a group's values in an order that depends on where they
sit in the frame (threads, chunks); a day built with a neighbour file's rows in front would then
differ in the last bits from the same day built without them, or from one continuous stream.
"""

from __future__ import annotations

import polars as pl


def ordered_sum(expr: pl.Expr) -> pl.Expr:
    """Sum left to right in row order, nulls as 0 (0 for no rows, as ``sum``)."""
    return expr.fill_null(0).cum_sum().last().fill_null(0)
