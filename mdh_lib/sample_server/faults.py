"""Fault injection for the sample server: rules consulted per request, so tests can reproduce
slow, failing, throttled or damaged Tardis responses on demand.

A rule matches a path substring (or every path) and applies to its next `times` requests
(None = forever). Kinds and their parameters:

- latency: ms (added before answering)
- status: status (401, 404, 429, 500, ...), retry_after (seconds, sent with 429; default 1)
- truncated: percent (share of the gzip bytes sent, default 50; Content-Length matches)
- corrupt: nbytes (bytes flipped in the middle of the gzip body, default 16)
- empty: an empty gzip with no header (Tardis's day without data)
- wrong_header: column (default "price" or the last column), rename_to (default: drop the column)
- bad_value: column (default the first *price* column), value (default "abc"), row (default middle)
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field

KINDS = ("latency", "status", "truncated", "corrupt", "empty", "wrong_header", "bad_value")
BODY_KINDS = ("truncated", "corrupt", "empty", "wrong_header", "bad_value")
_PARAMS = {"latency": {"ms"}, "status": {"status", "retry_after"}, "truncated": {"percent"},
           "corrupt": {"nbytes"}, "empty": set(), "wrong_header": {"column", "rename_to"},
           "bad_value": {"column", "value", "row"}}


@dataclass
class Rule:
    kind: str
    match: str | None = None
    times: int | None = None
    params: dict = field(default_factory=dict)

    def matches(self, path: str) -> bool:
        return self.match is None or self.match in path


class Faults:
    """Thread-safe rule list: tests add rules from their thread, the server reads them."""

    def __init__(self) -> None:
        self._rules: list[Rule] = []
        self._lock = threading.Lock()

    def add(self, kind: str, match: str | None = None, times: int | None = None, **params) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(KINDS)}")
        unknown = set(params) - _PARAMS[kind]
        if unknown:
            raise ValueError(f"fault {kind!r} takes no parameter {', '.join(sorted(unknown))}")
        if kind == "status" and not isinstance(params.get("status"), int):
            raise ValueError("fault 'status' needs an integer status")
        if times is not None and times < 1:
            raise ValueError("times must be a positive integer or None")
        with self._lock:
            self._rules.append(Rule(kind, match, times, params))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, path: str, kinds: tuple[str, ...]) -> list[Rule]:
        """Consume one use of every matching rule of these kinds (all latency rules add up;
        for other kinds only the first one counts)."""
        taken = []
        with self._lock:
            for rule in list(self._rules):
                if rule.kind not in kinds or not rule.matches(path):
                    continue
                if taken and rule.kind != "latency":
                    continue
                taken.append(rule)
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
        return taken


def damage(rule: Rule, body: bytes) -> bytes:
    """The gzip body as the fault rule wants it served."""
    if rule.kind == "empty":
        return gzip.compress(b"", mtime=0)
    if rule.kind == "truncated":
        return body[: len(body) * int(rule.params.get("percent", 50)) // 100]
    if rule.kind == "corrupt":
        middle, n = len(body) // 2, int(rule.params.get("nbytes", 16))
        start = max(10, middle - n // 2)  # keep the gzip header, break the deflate stream
        return body[:start] + bytes(b ^ 0xFF for b in body[start:start + n]) + body[start + n:]
    lines = gzip.decompress(body).split(b"\n")
    if len(lines) < 2:
        return body
    header = lines[0].decode().split(",")
    if rule.kind == "wrong_header":
        column = rule.params.get("column") or ("price" if "price" in header else header[-1])
        col = header.index(column)
        rename_to = rule.params.get("rename_to")
        if rename_to:
            header[col] = rename_to
            lines[0] = ",".join(header).encode()
        else:
            lines = [b",".join(f for i, f in enumerate(line.split(b",")) if i != col) if line else line
                     for line in lines]
    else:
        column = rule.params.get("column") or next(h for h in header if "price" in h)
        col = header.index(column)
        rows = [i for i, line in enumerate(lines[1:], 1) if line]
        row = rows[int(rule.params["row"]) if "row" in rule.params else len(rows) // 2]
        cells = lines[row].split(b",")
        cells[col] = str(rule.params.get("value", "abc")).encode()
        lines[row] = b",".join(cells)
    return gzip.compress(b"\n".join(lines), compresslevel=1, mtime=0)
