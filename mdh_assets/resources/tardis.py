"""Tardis.dev (or the local sample server) as a Dagster resource.

The API key is deliberately not a config field: it is read from the environment (or the
config file) when a request is made, so it never appears in run config, metadata or the UI.
"""


from collections.abc import Iterator

import dagster as dg

from mdh_lib.config import load_settings
from mdh_lib.ingest import RawDay, RawRequest, fetch_raw_days
from mdh_lib.tardis import client


class TardisResource(dg.ConfigurableResource):
    datasets_endpoint: str
    api_endpoint: str

    def _api_key(self) -> str:
        return str(load_settings().tardis_api_key)

    def exchange_details(self, exchange: str) -> dict:
        return client.exchange_details(exchange, endpoint=self.api_endpoint)

    def instrument_records(self, exchange: str) -> list[dict]:
        return client.instrument_records(exchange, endpoint=self.api_endpoint, api_key=self._api_key())

    def fetch_raw_days(self, requests: list[RawRequest], staging: str | None = None,
                       ) -> Iterator[tuple[RawRequest, RawDay | Exception]]:
        return fetch_raw_days(requests, endpoint=self.datasets_endpoint, api_key=self._api_key(), staging=staging)
