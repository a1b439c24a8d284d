"""The daily 08:00 UTC schedule and the `pipeline` sensor (gap filling), evaluated with
Dagster's schedule and sensor test helpers against the real instance and sample server."""

import datetime as dt

import dagster as dg

from mdh_assets.cli import main
from mdh_assets.definitions import ASSETS, defs
from mdh_assets.operations.schedules import DUE_AFTER, LOOKBACK_DAYS, MAX_ATTEMPTS, SPAN_TAG, pipeline_sensor
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


def _requests(mdh_env, definitions: bool = False) -> list[dg.RunRequest]:
    """The sensor's requests (those for missed definitions only with ``definitions``)."""
    from mdh_assets.pipeline import Runtime
    from mdh_lib.config import load_settings

    rt = Runtime(load_settings())
    context = dg.build_sensor_context(instance=rt.instance, definitions=defs,
                                      resources={"storage": StorageResource(data_root=mdh_env["MDH_DATA_ROOT"])})
    result = pipeline_sensor(context)
    requests = [] if isinstance(result, dg.SkipReason) else list(result)
    return [r for r in requests if definitions or r.job_name != "daily_definitions"]


def test_sensor_requests_the_definitions_of_missed_days(mdh_env):
    """A day whose 08:00 run never happened gets its definitions run from the gap filler,
    once (not again while that run is queued or starting), and not before it is due."""
    now = dt.datetime.now(dt.timezone.utc)
    due = [now.date() - dt.timedelta(days=n) for n in range(LOOKBACK_DAYS, 0, -1)
           if now >= dt.datetime.combine(now.date() - dt.timedelta(days=n), dt.time(), dt.timezone.utc) + DUE_AFTER]
    requests = _requests(mdh_env, definitions=True)
    assert {r.job_name for r in requests} == {"daily_definitions"}
    assert sorted(r.partition_key for r in requests) == [d.isoformat() for d in due]
    from mdh_assets.pipeline import Runtime
    from mdh_lib.config import load_settings

    instance = Runtime(load_settings()).instance
    first = requests[0]
    instance.create_run_for_job(defs.resolve_job_def("daily_definitions"), status=dg.DagsterRunStatus.NOT_STARTED,
                                tags={**first.tags, "dagster/partition": first.partition_key})
    assert first.partition_key not in {r.partition_key for r in _requests(mdh_env, definitions=True)}
    assert main(["instruments", "--start-date", due[-1].isoformat(), "--end-date", due[-1].isoformat()]) == 0
    assert due[-1].isoformat() not in {r.partition_key for r in _requests(mdh_env, definitions=True)}


def _by_job(requests) -> dict[str, set[str]]:
    """job -> the (venue, span of days) it is asked for."""
    out: dict[str, set[str]] = {}
    for r in requests:
        out.setdefault(r.job_name, set()).add(r.tags[SPAN_TAG])
    return out


def test_sensor_requests_each_step_once_its_inputs_exist(mdh_env):
    assert _requests(mdh_env) == []  # no definitions yet: nothing to ask for
    assert main(["instruments", *DAY]) == 0
    y = YESTERDAY.isoformat()
    requests = _requests(mdh_env)
    assert _by_job(requests) == {"raw": {f"binance:{y}..{y}", f"binance-futures:{y}..{y}", f"deribit:{y}..{y}"}}
    deribit = next(r for r in requests if r.tags[SPAN_TAG].startswith("deribit"))
    assert sorted(k.to_user_string() for k in deribit.asset_selection) == [
        f"raw/{t}" for t in ("book_snapshot_5", "derivative_ticker", "liquidations", "options_chain", "trades")]
    assert deribit.tags["dagster/asset_partition_range_start"] == f"{y}|deribit"
    # a run of the step not started yet: its venue-days are never requested again meanwhile
    from mdh_assets.pipeline import Runtime
    from mdh_lib.config import load_settings

    instance = Runtime(load_settings()).instance
    queued = instance.create_run_for_job(defs.resolve_job_def("raw"), status=dg.DagsterRunStatus.NOT_STARTED,
                                         tags=deribit.tags)
    assert _by_job(_requests(mdh_env)) == {"raw": {f"binance:{y}..{y}", f"binance-futures:{y}..{y}"}}
    instance.report_run_canceled(queued)

    assert main(["download", *DAY]) == 0
    jobs = _by_job(_requests(mdh_env))
    assert jobs == {"options_features": {f"deribit:{y}..{y}"},
                    "candles_and_book": {f"binance:{y}..{y}", f"binance-futures:{y}..{y}", f"deribit:{y}..{y}"}}

    assert main(["candle-processing", *DAY]) == 0
    assert set(_by_job(_requests(mdh_env))) == {"mft_features", "warehouse"}


