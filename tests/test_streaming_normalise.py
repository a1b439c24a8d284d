"""Live normalisation against the exchanges' documented current message shapes, checked
against tardis-node's mappers (the code that writes Tardis's CSV datasets): which trades
Tardis drops, how liquidations, tickers and book levels map, and that frames for another
symbol than the subscribed one are rejected (counted, logged once)."""

from __future__ import annotations

import logging

import orjson
import polars as pl

from mdh_lib.streaming import Pipeline, resolve, venue
from mdh_lib.streaming.ticks import parse_routed
from mdh_lib.streaming.venues import with_ticker_time

SPOT_TRADE = {"e": "trade", "E": 1672515782136, "s": "BTCUSDT", "t": 12345, "p": "0.001", "q": "100",
              "T": 1672515782134, "m": True, "M": True}
FUT_TRADE = {"e": "trade", "E": 1672515782136, "T": 1672515782134, "s": "BTCUSDT", "t": 12345, "p": "0.001",
             "q": "100", "X": "MARKET", "m": True}
FORCE = {"e": "forceOrder", "E": 1568014460893, "o": {
    "s": "BTCUSDT", "S": "SELL", "o": "LIMIT", "f": "IOC", "q": "0.014", "p": "9910", "ap": "9911.5", "X": "FILLED",
    "l": "0.014", "z": "0.014", "T": 1568014460891}}
MARK = {"e": "markPriceUpdate", "E": 1562305380000, "s": "BTCUSDT", "p": "11794.15000000", "ap": "11794.1",
        "P": "11784.25641265", "i": "11784.62659091", "r": "0.00038167", "T": 1562306400000}
DEPTH_FUT = {"e": "depthUpdate", "E": 1571889248277, "T": 1571889248276, "s": "BTCUSDT", "U": 390497796,
             "u": 390497878, "pu": 390497794,
             "b": [["7403.89", "0.002"], ["7403.90", "3.906"], ["7404.00", "1.428"], ["7404.85", "5.239"],
                   ["7405.43", "2.562"]],
             "a": [["7405.96", "3.340"], ["7406.63", "4.525"], ["7407.08", "2.475"], ["7407.15", "4.800"],
                   ["7407.20", "0.175"]]}
DEPTH_SPOT = {"lastUpdateId": 160, "bids": [["0.0024", "10"], ["0.0023", "5"]], "asks": [["0.0026", "100"]]}


def frame(stream: str, data: dict) -> str:
    return orjson.dumps({"stream": stream, "data": data}).decode()


def normalise(venue_name: str, frames: list[str], received: list[int] | None = None, symbol: str = "BTC-USDT"):
    v = venue(venue_name)
    received = received or list(range(1, len(frames) + 1))
    parsed, bad = parse_routed(frames, received, v.schemas, v.route)
    assert bad == []
    return v.normalize(parsed, resolve(v, symbol))


def test_binance_futures_drops_the_trades_tardis_drops():
    """tardis-node's BinanceTradesMapper skips off-book trades (X = INSURANCE_FUND, ADL; NA as
    well): live keeps exactly the trades batch has. Unknown extra fields do not matter."""
    kinds = ["MARKET", "INSURANCE_FUND", "ADL", "NA", None]
    frames = [frame("btcusdt@trade", {**FUT_TRADE, "t": i, "X": x, "newField": {"nested": [1, 2]}})
              for i, x in enumerate(kinds)]
    batch = normalise("binance-futures", frames)
    assert batch.trades["id"].to_list() == ["0", "4"]
    assert batch.ignored == 3 and batch.malformed == 0
    assert batch.trades.row(0, named=True) == {
        "exchange": "binance-futures", "symbol": "BTCUSDT", "timestamp": 1_672_515_782_134_000, "local_timestamp": 1,
        "id": "0", "side": "sell", "price": 0.001, "amount": 100.0}


