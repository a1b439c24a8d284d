"""Tardis CSV parsing: the real file value for value, and every kind of bad file."""

import datetime as dt
import gzip
import shutil

import polars as pl
import pyarrow.csv as pacsv
import pytest

from conftest import real_file
from mdh_lib.schemas import raw_schema
from mdh_lib.tardis.parse import RawFileError, read_raw_csv

TRADES = "binance-futures_trades_2020-02-22_BTCUSDT.csv"


@pytest.fixture()
def trades_gz(tmp_path):
    dest = tmp_path / "BTCUSDT.csv.gz"
    with open(real_file(TRADES), "rb") as fin, gzip.open(dest, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dest


def test_real_trades_value_for_value(trades_gz):
    table = read_raw_csv(str(trades_gz), "trades", dt.date(2020, 2, 22))
    raw = pacsv.read_csv(real_file(TRADES), convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    assert table.num_rows == raw.num_rows == 9_999
    got = sorted(zip(*(table[c].to_pylist() for c in ("local_timestamp", "timestamp", "price", "amount", "side"))))
    want = sorted(zip(*(raw[c].to_pylist() for c in ("local_timestamp", "timestamp", "price", "amount", "side"))))
    assert got == want
    ts = table["timestamp"].to_pylist()
    assert ts == sorted(ts)


def test_empty_gzip_is_a_day_without_data(tmp_path):
    path = tmp_path / "empty.csv.gz"
    path.write_bytes(gzip.compress(b""))
    assert read_raw_csv(str(path), "trades").num_rows == 0


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda b: b[: len(b) // 2], "corrupt or truncated"),
        (lambda b: b[:200] + bytes(x ^ 0xFF for x in b[200:400]) + b[400:], "corrupt or truncated"),
        (lambda b: b"not gzip at all", "corrupt or truncated: not a readable gzip"),
    ],
)
def test_broken_gzip(trades_gz, mangle, message):
    trades_gz.write_bytes(mangle(trades_gz.read_bytes()))
    with pytest.raises(RawFileError, match=message) as exc:
        read_raw_csv(str(trades_gz), "trades")
    assert "BTCUSDT.csv.gz" in str(exc.value) and "\n" not in str(exc.value)


def test_wrong_header_and_bad_value(tmp_path):
    bad_header = tmp_path / "h.csv.gz"
    bad_header.write_bytes(gzip.compress(b"exchange,symbol,timestamp,local_timestamp,id,side,px,amount\n"))
    with pytest.raises(RawFileError, match="wrong header for trades .*missing price.*unexpected px"):
        read_raw_csv(str(bad_header), "trades")
    bad_value = tmp_path / "v.csv.gz"
    bad_value.write_bytes(gzip.compress(
        b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nbinance,BTCUSDT,1,2,7,buy,abc,1\n"))
    with pytest.raises(RawFileError, match="bad value"):
        read_raw_csv(str(bad_value), "trades")
    bad_side = tmp_path / "s.csv.gz"
    bad_side.write_bytes(gzip.compress(
        b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nbinance,BTCUSDT,1,2,7,up,5,1\n"))
    with pytest.raises(RawFileError, match="side"):
        read_raw_csv(str(bad_side), "trades")


def test_streamed_large_day_equals_whole_read(trades_gz, tmp_path, monkeypatch):
    """Days above WHOLE_FILE_BYTES stream through a reorder window; the stored day is the
    same as the whole read, and a file more out of order than the window falls back."""
    import polars as pl

    from mdh_lib import ingest
    from mdh_lib.tardis import parse

    whole = read_raw_csv(str(trades_gz), "trades", dt.date(2020, 2, 22))
    monkeypatch.setattr(ingest, "WHOLE_FILE_BYTES", 0)
    monkeypatch.setattr(parse, "BLOCK_SIZE", 64 << 10)  # many small blocks
    streamed = ingest.stage_raw_file(str(trades_gz), "trades", dt.date(2020, 2, 22), "t", str(tmp_path / "s.parquet"))
    assert pl.read_parquet(tmp_path / "s.parquet").equals(pl.from_arrow(whole))
    assert streamed.rows == 9_999

    # a message delayed by 200 s: older than the 60 s reorder window allows
    t0 = 1_704_067_200_000_000
    lines = [f"binance,BTCUSDT,{t0 + i * 10_000},{t0 + i * 10_000 + 500},{i},buy,1,1" for i in range(20_000)]
    lines.append(f"binance,BTCUSDT,{t0 + 5_000},{t0 + 200_000_000},late,sell,1,1")  # 200 s after the fact
    late = tmp_path / "late.csv.gz"
    late.write_bytes(gzip.compress(("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
                                    + "\n".join(lines) + "\n").encode()))
    with pytest.raises(parse.OutOfOrder):
        list(parse.iter_raw_batches(str(late), "trades"))
    fallback = ingest.stage_raw_file(str(late), "trades", dt.date(2024, 1, 1), "late", str(tmp_path / "f.parquet"))
    stored = pl.read_parquet(tmp_path / "f.parquet")
    assert fallback.rows == 20_001 and stored["timestamp"].is_sorted() and stored["id"][1] == "late"


@pytest.mark.parametrize("offset", [-8, -5, -4, -1])  # CRC-32 (first and last byte), length (first and last byte)
def test_gzip_checksum_and_length_are_verified(trades_gz, offset):
    """The whole-day reader (polars, every core) checks the gzip trailer: a flipped bit of
    the CRC-32 or of the length is a corrupt file, not a day."""
    data = bytearray(trades_gz.read_bytes())
    data[offset] ^= 0x01
    trades_gz.write_bytes(bytes(data))
    with pytest.raises(RawFileError, match="corrupt or truncated.*checksum"):
        read_raw_csv(str(trades_gz), "trades")


def test_stage_raw_day_hands_over_the_stored_day(trades_gz, tmp_path):
    """`stage_raw_day` gives ``then`` the day as stored (sorted, checked) from memory; a file
    that fails its check raises RawFileError even when ``then`` fails first."""
    import polars as pl

    from mdh_lib.ingest import stage_raw_day

    info, got = stage_raw_day(str(trades_gz), "trades", dt.date(2020, 2, 22), "t", str(tmp_path / "d.parquet"),
                              then=lambda day: day)
    assert info.rows == got.height == 9_999 and got.equals(pl.read_parquet(tmp_path / "d.parquet"))

    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(
        b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nbinance,BTCUSDT,1,2,7,up,5,1\n"))

    def fails(day):
        raise ZeroDivisionError

    with pytest.raises(RawFileError, match="side"):
        stage_raw_day(str(bad), "trades", None, "bad", str(tmp_path / "b.parquet"), then=fails)



BOOK = "binance-futures_book_snapshot_5_2020-09-01_BTCUSDT.csv"
BREAKAGES = {  # (file, data type, day): [(what breaks, the failure named)]
    (TRADES, "trades", dt.date(2020, 2, 22)): [
        (pl.col("price").neg(), "price: greater_than(0)"),
        (pl.when(pl.int_range(pl.len()) == 7).then(None).otherwise(pl.col("symbol")).alias("symbol"),
         "symbol: not_nullable"),
        (pl.lit("long").alias("side"), "side: isin"),
        (pl.col("amount").neg(), "amount: greater_than_or_equal_to(0)"),
        (pl.col("local_timestamp") + 86_400_000_000, "frame: local_timestamp_in_day"),
        (pl.col("timestamp").cast(pl.Float64), "timestamp: dtype"),
    ],
    (BOOK, "book_snapshot_5", dt.date(2020, 9, 1)): [
        ((pl.col("asks[1].price") + 1).alias("asks[0].price"), "frame: book_levels_sorted"),
        (pl.col("bids[2].amount").neg(), "bids[2].amount: greater_than_or_equal_to(0)"),
    ],
}


@pytest.mark.parametrize("source, data_type, day, expr, failure",
                         [(*k, *b) for k, bs in BREAKAGES.items() for b in bs])
def test_one_query_check_agrees_with_pandera(tmp_path, source, data_type, day, expr, failure):
    """The raw check runs as one polars query, and Pandera only on a failure
    (`mdh_lib.frame_checks`): both pass the real file, both fail each breakage, and the
    failure names its column and check."""
    import pandera.errors

    gz = tmp_path / f"{source}.gz"
    gz.write_bytes(gzip.compress(open(real_file(source), "rb").read(), 1))
    schema = raw_schema(data_type, day)
    good = pl.from_arrow(read_raw_csv(str(gz), data_type, day))
    assert schema.passes(good) and schema.failures(good) == []
    schema.pandera.validate(good, lazy=True)
    bad = good.with_columns(expr)
    assert any(failure in f for f in schema.failed_rules(bad)), schema.failed_rules(bad)
    with pytest.raises(pandera.errors.SchemaErrors):
        schema.pandera.validate(bad, lazy=True)
    assert schema.failures(bad)
