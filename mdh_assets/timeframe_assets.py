"""The shape shared by candles, book and MFT assets: one multi-asset per (day, instrument)
with one optional Parquet output and one blocking check per timeframe, whose checks run on
the computed frames before anything is written."""

from collections.abc import Callable

import dagster as dg
import polars as pl

from mdh_assets.partitions import by_instrument


def per_timeframe(keys: dict[str, dg.AssetKey], *, group: str, description: Callable[[str], str], check: str,
                  check_description: str, deps: list) -> dict:
    """Arguments for `dg.multi_asset`."""
    return dict(
        outs={key.to_python_identifier(): dg.AssetOut(key=key, group_name=group, kinds={"parquet", "polars"},
                                                      is_required=False, description=description(tf))
              for tf, key in keys.items()},
        check_specs=[dg.AssetCheckSpec(check, asset=key, blocking=True, description=check_description)
                     for key in keys.values()],
        deps=deps, partitions_def=by_instrument, can_subset=True,
    )


def selected(context: dg.AssetExecutionContext, keys: dict[str, dg.AssetKey]) -> list[str]:
    """The timeframes this run materializes."""
    return [tf for tf, key in keys.items() if key in context.selected_asset_keys]


def checked_outputs(what: str, keys: dict[str, dg.AssetKey], check: str, frames: dict[str, pl.DataFrame],
                    failures: dict[str, list[str]], metadata: Callable[[str, pl.DataFrame], dict]):
    """Check results first; if any failed, fail the partition with nothing written."""
    for tf, problems in failures.items():
        yield dg.AssetCheckResult(asset_key=keys[tf], check_name=check, passed=not problems,
                                  metadata={"failures": "; ".join(problems)[:1000]} if problems else {})
    if any(failures.values()):
        bad = ", ".join(tf for tf, problems in failures.items() if problems)
        raise dg.Failure(description=f"{what}: checks failed for {bad}; nothing written")
    for tf, frame in frames.items():
        yield dg.Output(frame.to_arrow(), output_name=keys[tf].to_python_identifier(), metadata=metadata(tf, frame))
