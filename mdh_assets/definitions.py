"""The Dagster code location: every asset, check, resource and job, assembled in one place."""

from __future__ import annotations

import dagster as dg

from mdh_assets.book.assets import book_assets
from mdh_assets.candles.assets import candle_assets
from mdh_assets.execution import executor_for
from mdh_assets.features.assets import mft_assets, options_features_asset
from mdh_assets.instruments.assets import instruments
from mdh_assets.operations.schedules import JOBS, daily_schedule, pipeline_sensor, retention_schedule
from mdh_assets.raw.assets import raw_assets
from mdh_assets.reports.assets import missing_report, raw_retention
from mdh_assets.resources import build_resources
from mdh_assets.warehouse.assets import warehouse_assets
from mdh_lib.config import load_settings

ASSETS = [instruments, *raw_assets, missing_report, raw_retention, options_features_asset, candle_assets, book_assets, mft_assets,
          *warehouse_assets]

_settings = load_settings()
defs = dg.Definitions(
    assets=ASSETS, jobs=JOBS, schedules=[daily_schedule, retention_schedule], sensors=[pipeline_sensor],
    resources=build_resources(_settings), executor=executor_for(_settings),
)
