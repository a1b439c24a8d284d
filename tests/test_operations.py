"""The daily 08:00 UTC schedule and the `pipeline` sensor (gap filling), evaluated with
Dagster's schedule and sensor test helpers against the real instance and sample server."""

import datetime as dt

import dagster as dg

from mdh_assets.cli import main
from mdh_assets.definitions import defs
from mdh_assets.operations.schedules import MAX_ATTEMPTS, PARTITION_TAG, pipeline_sensor
from mdh_assets.resources.storage import StorageResource

YESTERDAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
DAY = ["--start-date", YESTERDAY.isoformat(), "--end-date", YESTERDAY.isoformat()]


def test_schedule_runs_yesterday_at_0800_utc():
    schedule = defs.get_schedule_def("daily_0800_utc")
    assert schedule.cron_schedule == "0 8 * * *" and (schedule.execution_timezone or "UTC") == "UTC"
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2024, 1, 3, 8, 0, tzinfo=dt.timezone.utc))
    requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2024-01-02"]
    assert schedule.job_name == "daily_definitions"
    retention = defs.get_schedule_def("raw_retention_0830_utc")
    assert retention.cron_schedule == "30 8 * * *" and retention.job_name == "raw_retention"


def _requests(mdh_env) -> list[dg.RunRequest]:
    from mdh_assets.pipeline import Runtime
    from mdh_lib.config import load_settings

    rt = Runtime(load_settings())
    context = dg.build_sensor_context(instance=rt.instance, definitions=defs,
                                      resources={"storage": StorageResource(data_root=mdh_env["MDH_DATA_ROOT"])})
    result = pipeline_sensor(context)
    return [] if isinstance(result, dg.SkipReason) else list(result)


def _by_job(requests) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in requests:
        out.setdefault(r.job_name, set()).add(r.partition_key)
    return out


def test_sensor_requests_each_step_once_its_inputs_exist(mdh_env):
    assert _requests(mdh_env) == []  # no definitions yet: nothing to ask for
    assert main(["instruments", *DAY]) == 0
    jobs = _by_job(_requests(mdh_env))
    y = YESTERDAY.isoformat()
    assert jobs == {
        "raw_instruments": {f"{y}|BINANCE:SPOT_PAIR:BTC-USDT", f"{y}|BINANCE-FUTURES:PERPETUAL:BTC-USDT",
                            f"{y}|DERIBIT:PERPETUAL:BTC-USD", f"{y}|DERIBIT:PERPETUAL:ETH-USD"},
        "raw_derivatives": {f"{y}|BINANCE-FUTURES:PERPETUAL:BTC-USDT", f"{y}|DERIBIT:PERPETUAL:BTC-USD",
                            f"{y}|DERIBIT:PERPETUAL:ETH-USD"},
        "raw_options": {f"{y}|DERIBIT:OPTION:BTC"},
    }
    assert all(r.tags[PARTITION_TAG] == r.partition_key for r in _requests(mdh_env))

    assert main(["download", *DAY]) == 0
    jobs = _by_job(_requests(mdh_env))
    assert set(jobs) == {"options_features", "candles_and_book"}
    assert len(jobs["candles_and_book"]) == 4

    assert main(["candle-processing", *DAY]) == 0
    assert set(_by_job(_requests(mdh_env))) == {"mft_features", "warehouse"}


def test_failed_partitions_are_retried_then_given_up(mdh_env, server):
    assert main(["instruments", *DAY]) == 0
    server.inject("status", match="binance/trades/", status=404)
    key = f"{YESTERDAY.isoformat()}|BINANCE:SPOT_PAIR:BTC-USDT"
    for attempt in range(MAX_ATTEMPTS):
        assert key in _by_job(_requests(mdh_env))["raw_instruments"], attempt
        from mdh_assets.pipeline import Runtime
        from mdh_lib.config import load_settings

        rt = Runtime(load_settings())
        job = defs.resolve_job_def("raw_instruments")
        result = job.execute_in_process(instance=rt.instance, partition_key=key, raise_on_error=False,
                                        resources=rt.resources, tags={PARTITION_TAG: key},
                                        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})
        assert not result.success
    assert key not in _by_job(_requests(mdh_env)).get("raw_instruments", set())


