"""The Dagster code location: every asset, check, resource and job, assembled in one place."""

from __future__ import annotations

import dagster as dg

from mdh_assets.instruments.assets import instruments
from mdh_assets.raw.assets import raw_assets
from mdh_assets.reports.assets import missing_report
from mdh_assets.resources import build_resources
from mdh_lib.config import load_settings

ASSETS = [instruments, *raw_assets, missing_report]

defs = dg.Definitions(assets=ASSETS, resources=build_resources(load_settings()))
