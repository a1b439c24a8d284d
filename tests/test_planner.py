"""The one planner (`mdh_assets.planner`): plain functions of expected partitions and
statuses, shared by the CLI and the sensor; and the partition counts it plans over."""

import datetime as dt

from mdh_assets.partitions import venue_day
from mdh_assets.planner import MAX_PARTITIONS_PER_RUN, raw_runs, step_runs
from mdh_lib.definitions import Expected

D = dt.date(2024, 1, 1)


def _row(day: int, key: str, data_type: str, status: str) -> dict:
    return {"date": D + dt.timedelta(days=day), "instrument_key": key, "data_type": data_type, "status": status}


def test_downloads_are_one_run_per_venue_and_span_of_days_with_the_types_that_need_it():
    rows = [_row(d, f"BINANCE:SPOT_PAIR:C{i}-USDT", "trades", "missing") for d in range(40) for i in range(500)]
    rows += [_row(3, "BINANCE:SPOT_PAIR:C1-USDT", "book_snapshot_5", "failed"),
             _row(3, "DERIBIT:PERPETUAL:BTC-USD", "trades", "materialized"),
             _row(5, "DERIBIT:PERPETUAL:BTC-USD", "liquidations", "in_progress")]
    runs = raw_runs(rows, {"symbols": []})
    spans = [(r.venue, r.first, r.last, [k.to_user_string() for k in r.assets]) for r in runs]
    assert spans == [
        ("binance", D, D + dt.timedelta(days=2), ["raw/trades"]),
        ("binance", D + dt.timedelta(days=3), D + dt.timedelta(days=3), ["raw/book_snapshot_5", "raw/trades"]),
        ("binance", D + dt.timedelta(days=4), D + dt.timedelta(days=34), ["raw/trades"]),
        ("binance", D + dt.timedelta(days=35), D + dt.timedelta(days=39), ["raw/trades"]),
    ]  # 20,000 missing files in 4 runs; nothing for deribit (materialized or in progress)
    assert max(r.days for r in runs) == MAX_PARTITIONS_PER_RUN
    assert runs[0].first_key == "2024-01-01|binance" and runs[0].scope == {"symbols": [], "force": False}
    assert len(raw_runs([_row(0, "DERIBIT:PERPETUAL:BTC-USD", "trades", "materialized")], {}, force=True)) == 1


def test_derived_steps_select_what_each_venue_day_has():
    def e(day, key, data_type, exchange):
        return Expected(D + dt.timedelta(days=day), data_type, key, exchange, "X")

    expected = [e(0, "BINANCE:SPOT_PAIR:BTC-USDT", "trades", "binance"),
                e(1, "BINANCE:SPOT_PAIR:BTC-USDT", "trades", "binance"),
                e(1, "BINANCE:SPOT_PAIR:ETH-USDT", "book_snapshot_5", "binance"),
                e(0, "DERIBIT:OPTION:BTC", "options_chain", "deribit")]
    runs = step_runs("candles", expected, ["1m"])
    assert [(r.venue, r.first, r.last, [k.to_user_string() for k in r.assets]) for r in runs] == [
        ("binance", D, D, ["candles/1m"]),
        ("binance", D + dt.timedelta(days=1), D + dt.timedelta(days=1), ["book/1m", "candles/1m"])]
    assert [r.venue for r in step_runs("options", expected)] == ["deribit"]
    assert step_runs("mft", expected, ["1m"], wanted=lambda asset, date, venue: date == D)[0].last == D


def test_partitions_per_asset_stay_far_below_dagsters_advice():
    """Every day from the earliest Tardis day times the configured venues (the default
    universe's three), whatever the number of instruments."""
    days = (dt.datetime.now(dt.timezone.utc).date() - dt.date(2019, 3, 30)).days + 1
    assert venue_day.get_num_partitions() in (days * 3, (days - 1) * 3)  # today's partition may not exist yet
    assert venue_day.get_num_partitions() < 100_000