def test_binance_liquidation_ticker_open_interest_and_depth():
    """forceOrder: only FILLED orders, price = average price ``ap``, amount = filled ``z``;
    markPrice: mark, index, funding rate (only when ``r`` is set and ``T`` is not 0), at
    ``E``; open interest (the REST answer, as Tardis records it) takes the last mark-price
    time; futures depth5 -> a book_snapshot_5 row at ``T``."""
    frames = [
        frame("btcusdt@forceOrder", FORCE),
        frame("btcusdt@forceOrder", {**FORCE, "o": {**FORCE["o"], "X": "NEW"}}),
        frame("btcusdt@markPrice@1s", MARK),
        frame("btcusdt@openInterest", {"openInterest": "10659.509", "symbol": "BTCUSDT", "time": 1589437530011}),
        frame("btcusdt@markPrice@1s", {**MARK, "E": MARK["E"] + 1000, "r": "", "p": "11795"}),
        frame("btcusdt@depth5@100ms", DEPTH_FUT),
    ]
    batch = normalise("binance-futures", frames)
    assert batch.liquidations.drop("exchange", "symbol").to_dicts() == [
        {"timestamp": 1_568_014_460_891_000, "local_timestamp": 1, "id": None, "side": "sell", "price": 9911.5,
         "amount": 0.014}]
    assert batch.ignored == 1 and batch.malformed == 0  # the NEW order
    assert batch.ticker.to_dicts() == [
        {"timestamp": 1_562_305_380_000_000, "local_timestamp": 3, "funding_rate": 0.00038167,
         "predicted_funding_rate": None, "open_interest": None, "mark_price": 11794.15, "index_price": 11784.62659091},
        {"timestamp": None, "local_timestamp": 4, "funding_rate": None, "predicted_funding_rate": None,
         "open_interest": 10659.509, "mark_price": None, "index_price": None},
        {"timestamp": 1_562_305_381_000_000, "local_timestamp": 5, "funding_rate": None,
         "predicted_funding_rate": None, "open_interest": None, "mark_price": 11795.0, "index_price": 11784.62659091}]
    book = batch.book.row(0, named=True)
    assert book["timestamp"] == 1_571_889_248_276_000 and book["local_timestamp"] == 6
    assert [book[f"bids[{i}].price"] for i in range(5)] == [7403.89, 7403.90, 7404.00, 7404.85, 7405.43]
    assert [book[f"asks[{i}].amount"] for i in range(5)] == [3.340, 4.525, 2.475, 4.800, 0.175]

    # the open-interest row takes the latest mark-price time (Tardis's pending ticker), so it
    # counts in the same bucket as batch's row; before any mark price, its receive time
    # mapped to exchange time
    assert with_ticker_time(batch.ticker, None, None)["timestamp"].to_list() == [
        1_562_305_380_000_000] * 2 + [1_562_305_381_000_000]
    assert with_ticker_time(batch.ticker[1:2], 77, 3)["timestamp"].to_list() == [77]
    assert with_ticker_time(batch.ticker[1:2], None, 3)["timestamp"].to_list() == [4 - 3]  # receive -> exchange
    assert with_ticker_time(batch.ticker[1:2], None, None).is_empty()  # no exchange time known yet


def test_binance_spot_depth_gets_exchange_time_through_the_measured_offset():
    """Spot partial depth has no time: the row is stamped receive time minus the offset the
    trades measured (receive - exchange)."""
    v = venue("binance")
    p = Pipeline(v, resolve(v, "BTCUSDT"), ("15s",))
    frames = [frame("btcusdt@trade", SPOT_TRADE), frame("btcusdt@depth5@100ms", DEPTH_SPOT)]
    received = [1_672_515_782_300_000, 1_672_515_782_500_000]
    p.process(received, frames)
    book = p.candles._book.row(0, named=True)
    assert book["timestamp"] == 1_672_515_782_334_000  # 500 ms - (300 ms - 134 ms)
    assert (book["bids[1].price"], book["bids[2].price"], book["asks[0].amount"]) == (0.0023, None, 100.0)