def test_failed_instruments_are_retried_then_given_up(mdh_env, server):
    from mdh_assets.pipeline import Runtime
    from mdh_lib.config import load_settings

    assert main(["instruments", *DAY]) == 0
    server.inject("status", match="binance/trades/", status=404)
    span = f"binance:{YESTERDAY}..{YESTERDAY}"
    rt = Runtime(load_settings())
    for attempt in range(MAX_ATTEMPTS):
        [request] = [r for r in _requests(mdh_env) if r.tags[SPAN_TAG] == span]
        assert request.job_name == "raw", attempt
        result = dg.materialize(ASSETS, selection=request.asset_selection, instance=rt.instance, raise_on_error=False,
                                resources=rt.resources, tags=request.tags)
        assert result.success  # the venue-day is materialized; its manifest names the failed instrument
    assert span not in _by_job(_requests(mdh_env)).get("raw", set())


def _materialization(instance: dg.DagsterInstance, asset: list[str], partition: str) -> dict:
    event = instance.fetch_materializations(dg.AssetKey(asset), limit=500).records
    found = [r.asset_materialization for r in event if r.asset_materialization.partition == partition]
    assert found, f"no materialization of {'/'.join(asset)} {partition}"
    return {k: v.value for k, v in found[0].metadata.items()}


def test_backfill_runs_a_range_per_venue_and_a_bad_file_fails_alone(mdh_env, server, capsys):
    """Three days of one venue: one raw run and one candle run in all; a 404 on the middle
    day's trades fails that instrument only, with one line naming it, and keeps the rest."""
    import json

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
    assert main(["missing-tick-reports", *span, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"date": "2024-01-02", "instrument_key": spot, "data_type": "trades", "status": "failed"}]

    rt = Runtime(load_settings())

    def range_runs() -> int:
        return sum(1 for r in rt.instance.get_runs()
                   if r.tags.get("dagster/asset_partition_range_end") == "2024-01-03|binance")

    assert range_runs() == 1  # trades and book_snapshot_5 of three days

    server.clear_faults()
    server.clear_requests()
    assert main(["download", *span]) == 0  # only the failed file is fetched again
    assert [p for _, p, _ in server.requests if p.endswith(".csv.gz")] == ["/v1/binance/trades/2024/01/02/BTCUSDT.csv.gz"]
    assert main(["candle-processing", *span]) == 0
    assert range_runs() == 2  # the retry was a one-day run; one run of candles and book for the three days

    raw = _materialization(rt.instance, ["raw", "trades"], "2024-01-03|binance")
    assert raw["dagster/row_count"] > 0 and raw["instruments_ok"] == 1 and raw["manifest"].endswith("binance.parquet")
    assert [c.name for c in raw["dagster/column_schema"].columns][:4] == ["exchange", "symbol", "timestamp", "local_timestamp"]
    assert len(raw["preview"].records) == 5
    candle = _materialization(rt.instance, ["candles", "1m"], "2024-01-02|binance")
    assert candle["dagster/row_count"] == 1440 and len(candle["preview"].records) == 5
    assert "data:image/png;base64," in candle["chart"]
    assert "chart" not in _materialization(rt.instance, ["candles", "15s"], "2024-01-02|binance")


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


def test_sensor_cursor_plans_again_only_when_a_run_changed(mdh_env):
    """The cursor keeps the last plan's watermark: a tick with no run changed requests
    nothing (the last plan's runs are queued by then); a run that changes state, or a plan
    older than `REPLAN_EVERY`, makes the next tick plan again."""
    import json

    from mdh_assets.operations.schedules import REPLAN_EVERY
    from mdh_assets.pipeline import Runtime
    from mdh_lib.config import load_settings

    assert main(["instruments", *DAY]) == 0
    instance = Runtime(load_settings()).instance
    resources = {"storage": StorageResource(data_root=mdh_env["MDH_DATA_ROOT"])}

    def tick(cursor):
        context = dg.build_sensor_context(instance=instance, definitions=defs, resources=resources, cursor=cursor)
        result = pipeline_sensor(context)
        requests = [] if isinstance(result, dg.SkipReason) else list(result)
        return [r for r in requests if r.job_name == "raw"], context.cursor

    requests, cursor = tick(None)
    assert _by_job(requests).get("raw") and json.loads(cursor)["runs"] > 0
    assert tick(cursor) == ([], cursor)  # nothing changed: no plan, no request
    run = instance.create_run_for_job(defs.resolve_job_def("raw"), status=dg.DagsterRunStatus.NOT_STARTED,
                                      tags=requests[0].tags)
    replanned, newer = tick(cursor)  # a run was created: planned again, without the queued span
    assert newer != cursor and requests[0].tags[SPAN_TAG] not in _by_job(replanned)["raw"]
    assert _by_job(replanned)["raw"] == _by_job(requests)["raw"] - {requests[0].tags[SPAN_TAG]}
    instance.report_run_canceled(run)
    assert _by_job(tick(newer)[0])["raw"] == _by_job(requests)["raw"]  # cancelled: asked for again
    stale = json.dumps({**json.loads(cursor), "planned_at": (
        dt.datetime.now(dt.timezone.utc) - REPLAN_EVERY - dt.timedelta(minutes=1)).isoformat()})
    _, after = tick(stale)
    assert after != stale  # an hour-old plan is made again even when no run changed
