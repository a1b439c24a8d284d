"""Runs over many partitions: every partitioned asset takes up to a month of one venue per
run (`POLICY`), so a 30-day backfill of a venue is one run per step, in the UI and from the
CLI alike.

A run works partition by partition. Each partition's files are written atomically on their
own; a partition that fails writes nothing and is named in the step's failure, while the
others are materialized, each with its own metadata. That is why these assets write their
files themselves: a Dagster output in a run over a range would mark every partition of the
range materialized, the failed ones included. When every partition succeeded the step ends
with a `MaterializeResult` per asset (so downstream steps of the same run go on); when one
failed, the good partitions are reported one by one and the step fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

MAX_PARTITIONS_PER_RUN = 31
POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN)


@dataclass
class Results:
    """What a run over several partitions wrote and what failed (see the module docstring)."""

    context: dg.AssetExecutionContext
    done: list[tuple[dg.AssetKey, str, dict]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def materialized(self, asset_key: dg.AssetKey, partition: str, metadata: dict) -> None:
        self.done.append((asset_key, partition, metadata))

    def failed(self, line: str) -> None:
        self.failures.append(line)

    def finish(self, asset_keys: list[dg.AssetKey]):
        """The step's last events; raises `dg.Failure` (one line per failed partition). When a
        partition failed, the written ones are reported one by one (an output would mark the
        whole range materialized)."""
        if self.failures:
            for key, partition, metadata in self.done:
                yield dg.AssetMaterialization(asset_key=key, partition=partition, metadata=metadata)
            raise dg.Failure(description="\n".join(self.failures))
        for key, partition, metadata in self.done:
            self.context.add_asset_metadata(metadata, asset_key=key, partition_key=partition)
        for key in asset_keys:
            yield dg.MaterializeResult(asset_key=key)
