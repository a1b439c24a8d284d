"""The original's users move over unchanged: a new user's `mdh demo` in an empty folder; the
original guide's examples (``examples/*.py``) against its data, each in a fresh process;
every command line of its usage guide (``../shared/seed/``) with only the program name
replaced by ``mdh``; and every Python block against the demo data with only its import lines
mapped to ``mdh_lib``. One `mdh demo` serves the file (it runs as one unit under
pytest-xdist's ``--dist loadfile``).

What the guide leaves to its reader is given to each block in `IMPLICIT`, named and
explained there (``datetime`` and ``pd`` it never imports, the ``data_client`` and readers
that earlier sections made, the user's own callbacks such as ``run_backtest``, which here
record what they receive so the test checks it). A block that is not Python (a
requirements line) runs its import lines alone, and says so.

Streaming lines run with their literal arguments against a local websocket replay server
and are stopped with SIGINT once ticks have flowed (``--duration 300`` would make the test
wait five minutes; `tests/test_streaming.py` covers the duration itself), which a stream
treats as a normal end (exit 0).

Days: the batch lines use the guide's 2023-05-23 against the sample server. The Python
blocks read 2024-01-01 (the demo's first day) up to 2024-01-31 (MFT 1h over January, HFT
features over a week); `guide_data` fills what they read beyond the demo's two days with
`mdh_lib.processor.Processor`, the processing API without Dagster.
"""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from conftest import REPO

# the demo (1-2 minutes) is set up by the first test that needs it
pytestmark = pytest.mark.timeout(900)

GUIDE_DIR = REPO.parent / "shared" / "seed"
PROGRAM = ["python", "-m", "market_data_tick_handler.main."]
MDH = str(Path(sys.executable).with_name("mdh"))
KEY = "BINANCE:SPOT_PAIR:BTC-USDT"
# The guide's modules, all of which are mdh_lib now.
GUIDE_MODULES = ("src.data_client", "src.bigquery_uploader", "src.candle_processor", "config",
                 "market_data_tick_handler", "market_data_tick_handler.config")


def guide() -> str:
    files = sorted(GUIDE_DIR.glob("*.txt")) + sorted(GUIDE_DIR.glob("*.md"))
    if not files:
        pytest.skip(f"the original's usage guide is not at {GUIDE_DIR} (it lives only in ../shared)")
    return "\n".join(f.read_text() for f in files)


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", guide(), flags=re.S)


def command_lines() -> list[list[str]]:
    """Each guide command line of the original program, once, program name replaced."""
    seen, out = set(), []
    for block in blocks("bash"):
        for line in block.splitlines():
            if not line.startswith(" ".join(PROGRAM)):
                continue
            words = shlex.split(line, comments=True)
            if words[:3] == PROGRAM and line not in seen:
                seen.add(line)
                out.append([MDH, *words[3:]])
    return out


def is_streaming(argv: list[str]) -> bool:
    return argv[argv.index("--mode") + 1].startswith("streaming-")


def test_guide_has_all_eight_modes():
    modes = {argv[argv.index("--mode") + 1] for argv in command_lines()}
    assert modes == {"instruments", "missing-tick-reports", "download", "candle-processing", "bigquery-upload",
                     "mft-processing", "streaming-ticks", "streaming-candles"}


def test_mode_form_is_the_subcommand():
    from mdh_assets.cli import build_parser, from_mode

    for argv in command_lines():
        mapped = from_mode(argv[1:])
        assert mapped[0] == argv[argv.index("--mode") + 1] and "--mode" not in mapped
        assert vars(build_parser().parse_args(mapped))  # every flag of the guide is known


