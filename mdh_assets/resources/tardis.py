"""Tardis.dev (or the local sample server) as a Dagster resource.

The API key is deliberately not a config field: it is read from the environment (or the
config file) when a request is made, so it never appears in run config, metadata or the UI.
"""


import datetime as dt

import dagster as dg

from mdh_lib.config import load_settings
from mdh_lib.ingest import RawDay, fetch_raw_day
from mdh_lib.instruments import InstrumentKey
from mdh_lib.tardis import client


class TardisResource(dg.ConfigurableResource):
    datasets_endpoint: str
    api_endpoint: str
    staging_dir: str = ""  # files that `mdh download` fetched concurrently before its runs

    def _api_key(self) -> str:
        return str(load_settings().tardis_api_key)

    def exchange_details(self, exchange: str) -> dict:
        return client.exchange_details(exchange, endpoint=self.api_endpoint)

    def instrument_records(self, exchange: str) -> list[dict]:
        return client.instrument_records(exchange, endpoint=self.api_endpoint, api_key=self._api_key())

    def fetch_raw_day(self, data_type: str, date: dt.date, key: InstrumentKey, exchange: str, source_symbol: str) -> RawDay:
        return fetch_raw_day(
            data_type, date, key, exchange, source_symbol, endpoint=self.datasets_endpoint, api_key=self._api_key(),
            staging_dir=self.staging_dir,
        )
