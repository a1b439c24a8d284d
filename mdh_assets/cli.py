"""`mdh`: the seed's modes as subcommands. Batch modes run through Dagster (persistent instance).

A bad argument or input gets one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mdh_lib.config import load_settings
from mdh_lib.instruments import INSTRUMENT_TYPES, RAW_DATA_TYPES
from mdh_lib.processes import SlotWaitTimeout
from mdh_lib.timeframes import TIMEFRAMES

# Piped output (CI logs, `| less`) gets a width that fits the summary tables.
out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, soft_wrap=True)


class UsageError(Exception):
    """A bad argument: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UsageError(message)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _csv(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _dates(args) -> list[dt.date]:
    from mdh_assets.runs import date_range

    first = load_settings().universe.start_date
    if args.start_date < first:
        raise UsageError(f"--start-date {args.start_date} is before the first partition day {first} "
                         "(start_date in the [universe] table of mdh.toml)")
    if args.end_date < args.start_date:
        raise UsageError(f"--end-date {args.end_date} is before --start-date {args.start_date}")
    if args.end_date >= dt.datetime.now(dt.timezone.utc).date():
        raise UsageError(f"--end-date {args.end_date} is not a complete UTC day yet")
    return date_range(args.start_date, args.end_date)


def _filters(args):
    from mdh_lib.definitions import Filters

    types = tuple(t.upper() for t in getattr(args, "instrument_types", ()) or ())
    bad = [t for t in types if t not in INSTRUMENT_TYPES]
    if bad:
        raise UsageError(f"unknown instrument type {bad[0]!r} (one of {', '.join(INSTRUMENT_TYPES)})")
    data_types = tuple(getattr(args, "data_types", ()) or ())
    bad = [t for t in data_types if t not in RAW_DATA_TYPES]
    if bad:
        raise UsageError(f"unknown data type {bad[0]!r} (one of {', '.join(RAW_DATA_TYPES)})")
    return Filters(
        venues=tuple(v.lower() for v in args.venues or ()), instrument_types=types,
        symbols=tuple(s.upper() for s in getattr(args, "symbols", ()) or ()), data_types=data_types,
    )


def _runtime(args):
    """The command's runtime; says what it recovered from crashed runs, one line each."""
    from mdh_assets.pipeline import Runtime

    rt = Runtime(load_settings(), command=args.command, say=lambda line: err.print(line, highlight=False, markup=False))
    for line in rt.recovered:
        err.print(line, highlight=False, markup=False)
    return rt


def _fail_lines(outcomes) -> int:
    failed = [o for o in outcomes if not o.complete]
    for o in failed:
        for line in o.lines:
            err.print(f"[red]failed[/red] {line}", markup=True, highlight=False, soft_wrap=True)
    return len(failed)


def _days_needing_key(dates) -> str | None:
    """Without TARDIS_API_KEY, from a service that refuses instrument metadata without one
    (Tardis's free access): one line naming the days it will not serve, else None."""
    from mdh_assets.pipeline import days_needing_key, spans_text

    days = days_needing_key(load_settings(), dates)
    if not days:
        return None
    return (f"no TARDIS_API_KEY is set, and without one Tardis serves only the first day of each month: "
            f"{len(days)} of these days {'needs' if len(days) == 1 else 'need'} a key ({spans_text(days)})")


def _say_metadata_note(rt, dates) -> None:
    """Once per command: what definitions built from /v1/exchanges lack, when there are any."""
    from mdh_assets.pipeline import metadata_note

    line = metadata_note(rt, dates)
    if line:
        err.print(line, highlight=False, markup=False)


def cmd_instruments(args) -> int:
    from mdh_assets.pipeline import ensure_instruments

    dates = _dates(args)
    keyless = _days_needing_key(dates)
    rt = _runtime(args)
    outcomes = ensure_instruments(rt, dates, force=True)
    _say_metadata_note(rt, dates)
    if keyless:  # their definitions are built all the same (/v1/exchanges is free)
        err.print(f"note: {keyless}; their definitions are written, their data cannot be downloaded",
                  highlight=False, markup=False)
    table = Table(title="Instrument definitions")
    for col in ("date", "instruments", "by type"):
        table.add_column(col)
    for date in dates:
        defs = rt.catalog.definitions(date)
        if defs is not None:
            keep = [t for t, ex in zip(defs["instrument_type"].to_pylist(), defs["exchange"].to_pylist())
                    if not args.venues or ex in args.venues]
            counts = Counter(keep)
            table.add_row(date.isoformat(), str(len(keep)), ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    out.print(table)
    return 1 if _fail_lines(outcomes) else 0


def _retention(rt, dates, filters, strict: bool) -> None:
    """Days past a venue's raw retention: a usage error when ``strict`` (a download without
    --force), else a note (they are reported ``expired``, never missing)."""
    from mdh_lib.retention import Retention

    retention = Retention.of(rt.settings)
    expired = [(d, v) for d in dates for v in filters.venues or rt.settings.universe.exchanges
               if retention.expired(d, v)]
    if not expired:
        return
    day, venue = expired[0]
    setting = (f"raw_retention_days of {venue} in mdh.toml" if venue in retention.days
               else "MDH_RAW_RETENTION_DAYS")
    text = (f"{day} is past the {retention.days_for(venue)}-day raw retention of {venue} (first kept day "
            f"{retention.cutoff(venue)}; {setting}, 0 keeps every day)")
    if strict:
        raise UsageError(f"{text}: add --force to download it anyway")
    err.print(f"note: {len({d for d, _ in expired})} of these days are past a venue's raw retention, e.g. {text}; "
              "they are reported expired, not missing", highlight=False)


def _checked(rt, dates, filters, strict_retention: bool = False):
    """Definitions for every day, and the expected partitions; an unknown venue or symbol
    is a usage error, and so is a day past a venue's retention when ``strict_retention``."""
    from mdh_assets.pipeline import ensure_instruments, expected_for

    _retention(rt, dates, filters, strict_retention)
    failures = [o for o in ensure_instruments(rt, dates) if not o.success]
    _say_metadata_note(rt, dates)
    expected = [e for d in dates for e in expected_for(rt, d)]
    problem = filters.unmatched(rt.settings.universe.exchanges, expected)
    if problem and not failures:
        raise UsageError(problem)
    return expected, failures


def _report_rows(rt, dates, filters):
    from mdh_assets.pipeline import refresh_reports
    from mdh_assets.reports.status import REPORTED

    expected, failures = _checked(rt, dates, filters)
    report, report_failures = refresh_reports(rt, dates)
    keep = {(e.date, e.data_type, e.key) for e in expected if filters.keep(e)}
    rows = [r for r in (report.to_pylist() if report is not None else [])
            if r["status"] in REPORTED and (r["date"], r["data_type"], r["instrument_key"]) in keep]
    return rows, failures + report_failures


def cmd_missing_tick_reports(args) -> int:
    rt, dates = _runtime(args), _dates(args)
    rows, failures = _report_rows(rt, dates, _filters(args))
    if args.format == "json":
        print(json.dumps([{"date": r["date"].isoformat(), "instrument_key": r["instrument_key"],
                           "data_type": r["data_type"], "status": r["status"]} for r in rows], indent=2))
    else:
        _print_report(rows, dates)
    return 1 if _fail_lines(failures) else 0


def _print_report(rows, dates) -> None:
    if not rows:
        out.print(f"Missing-data report {dates[0]}..{dates[-1]}: nothing missing or failed.")
        return
    table = Table(title=f"Missing-data report {dates[0]}..{dates[-1]} ({len(rows)} partitions)")
    for col in ("date", "instrument_key", "data_type", "status"):
        table.add_column(col)
    for r in rows:
        style = "red" if r["status"] == "failed" else None
        table.add_row(r["date"].isoformat(), r["instrument_key"], r["data_type"], r["status"], style=style)
    out.print(table)


def _run_all(rt, planned, verb: str) -> list:
    """One Dagster run per planned run (`mdh_assets.planner.Planned`), with a progress bar
    over the (day, venue) partitions."""
    outcomes = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as bar:
        task = bar.add_task(verb, total=sum(p.days for p in planned))
        for p in planned:
            bar.update(task, description=f"{verb} {p.venue} {p.first}" + (f" .. {p.last}" if p.last != p.first else ""))
            outcomes.append(rt.run_planned(p))
            bar.advance(task, p.days)
        bar.update(task, description=f"{verb}: done")
    return outcomes


def _download(rt, dates, filters, force: bool) -> tuple[list, list]:
    """Fetch what the live statuses list as missing or failed. The stored report of the days
    is not rewritten here: it is the snapshot `missing-tick-reports` and the 08:00 schedule
    materialize (a run of its own, ~0.4 s of every download)."""
    from mdh_assets.pipeline import download_runs, download_targets, unwritten
    from mdh_assets.runs import RunOutcome

    expected, failures = _checked(rt, dates, filters, strict_retention=not force)
    targets = download_targets(rt, expected, filters, force)
    outcomes = _run_all(rt, download_runs(targets, filters, force), "ingesting")
    left = unwritten(rt, targets) if all(o.complete for o in outcomes) else []
    if left:  # never exit 0 with a requested partition unwritten
        first = left[0]
        failures.append(RunOutcome("", [], False, [f"{len(left)} requested partitions are still not written, first "
                                                   f"{first.data_type} {first.date} {first.key}"]))
    return outcomes, failures


def _process(rt, dates, filters, step: str, timeframes) -> tuple[list, list]:
    from mdh_assets.pipeline import processing_runs

    _, failures = _checked(rt, dates, filters)
    verb = "loading the warehouse" if step == "upload" else f"{step} processing"
    return _run_all(rt, processing_runs(rt, dates, filters, step, timeframes), verb), failures


def _family(asset: str) -> str:
    """raw/trades stays itself; candles/1m and the other timeframes fold into candles/*,
    warehouse/candles_1m into warehouse/candles_*."""
    head, _, tail = asset.rpartition("/")
    if tail in TIMEFRAMES:
        return f"{head}/*"
    name, _, tf = tail.rpartition("_")
    return f"{head}/{name}_*" if tf in TIMEFRAMES else asset


def _summary(title: str, outcomes, seconds: float) -> None:
    rows, files = Counter(), Counter()
    for o in outcomes:
        for (asset, _), meta in o.metadata.items():
            files[_family(asset)] += int(meta.get("written_this_run", 1))
            rows[_family(asset)] += int(meta.get("dagster/row_count", 0))
    table = Table(title=f"{title} ({seconds:.1f} s)")
    for col in ("dataset", "files", "rows"):
        table.add_column(col)
    for asset, n in sorted(rows.items()):
        table.add_row(asset, str(files[asset]), f"{n:,}")
    out.print(table)
    failed = sum(1 for o in outcomes if not o.success)
    checks = [passed for o in outcomes for passed in o.checks.values()]
    out.print(f"{sum(files.values())} files written, {failed} of {len(outcomes)} runs failed; "
              f"asset checks: {sum(checks)} passed, {len(checks) - sum(checks)} failed.")


def cmd_download(args) -> int:
    dates, filters = _dates(args), _filters(args)
    keyless = _days_needing_key(dates)
    if keyless:  # before anything runs: a download of these days could only fail (exit 1, as a failed run)
        err.print(f"mdh: error: {keyless}; set TARDIS_API_KEY, or download first days of months only",
                  highlight=False, markup=False)
        return 1
    rt = _runtime(args)
    t0 = time.monotonic()
    outcomes, failures = _download(rt, dates, filters, args.force)
    _summary("Download summary", outcomes, time.monotonic() - t0)
    return 1 if _fail_lines(failures + outcomes) else 0


def _timeframes(args) -> tuple[str, ...]:
    chosen = tuple(args.timeframes) or tuple(TIMEFRAMES)
    bad = [t for t in chosen if t not in TIMEFRAMES]
    if bad:
        raise UsageError(f"unknown timeframe {bad[0]!r} (one of {', '.join(TIMEFRAMES)})")
    return chosen


def _processing_command(step: str, title: str):
    def command(args) -> int:
        rt, dates, filters, tfs = _runtime(args), _dates(args), _filters(args), _timeframes(args)
        t0 = time.monotonic()
        outcomes, failures = _process(rt, dates, filters, step, tfs)
        _summary(title, outcomes, time.monotonic() - t0)
        return 1 if _fail_lines(failures + outcomes) else 0
    return command


def cmd_sample_server(args) -> int:
    from mdh_lib.sample_server import serve_forever

    serve_forever(host=args.host, port=args.port, data_dir=args.data_dir, trades_per_day=args.trades_per_day,
                  latency_ms=args.latency_ms, free_access=args.require_key)
    return 0


def cmd_streaming_ticks(args) -> int:
    from mdh_lib.streaming import StreamingError, run_stream

    try:
        summary = run_stream(args.venue, args.symbol, ticks=True, duration=args.duration)
    except StreamingError as exc:
        raise UsageError(str(exc)) from None
    out.print(summary.table("Streaming ticks"))
    return 1 if any(summary.write_failures.values()) else 0


def cmd_streaming_candles(args) -> int:
    from mdh_lib.streaming import LIVE_TIMEFRAMES, StreamingError, candle_lines, run_stream

    try:
        summary = run_stream(args.venue, args.symbol, ticks=False, timeframes=args.timeframes or LIVE_TIMEFRAMES,
                             duration=args.duration,
                             on_candles=lambda frame: print(*candle_lines(frame), sep="\n", flush=True))
    except StreamingError as exc:
        raise UsageError(str(exc)) from None
    out.print(summary.table("Streaming candles"))
    return 1 if any(summary.write_failures.values()) else 0


def cmd_demo(args) -> int:
    from mdh_assets.demo import run_demo

    return run_demo(days=args.days)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mdh", description="Market data handler: Tardis.dev ticks to Parquet through Dagster.",
                epilog="The original's form works as well: mdh --mode MODE [flags], MODE one of "
                       f"{', '.join(MODES)}.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def dated(name: str, help_: str):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--start-date", type=_date, required=True)
        sp.add_argument("--end-date", type=_date, required=True)
        sp.add_argument("--venues", type=_csv, default=(), help="Tardis exchange ids, e.g. binance,deribit")
        return sp

    sp = dated("instruments", "materialize instrument definitions")
    sp.set_defaults(func=cmd_instruments)

    sp = dated("missing-tick-reports", "raw partitions missing or failed, from Dagster's materialization status")
    sp.add_argument("--data-types", type=_csv, default=())
    sp.add_argument("--format", choices=("table", "json"), default="table")
    sp.set_defaults(func=cmd_missing_tick_reports)

    sp = dated("download", "download what the missing-data report lists (all with --force)")
    sp.add_argument("--instrument-types", type=_csv, default=())
    sp.add_argument("--symbols", type=_csv, default=(), help="exchange symbols (BTCUSDT) or instrument keys")
    sp.add_argument("--data-types", type=_csv, default=())
    sp.add_argument("--force", action="store_true")
    sp.set_defaults(func=cmd_download)

    for name, step, title in (("candle-processing", "candle", "Candle processing"),
                              ("mft-processing", "mft", "MFT processing"),
                              ("bigquery-upload", "upload", "Warehouse load")):
        sp = dated(name, f"materialize {title.lower()} for downloaded days")
        sp.add_argument("--instrument-types", type=_csv, default=())
        sp.add_argument("--symbols", type=_csv, default=())
        sp.add_argument("--timeframes", type=_csv, default=(), help="e.g. 1m,1h (default: all)")
        sp.set_defaults(func=_processing_command(step, title))

    sp = sub.add_parser("sample-server", help="local Tardis-compatible HTTP server")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8765)
    sp.add_argument("--data-dir", default=None, help="serve real files laid out as Tardis serves them")
    sp.add_argument("--trades-per-day", type=int, default=20_000)
    sp.add_argument("--latency-ms", type=int, default=0)
    sp.add_argument("--require-key", action="store_true",
                    help="act as Tardis without a subscription: no /v1/instruments and only the first day of "
                         "each month unless a key is sent (any key counts as paid)")
    sp.set_defaults(func=cmd_sample_server)

    for name, func, help_ in (("streaming-ticks", cmd_streaming_ticks, "live ticks to ticks_{venue}_{symbol}"),
                              ("streaming-candles", cmd_streaming_candles, "live 15s/1m candles to candles_live_{tf}")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--symbol", required=True, help="BTC-USDT, the exchange symbol, or an instrument key")
        sp.add_argument("--venue", default="binance", help="binance, binance-futures or deribit")
        sp.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until SIGINT/SIGTERM")
        if name == "streaming-candles":
            sp.add_argument("--timeframes", type=_csv, default=(), help="default 15s,1m")
        sp.set_defaults(func=func)

    sp = sub.add_parser("demo", help="the whole pipeline on the local sample source")
    sp.add_argument("--days", type=int, default=2)
    sp.set_defaults(func=cmd_demo)
    return p


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run one command; SIGINT and SIGTERM both stop it (even one started in the background,
    where SIGINT is ignored), the handlers before it are restored after."""
    signals = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    before = {sig: signal.signal(sig, _interrupt) for sig in signals}
    try:
        return _main(argv)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


MODES = ("instruments", "missing-tick-reports", "download", "candle-processing", "bigquery-upload",
         "mft-processing", "streaming-ticks", "streaming-candles")


def from_mode(argv: list[str]) -> list[str]:
    """The original's command form, ``--mode MODE`` anywhere among its flags, as the
    subcommand ``MODE`` with the same flags (one parser, so the same behaviour)."""
    for i, arg in enumerate(argv):
        if arg == "--mode" or arg.startswith("--mode="):
            mode = arg.partition("=")[2] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            if mode not in MODES:
                raise UsageError(f"--mode {mode!r}: one of {', '.join(MODES)}" if mode else "--mode needs a value")
            rest = argv[:i] + argv[i + (1 if "=" in arg else 2):]
            return [mode, *rest]
    return argv


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(from_mode(list(sys.argv[1:] if argv is None else argv)))
        return args.func(args)
    except UsageError as exc:
        err.print(f"mdh: error: {exc}", highlight=False, markup=False)
        return 2
    except KeyboardInterrupt:
        err.print("mdh: interrupted", highlight=False)
        return 130
    except SlotWaitTimeout as exc:
        err.print(f"mdh: {exc}", highlight=False, markup=False)
        return 1
    except Exception as exc:  # the last resort: one line, never a traceback (MDH_DEBUG=1 shows it)
        if os.environ.get("MDH_DEBUG"):
            raise
        err.print(f"mdh: error: {type(exc).__name__}: {exc}".splitlines()[0], highlight=False, markup=False)
        return 1


def run() -> None:
    """The console script. Every command leaves without the interpreter's tear-down: by then
    its runs are recorded, everything it wrote is committed atomically (an interrupted run
    is already marked failed, `mdh_assets.recovery`), and only threads and connections of
    Dagster and the native libraries are left, whose tear-down costs seconds on a loaded
    machine and, rarely, aborted a finished command ("terminate called without an active
    exception", exit -6, seen once in a few dozen B8 runs). Logs and output are flushed first;
    argparse's ``--help`` leaves through SystemExit, which ends here the same way."""
    try:
        code = main()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

if __name__ == "__main__":
    run()