def test_guide_batch_command_lines(tmp_path, server):
    """The six batch lines (and the download variants) in the guide's order, on one
    universe holding Binance's BTC-USDT: each exits 0, and the day ends with candles, MFT
    features and warehouse rows."""
    (tmp_path / "mdh.toml").write_text('[universe]\nstart_date = "2023-01-01"\n'
                                       '[[universe.venues]]\nexchange = "binance"\nsymbols = ["BTCUSDT"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDH_", "TARDIS_", "DAGSTER_", "BIGQUERY_"))}
    env.update(MDH_CONFIG=str(tmp_path / "mdh.toml"), MDH_DATA_ROOT=str(tmp_path / "data"),
               DAGSTER_HOME=str(tmp_path / "dagster"), TARDIS_DATASETS_ENDPOINT=server.endpoint,
               TARDIS_API_ENDPOINT=server.endpoint, MDH_WAREHOUSE=f"duckdb:///{tmp_path / 'wh.duckdb'}",
               MDH_RAW_RETENTION_DAYS="0")
    lines = [argv for argv in command_lines() if not is_streaming(argv)]
    assert len(lines) == 8
    for argv in lines:
        run = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{shlex.join(argv[1:])}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
        assert "Traceback" not in run.stderr
    from mdh_lib.catalog import Catalog
    from mdh_lib.storage import Storage
    from mdh_lib.warehouse import open_warehouse

    day, catalog = dt.date(2023, 5, 23), Catalog(Storage(str(tmp_path / "data")))
    assert catalog.read(("candles", "1m"), day, KEY).height == 1440
    assert catalog.read(("features", "mft", "1h"), day, KEY).height == 24
    with open_warehouse(env["MDH_WAREHOUSE"]) as wh:
        assert wh.query(f"SELECT count(*) AS n FROM {wh.table_ref('candles_15s')}")["n"][0] == 5760


@pytest.mark.parametrize("argv", [a for a in command_lines() if is_streaming(a)] if GUIDE_DIR.exists() else [],
                         ids=lambda a: " ".join(a[1:]))
def test_guide_streaming_command_lines(tmp_path, argv):
    from mdh_lib.streaming.replay import ReplayServer, binance_trades, merged
    from mdh_lib.warehouse import open_warehouse

    symbol = argv[argv.index("--symbol") + 1].replace("-", "")
    n = 30_000
    rows = pl.DataFrame({
        "exchange": "binance", "symbol": symbol,
        "timestamp": [1_709_251_200_000_000 + i * 7_000 for i in range(n)],
        "local_timestamp": [1_709_251_200_003_000 + i * 7_000 for i in range(n)],
        "id": [str(1_000 + i) for i in range(n)], "side": ["buy" if i % 3 else "sell" for i in range(n)],
        "price": [3_000.0 + (i % 97) * 0.01 for i in range(n)], "amount": [0.001 * (1 + i % 13) for i in range(n)],
    })
    wh = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    with ReplayServer(merged(binance_trades(rows, f"{symbol.lower()}@trade")), rate=10_000) as ws:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MDH_", "BIGQUERY_"))}
        env.update(MDH_WAREHOUSE=wh, MDH_WS_ENDPOINT_BINANCE=ws.endpoint)
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while ws.position < 15_000 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stdout[-2000:] + stderr[-2000:]
    table = f"ticks_binance_{symbol.lower()}" if "streaming-ticks" in argv else "candles_live_15s"
    with open_warehouse(wh) as w:
        assert w.query(f"SELECT count(*) AS n FROM {w.table_ref(table)}")["n"][0] > 0


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    """A new user's folder after `mdh demo`, run in a fresh process with no MDH_/TARDIS_/
    DAGSTER_ settings of the developer: (folder, environment)."""
    folder = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDH_", "TARDIS_", "DAGSTER_", "BIGQUERY_",
                                                                    "STORAGE_EMULATOR"))}
    run = subprocess.run([str(Path(sys.executable).with_name("mdh")), "demo"], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "0 of" in run.stdout and "runs failed" in run.stdout and "Traceback" not in run.stderr
    return folder, env


EXAMPLES = sorted((REPO / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_on_demo_data(demo_folder, script):
    folder, env = demo_folder
    run = subprocess.run([sys.executable, str(script)], cwd=folder, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert run.stdout.strip()


def test_import_mdh_lib_does_not_import_dagster():
    code = ("import sys, mdh_lib; from mdh_lib import DataClient, CandleDataReader, TickDataReader, "
            "HFTFeaturesReader, MFTFeaturesReader, BigQueryClient, Processor, HistoricalCandleProcessor, "
            "CandleUploader, get_config; assert 'dagster' not in sys.modules, 'dagster'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


# -- the Python blocks -------------------------------------------------------------------------

def mapped(source: str) -> str:
    """The block with each import of a guide module turned into the same import from mdh_lib."""
    def one(match: re.Match) -> str:
        module = match.group(2)
        return f"{match.group(1)}from mdh_lib import{match.group(3)}" if module in GUIDE_MODULES else match.group(0)
    return re.sub(r"^(\s*)from\s+([\w.]+)\s+import\b(.*)$", one, source, flags=re.M)


def python_blocks() -> list[tuple[str, str]]:
    """(id, source) of each Python block: its first comment or the heading above it."""
    text, out = guide(), []
    for match in re.finditer(r"```python\n(.*?)```", text, flags=re.S):
        heading = re.findall(r"^#+ (.+)$", text[:match.start()], flags=re.M)[-1]
        out.append((re.sub(r"\W+", "-", heading).strip("-").lower(), match.group(1)))
    return out


class Recorder:
    """A callback the guide leaves to its reader (``run_backtest(tick_data)``): records its
    arguments."""

    def __init__(self):
        self.calls = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))


UTC = dt.timezone.utc
CALLBACKS = ("run_backtest", "run_execution_backtest", "run_features_backtest", "process_and_upload_to_bigquery",
             "process_chunk")


def implicit(demo) -> dict:
    """The names the guide's blocks use without defining them (see the module docstring)."""
    from mdh_lib import CandleDataReader, DataClient, OrchestrationConfig, TickDataReader, get_config

    config = get_config()
    data_client = DataClient(config.gcp.bucket, config)
    return {
        "datetime": dt.datetime, "timezone": dt.timezone, "timedelta": dt.timedelta, "pd": pd,  # never imported
        "config": config, "bucket_name": config.gcp.bucket,  # "Configuration" section
        # what earlier sections imported or made ("Configuration" uses DataClient, imported
        # by every section before it; "Concurrent Processing" the uploader's OrchestrationConfig)
        "DataClient": DataClient, "OrchestrationConfig": OrchestrationConfig,
        "data_client": data_client, "candle_reader": CandleDataReader(data_client),
        "tick_reader": TickDataReader(data_client),
        "logger": logging.getLogger("guide"),
        # the "Error handling" and "Memory efficiency" blocks' free variables
        "instrument_id": KEY, "timeframe": "1m", "start_date": dt.datetime(2024, 1, 1, tzinfo=UTC),
        "end_date": dt.datetime(2024, 1, 2, tzinfo=UTC), "start_time": dt.datetime(2024, 1, 1, 12, tzinfo=UTC),
        "end_time": dt.datetime(2024, 1, 1, 12, 5, tzinfo=UTC), "date": dt.datetime(2024, 1, 1, tzinfo=UTC),
        **{name: Recorder() for name in CALLBACKS},
    }


@pytest.fixture(scope="module")
def guide_data(demo_folder, sample_server, tmp_path_factory):
    """The demo folder plus the days the blocks read beyond the demo's two, for BTC-USDT,
    made with the processing API (`Processor`, no Dagster) against the session's sample
    server on a Binance-only universe: definitions and trades of 2024-01-03..2024-01-30 with
    their 1h candles and MFT 1h features; up to 2024-01-06 also the book, 15s and 1m candles
    and book features that the HFT reader joins. The demo's warehouse is named in
    MDH_WAREHOUSE, as a deployment names its warehouse (the guide's `UploadConfig` names a
    BigQuery project)."""
    from mdh_lib.config import load_settings
    from mdh_lib.processor import Processor

    folder, env = demo_folder
    universe = tmp_path_factory.mktemp("guide") / "mdh.toml"
    universe.write_text('[[universe.venues]]\nexchange = "binance"\nsymbols = ["BTCUSDT"]\n')
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env, MDH_WAREHOUSE=f"duckdb:///{folder / '.mdh' / 'warehouse.duckdb'}")
    os.chdir(folder)
    try:
        p = Processor(settings=load_settings(dict(os.environ, MDH_CONFIG=str(universe),
                                                  TARDIS_DATASETS_ENDPOINT=sample_server.endpoint,
                                                  TARDIS_API_ENDPOINT=sample_server.endpoint)))
        for i in range(2, 30):
            day = dt.date(2024, 1, 1) + dt.timedelta(days=i)
            p.instruments(day)
            if i < 6:
                p.ingest(day, KEY, ["trades", "book_snapshot_5"])
                p.candles(day, KEY, ["15s", "1m", "1h"])
                p.book(day, KEY, ["15s", "1m"])
            else:
                p.ingest(day, KEY, ["trades"])
                p.candles(day, KEY, ["1h"])
            p.mft(day, KEY, ["1h"])
        yield folder
    finally:
        os.chdir(REPO)
        os.environ.clear()
        os.environ.update(saved)


def run_block(source: str, namespace: dict) -> None:
    """Run a block as a notebook cell: top-level ``await`` allowed."""
    code = compile(source, "<guide block>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if asyncio.iscoroutine(result):
        asyncio.run(result)


def frames_in(namespace: dict, before: dict) -> dict[str, pd.DataFrame]:
    return {k: v for k, v in namespace.items() if isinstance(v, pd.DataFrame) and before.get(k) is not v}


PY_BLOCKS = python_blocks() if GUIDE_DIR.exists() else []


@pytest.mark.parametrize("name, source", PY_BLOCKS, ids=[n for n, _ in PY_BLOCKS])
def test_guide_python_block(guide_data, name, source, capsys):
    namespace = implicit(guide_data)
    before = dict(namespace)
    try:
        ast.parse(source)
    except SyntaxError as exc:
        # "Package Integration": a requirements.txt line and then imports; not Python as a
        # whole, so its import lines run alone
        imports = "\n".join(line for line in source.splitlines() if re.match(r"\s*(from|import)\s", line))
        assert imports, f"{name}: not Python ({exc}) and no import lines to check"
        run_block(mapped(imports), namespace)
        return
    run_block(mapped(source), namespace)
    if "class FeaturesService" in source:
        # The block defines the service; use it. Its `_calculate_mft_features` is the guide's
        # `pass`, so the upload gets None: one clear error, nothing written.
        service = namespace["FeaturesService"]()
        with pytest.raises((TypeError, ValueError), match="features"):
            service.process_hft_features(KEY, dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC))
        return
    for frame_name, frame in frames_in(namespace, before).items():
        assert len(frame), f"{name}: {frame_name} is empty"
    for callback in CALLBACKS:
        for args, _ in namespace[callback].calls:
            assert all(len(a) for a in args if isinstance(a, pd.DataFrame)), f"{name}: {callback} got an empty frame"
    if "result" in namespace:  # the processing blocks: a day built, or loaded (or already there)
        result = namespace["result"]
        assert result.rows and getattr(result, "success", True) or getattr(result, "skipped", None), result
    capsys.readouterr()


def test_processor_candles_equal_the_assets(guide_data):
    """A service builds a day's candles of one instrument from the storage root with mdh_lib
    alone, in a process with no Dagster: equal to what the Dagster asset wrote."""
    code = (
        "import sys, datetime as dt, polars as pl\n"
        "from mdh_lib import Processor\n"
        "from mdh_lib.catalog import Catalog\n"
        f"p = Processor()\nday = dt.date(2024, 1, 1)\n"
        f"made = p.candles(day, {KEY!r}, write=False)\n"
        "assert 'dagster' not in sys.modules\n"
        "for tf, frame in made.items():\n"
        f"    stored = p.catalog.read(('candles', tf), day, {KEY!r})\n"
        "    assert frame.equals(stored), tf\n"
        "print(len(made), sum(f.height for f in made.values()))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDH_", "TARDIS_", "DAGSTER_"))}
    run = subprocess.run([sys.executable, "-c", code], cwd=guide_data, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["7", str(5760 + 1440 + 288 + 96 + 24 + 6 + 1)]
