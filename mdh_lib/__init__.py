"""mdh_lib: the market data library services import (no Dagster).

Readers (SPEC section 8), the processing API (`mdh_lib.processor`) and the original guide's
processing names (`mdh_lib.guide`) load on first use, so tools that only need one module (the CLI,
the sample server) do not pay for the cloud clients.
"""

from importlib import import_module

_EXPORTS = {
    "DataClient": "mdh_lib.readers",
    "CandleDataReader": "mdh_lib.readers",
    "TickDataReader": "mdh_lib.readers",
    "HFTFeaturesReader": "mdh_lib.readers",
    "MFTFeaturesReader": "mdh_lib.readers",
    "MissingPartitionError": "mdh_lib.readers",
    "ReadStats": "mdh_lib.readers",
    "BigQueryClient": "mdh_lib.bigquery_client",
    "open_warehouse": "mdh_lib.warehouse",
    "Processor": "mdh_lib.processor",
    "ProcessingError": "mdh_lib.processor",
    "MissingInput": "mdh_lib.catalog",
    **{name: "mdh_lib.guide" for name in (
        "get_config", "HistoricalCandleProcessor", "ProcessingConfig", "AggregatedCandleProcessor",
        "AggregationConfig", "CandleUploader", "UploadConfig", "OrchestrationConfig")},
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mdh_lib' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