def _materialization(instance: dg.DagsterInstance, asset: list[str], partition: str) -> dict:
    event = instance.fetch_materializations(dg.AssetKey(asset), limit=500).records
    found = [r.asset_materialization for r in event if r.asset_materialization.partition == partition]
    assert found, f"no materialization of {'/'.join(asset)} {partition}"
    return {k: v.value for k, v in found[0].metadata.items()}


def test_backfill_runs_a_range_per_instrument_and_a_bad_day_fails_alone(mdh_env, server, capsys):
    """Three days of one spot pair: one raw run and one candle run in all; a 404 on the middle
    day fails that partition only, with one line naming it, and keeps the other two."""
    from mdh_assets.pipeline import Runtime
    from mdh_lib.config import load_settings
    from mdh_lib.layout import raw_path
    from mdh_lib.storage import Storage

    span = ["--start-date", "2024-01-01", "--end-date", "2024-01-03", "--venues", "binance"]
    server.inject("status", match="binance/trades/2024/01/02/", status=404)
    capsys.readouterr()
    assert main(["download", *span]) == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and "trades 2024-01-02 BINANCE:SPOT_PAIR:BTC-USDT" in failed[0] and "404" in failed[0]
    storage = Storage(mdh_env["MDH_DATA_ROOT"])
    spot = "BINANCE:SPOT_PAIR:BTC-USDT"
    assert [storage.exists(raw_path("trades", f"2024-01-0{d}", spot)) for d in (1, 2, 3)] == [True, False, True]

    rt = Runtime(load_settings())
    statuses = rt.instance.get_status_by_partition(
        dg.AssetKey(["raw", "trades"]), [f"2024-01-0{d}|{spot}" for d in (1, 2, 3)],
        defs.resolve_assets_def(dg.AssetKey(["raw", "trades"])).partitions_def)
    assert [s.value for s in statuses.values()] == ["MATERIALIZED", "FAILED", "MATERIALIZED"]

    def range_runs() -> int:
        return sum(1 for r in rt.instance.get_runs()
                   if r.tags.get("dagster/asset_partition_range_end") == f"2024-01-03|{spot}")

    assert range_runs() == 1  # trades and book_snapshot_5 of three days

    server.clear_faults()
    assert main(["download", *span]) == 0  # only the failed day is fetched again
    assert main(["candle-processing", *span]) == 0
    assert range_runs() == 2  # and one run of candles and book for the three days

    raw = _materialization(rt.instance, ["raw", "trades"], f"2024-01-03|{spot}")
    assert raw["dagster/row_count"] > 0 and raw["first_timestamp"].startswith("2024-01-0")
    assert [c.name for c in raw["dagster/column_schema"].columns][:4] == ["exchange", "symbol", "timestamp", "local_timestamp"]
    assert len(raw["preview"].records) == 5
    candle = _materialization(rt.instance, ["candles", "1m"], f"2024-01-02|{spot}")
    assert candle["dagster/row_count"] == 1440 and len(candle["preview"].records) == 5
    assert "data:image/png;base64," in candle["chart"]
    assert "chart" not in _materialization(rt.instance, ["candles", "15s"], f"2024-01-02|{spot}")


def test_pools_default_to_one_step_at_a_time(mdh_env):
    from mdh_assets.pipeline import Runtime
    from mdh_lib.config import load_settings

    instance = Runtime(load_settings()).instance
    pools = {defs.resolve_assets_def(k).node_def.pool for k in
             (dg.AssetKey(["raw", "trades"]), dg.AssetKey(["warehouse", "candles_1m"]))}
    assert pools == {"tardis", "warehouse_candles"}
    assert all(instance.event_log_storage.get_concurrency_info(p).limit == 1 for p in pools)