def test_frames_of_another_symbol_are_rejected_and_logged_once(caplog):
    v = venue("binance-futures")
    p = Pipeline(v, resolve(v, "BTCUSDT"))
    caplog.set_level(logging.WARNING, "mdh.streaming")
    eth = frame("ethusdt@trade", {**FUT_TRADE, "s": "ETHUSDT"})
    mislabelled = frame("btcusdt@trade", {**FUT_TRADE, "s": "ETHUSDT", "t": 2})
    for _ in range(3):
        ticks, _ = p.process([1, 2, 3], [eth, mislabelled, frame("btcusdt@trade", FUT_TRADE)])
        assert ticks["id"].to_list() in (["12345"], [])
    assert p.counts.foreign == 6 and p.counts.trades == 1
    assert caplog.text.count("rejected") == 1 and "ETHUSDT" in caplog.text


def deribit_note(channel: str, data) -> str:
    return orjson.dumps({"jsonrpc": "2.0", "method": "subscription",
                         "params": {"channel": channel, "data": data}}).decode()


def test_deribit_trades_liquidations_ticker_book_and_foreign():
    """tardis-node's deribit mappers: a trade with ``liquidation`` is also a liquidation, side =
    direction for T (taker liquidated), else the opposite (M, MT); ticker: current_funding,
    index, mark, open interest at ``timestamp``; book: the grouped snapshot's first levels."""
    trade = {"trade_seq": 1, "trade_id": "48079254", "timestamp": 1590484156350, "tick_direction": 0, "price": 8950,
             "mark_price": 8948.9, "instrument_name": "BTC-PERPETUAL", "index_price": 8955.88, "direction": "sell",
             "amount": 10, "block_trade_id": None}
    trades = [{**trade, "trade_id": str(i), "liquidation": liq} for i, liq in enumerate(["T", "M", "MT"])]
    trades.append({**trade, "trade_id": "9"})
    ticker = {"timestamp": 1623060194301, "stats": {"volume_usd": 1.0, "low": 1.0}, "state": "open",
              "settlement_price": 35000.0, "open_interest": 502231260, "min_price": 35000.1, "max_price": 36000.2,
              "mark_price": 35525.59, "last_price": 35525.0, "interest_value": 1.1, "instrument_name": "BTC-PERPETUAL",
              "index_price": 35526.4, "funding_8h": 0.0001, "estimated_delivery_price": 35526.4,
              "current_funding": 0.00002, "best_bid_price": 35525.0, "best_bid_amount": 10.0,
              "best_ask_price": 35525.5, "best_ask_amount": 20.0}
    book = {"timestamp": 1554375447971, "instrument_name": "BTC-PERPETUAL", "change_id": 109615,
            "bids": [[160, 40], [159.5, 1], [159, 2], [158, 3], [157, 4], [156, 5]], "asks": [[161, 20]]}
    frames = [
        '{"jsonrpc":"2.0","id":1,"result":["trades.BTC-PERPETUAL.100ms"]}',
        deribit_note("trades.BTC-PERPETUAL.100ms", trades),
        deribit_note("ticker.BTC-PERPETUAL.100ms", ticker),
        deribit_note("book.BTC-PERPETUAL.none.10.100ms", book),
        deribit_note("trades.ETH-PERPETUAL.100ms", [{**trade, "instrument_name": "ETH-PERPETUAL"}]),
        deribit_note("ticker.ETH-PERPETUAL.100ms", {**ticker, "instrument_name": "ETH-PERPETUAL"}),
    ]
    batch = normalise("deribit", frames, symbol="BTC-USD")
    assert batch.trades.height == 4 and batch.foreign == 2 and batch.ignored == 1 and batch.malformed == 0
    assert batch.liquidations.select("id", "side", "price", "amount").rows() == [
        ("0", "sell", 8950.0, 10.0), ("1", "buy", 8950.0, 10.0), ("2", "buy", 8950.0, 10.0)]
    assert batch.ticker.to_dicts() == [
        {"timestamp": 1_623_060_194_301_000, "local_timestamp": 3, "funding_rate": 0.00002,
         "predicted_funding_rate": None, "open_interest": 502231260.0, "mark_price": 35525.59,
         "index_price": 35526.4}]
    row = batch.book.row(0, named=True)
    assert row["timestamp"] == 1_554_375_447_971_000
    assert [row[f"bids[{i}].price"] for i in range(5)] == [160.0, 159.5, 159.0, 158.0, 157.0]
    assert (row["asks[0].price"], row["asks[0].amount"], row["asks[1].price"]) == (161.0, 20.0, None)
