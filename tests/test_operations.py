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