def test_retention_deletes_expired_raw_files_and_records_them(mdh_env, monkeypatch):
    from mdh_assets.pipeline import Runtime
    from mdh_lib.config import load_settings
    from mdh_lib.layout import dataset_path, raw_path
    from mdh_lib.storage import Storage

    span = ["--start-date", "2024-01-01", "--end-date", "2024-01-02", "--venues", "binance"]
    assert main(["download", *span]) == 0 and main(["candle-processing", *span]) == 0
    storage = Storage(mdh_env["MDH_DATA_ROOT"])
    before = storage.list("raw")
    toml = open(mdh_env["MDH_CONFIG"]).read()  # binance keeps 30 days; the other venues everything
    open(mdh_env["MDH_CONFIG"], "w").write(toml.replace('symbols = ["BTCUSDT"]\n', 'symbols = ["BTCUSDT"]\nraw_retention_days = 30\n', 1))
    rt = Runtime(load_settings())
    # the run for 2024-01-31 keeps 2024-01-02 .. 2024-01-31: 2024-01-01 expires
    outcome = rt.run([dg.AssetKey(["reports", "retention"])], "2024-01-31")
    assert outcome.success, outcome.errors
    expired = [p for p in before if "date=2024-01-01" in p]
    assert len(expired) == 2  # trades and book_snapshot_5 of the spot pair
    assert storage.list("raw") == [p for p in before if p not in expired]
    removed = storage.read_parquet(dataset_path(("reports", "retention"), "2024-01-31"))
    assert sorted(removed["path"].to_pylist()) == expired and all(b > 0 for b in removed["bytes"].to_pylist())
    meta = outcome.metadata["reports/retention", "2024-01-31"]
    assert meta["files_removed"] == 2 and meta["first_kept_day_binance"] == "2024-01-02"
    assert meta["first_kept_day_deribit"] == "all kept"
    spot = "BINANCE:SPOT_PAIR:BTC-USDT"
    assert storage.exists(dataset_path(("candles", "1m"), "2024-01-01", spot))  # only raw ticks expire
    assert storage.exists(raw_path("trades", "2024-01-02", spot))
    assert rt.run([dg.AssetKey(["reports", "retention"])], "2024-01-31").success  # idempotent: nothing left


def test_expired_days_are_not_reported_missing_nor_downloaded(mdh_env, server, monkeypatch, capsys):
    import json

    monkeypatch.setenv("MDH_RAW_RETENTION_DAYS", "30")  # 2024 is long past the window
    capsys.readouterr()
    assert main(["missing-tick-reports", "--start-date", "2024-01-01", "--end-date", "2024-01-01",
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == []
    assert "past the 30-day raw retention of binance" in captured.err
    server.clear_requests()  # a download past the window is refused with one line, unless forced
    assert main(["download", "--start-date", "2024-01-01", "--end-date", "2024-01-01"]) == 2
    assert not [p for _, p, _ in server.requests if p.endswith(".csv.gz")]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2024-01-01 is past the 30-day raw retention" in err[0] and "MDH_RAW_RETENTION_DAYS" in err[0]
    assert "--force" in err[0]
    monkeypatch.setenv("MDH_RAW_RETENTION_DAYS", "-3")
    assert main(["missing-tick-reports", "--start-date", "2024-01-01", "--end-date", "2024-01-01"]) == 1
    assert "MDH_RAW_RETENTION_DAYS must be a whole number" in capsys.readouterr().err


def test_defaults_serve_a_historical_backfill(tmp_path, monkeypatch, server, capsys):
    """The original guide's own command with no settings at all: the first partition day is
    the earliest Tardis day (2019-03-30) and raw retention is off."""
    for name in ("MDH_CONFIG", "MDH_RAW_RETENTION_DAYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    for name, value in (("MDH_DATA_ROOT", tmp_path / "data"), ("DAGSTER_HOME", tmp_path / "dagster"),
                        ("TARDIS_DATASETS_ENDPOINT", server.endpoint), ("TARDIS_API_ENDPOINT", server.endpoint)):
        monkeypatch.setenv(name, str(value))
    assert main(["download", "--start-date", "2023-05-23", "--end-date", "2023-05-23", "--venues", "binance"]) == 0
    assert sorted(p.name for p in (tmp_path / "data" / "raw" / "trades" / "date=2023-05-23").iterdir()) == [
        "BINANCE_SPOT_PAIR_BTC-USDT.parquet", "BINANCE_SPOT_PAIR_ETH-USDT.parquet"]
    capsys.readouterr()
    assert main(["download", "--start-date", "2009-01-03", "--end-date", "2009-01-03"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mdh: error: --start-date 2009-01-03 is before the first partition day 2019-03-30 "
                   "(start_date in the [universe] table of mdh.toml)"]
