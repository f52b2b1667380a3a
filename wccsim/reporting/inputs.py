"""Checked reading of a result directory's files: JSON metadata, CSV tables against a column table, and the
rows of ``layers.csv`` against the grid that ``run.json`` / ``sweep.json`` record.

Every problem is a one-line `InputError` naming the file (under the directory as the user gave it), the
field and what was expected and found, raised before the report writes anything.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections import Counter
from pathlib import Path

import pandas as pd

from wccsim.errors import InputError
from wccsim.results import coef_design

__all__ = ["TEXT", "NUMBER", "GRID_SOURCES", "HW_KEYS", "read_json", "read_table", "grid_values", "hw_designs",
           "check_grid", "check_equal"]

TEXT, NUMBER = "text", "number"  # what a column holds: a non-empty label, or a number (empty cell = NaN)

# Where run.json / sweep.json record the values of each key column of layers.csv ("*": every item of a list).
# Their product with the (hw, cfg_coef) pairs (`hw_designs`) is the set of rows layers.csv must hold, each once.
GRID_SOURCES = {
    "run": {"cfg_rate": ("options", "rate"), "cfg_act_bits": ("options", "act_bits"),
            "cfg_weight_bits": ("options", "weight_bits"), "layer": ("layers",), "scheme": ("schemes",)},
    "sweep": {"cfg_rate": ("grid", "rates"), "cfg_act_bits": ("grid", "act_bits"),
              "cfg_weight_bits": ("grid", "weight_bits"), "layer": ("grid", "layers"), "scheme": ("schemes",)},
}
HW_KEYS = ("hw", "cfg_coef")  # a hw config and the coefficient design it ran: one grid axis of pairs
_MAX_SHOWN = 3  # values listed in a message


def read_json(path: Path) -> dict:
    """A JSON object from `path`; a missing, unreadable, truncated or non-object file is an `InputError`."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(str(path), "", "a readable UTF-8 JSON file",
                         getattr(e, "strerror", None) or type(e).__name__) from None
    except json.JSONDecodeError as e:
        raise InputError(str(path), f"line {e.lineno} column {e.colno}", "valid JSON", e.msg) from None
    if not isinstance(doc, dict):
        raise InputError(str(path), "(top level)", "a JSON object", type(doc).__name__)
    return doc


def read_table(path: Path, kinds: dict[str, str], optional: dict[str, str] | None = None) -> pd.DataFrame:
    """Read a CSV table whose columns include every key of `kinds` (column -> `TEXT` or `NUMBER`); the
    columns of `optional` (same form) are checked alike where the header has them.

    Refused: an empty file, a last line cut short (no final newline), a missing column, a row with more or
    fewer cells than the header, an empty `TEXT` cell, a `NUMBER` cell that is not a number. Errors give the
    file's line number. Returns the table with `TEXT` columns as strings and numbers as int64 / float64.
    """
    text = _read_text(path)
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0] if rows else []
    missing = [c for c in kinds if c not in header]
    if missing:
        raise InputError(str(path), "columns", f"the {len(kinds)} columns wccsim writes",
                         f"missing {', '.join(missing[:_MAX_SHOWN])}" + (" ..." if len(missing) > _MAX_SHOWN
                                                                          else ""))
    if len(rows) < 2:
        raise InputError(str(path), "rows", "at least one row below the header", "none")
    kinds = {**kinds, **{c: k for c, k in (optional or {}).items() if c in header}}
    index = {c: header.index(c) for c in kinds}
    for line, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise InputError(str(path), f"line {line}", f"{len(header)} cells as in the header", len(row))
        for col, kind in kinds.items():
            cell = row[index[col]]
            if not _valid_cell(kind, cell):
                want = "a non-empty label" if kind == TEXT else "a number"
                raise InputError(str(path), f"line {line}: {col}", want, repr(cell))
    dtypes = {c: str for c, kind in kinds.items() if kind == TEXT}
    return pd.read_csv(io.StringIO(text), dtype=dtypes, keep_default_na=False, na_values={
        c: ["", "nan", "NaN"] for c, kind in kinds.items() if kind == NUMBER}, float_precision="round_trip")


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(str(path), "", "a readable UTF-8 CSV file",
                         getattr(e, "strerror", None) or type(e).__name__) from None
    if not text:
        raise InputError(str(path), "", "a CSV table with a header and rows", "an empty file")
    if not text.endswith("\n"):
        raise InputError(str(path), f"line {text.count(chr(10)) + 1}", "a complete last row ending in a newline",
                         "a line cut short (truncated file)")
    return text


def _valid_cell(kind: str, cell: str) -> bool:
    if kind == TEXT:
        return cell != ""
    if cell == "":
        return True  # pandas writes NaN as an empty cell
    try:
        float(cell)
    except ValueError:
        return False
    return True


def grid_values(meta: dict, meta_path: Path, kind: str) -> dict:
    """{key column: (JSON field, the values `meta` records there)} per `GRID_SOURCES[kind]`, after
    `HW_KEYS`: (`hw_designs`), for run.json / sweep.json at `meta_path`; a missing entry, an empty list or a
    non-scalar value is an `InputError`."""
    out = {HW_KEYS: hw_designs(meta, meta_path, kind)}
    for col, keys in GRID_SOURCES[kind].items():
        values = _lookup(meta, keys, meta_path)
        values = values if isinstance(values, list) else [values]
        field = ".".join(keys)
        if not values or not all(_is_scalar(v) for v in values):
            raise InputError(str(meta_path), field, "a non-empty list of names or numbers", repr(values)[:60])
        if len(set(values)) != len(values):
            raise InputError(str(meta_path), field, "distinct values", repr(values)[:60])
        out[col] = (field, values)
    return out


def hw_designs(meta: dict, meta_path: Path, kind: str) -> tuple[str, list[tuple[str, str]]]:
    """(JSON field, the (hw, cfg_coef) pairs it records): run.json's hw name with its spec's ``coef``
    design; each sweep.json hw entry's name with each design of its ``coef`` list."""
    if kind == "run":
        coef = _lookup(meta, ("hw", "coef"), meta_path)
        designs = [coef_design(_lookup(coef, ("granularity",), meta_path, ("hw", "coef")),
                               _lookup(coef, ("scale",), meta_path, ("hw", "coef")))]
        pairs, field = [(_lookup(meta, ("hw", "name"), meta_path), d) for d in designs], "hw.name, hw.coef"
    else:
        names, coefs = _lookup(meta, ("hw", "*", "name"), meta_path), _lookup(meta, ("hw", "*", "coef"), meta_path)
        if not all(isinstance(c, list) and c for c in coefs):
            raise InputError(str(meta_path), "hw.*.coef", "a non-empty list of designs per hw", repr(coefs)[:60])
        pairs, field = [(n, c) for n, cs in zip(names, coefs) for c in cs], "hw.*.name, hw.*.coef"
    if not all(isinstance(v, str) and v for pair in pairs for v in pair):
        raise InputError(str(meta_path), field, "names and designs (granularity:scale)", repr(pairs)[:60])
    if len(set(pairs)) != len(pairs):
        raise InputError(str(meta_path), field, "distinct (hw, design) pairs", repr(pairs)[:60])
    return field, pairs


def _lookup(doc, keys: tuple[str, ...], meta_path: Path, done: tuple[str, ...] = ()):
    """The entry at `keys` below `doc` (`done`: the keys already followed, for messages)."""
    if not keys:
        return doc
    head, rest, field = keys[0], keys[1:], ".".join((*done, keys[0]))
    if head == "*":
        if not isinstance(doc, list):
            raise InputError(str(meta_path), ".".join(done), "a list, as wccsim writes it", type(doc).__name__)
        return [_lookup(item, rest, meta_path, (*done, head)) for item in doc]
    if not isinstance(doc, dict) or head not in doc:
        raise InputError(str(meta_path), field, "an entry as wccsim writes it (older results: run again)",
                         "nothing (missing)")
    return _lookup(doc[head], rest, meta_path, (*done, head))


def _is_scalar(v) -> bool:
    return isinstance(v, str) or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def check_grid(df: pd.DataFrame, csv_path: Path, grid: dict, meta_path: Path) -> None:
    """`df` (read from `csv_path`) holds exactly one row per combination of the `grid` values (`grid_values`
    of `meta_path`; a tuple of columns is one axis of value tuples): no value the JSON does not record, none
    it records missing, no duplicate, no gap."""
    for col, (field, values) in grid.items():
        where = f"{_shown(values)} ({meta_path.name} {field})"
        found = list(dict.fromkeys(_column(df, col)))
        extra = [v for v in found if v not in values]
        name = "/".join(col) if isinstance(col, tuple) else col
        if extra:
            raise InputError(str(csv_path), name, f"one of {where}", _shown(extra))
        absent = [v for v in values if v not in found]
        if absent:
            raise InputError(str(csv_path), name, f"rows for each of {where}", f"none for {_shown(absent)}")
    rows = list(zip(*(_column(df, c) for c in grid)))
    axes = ", ".join("/".join(c) if isinstance(c, tuple) else c for c in grid)
    twice = [r for r, n in Counter(rows).items() if n > 1]
    if twice:
        raise InputError(str(csv_path), "rows", f"one row per ({axes})", f"{_shown(twice)} twice")
    expected = list(itertools.product(*(values for _, values in grid.values())))
    if len(rows) != len(expected):
        gap = next(r for r in expected if r not in set(rows))
        raise InputError(str(csv_path), "rows", f"{len(expected)} rows, one per "
                         f"{axes.replace(', ', ' x ')} that {meta_path.name} records", f"{len(rows)}; none for {gap}")


def _column(df: pd.DataFrame, col) -> list:
    """The values of column `col`, or tuples of the columns of a tuple `col`."""
    return list(zip(*(df[c].tolist() for c in col))) if isinstance(col, tuple) else df[col].tolist()


def _shown(values: list) -> str:
    return ", ".join(map(repr, _plain(values[:_MAX_SHOWN]))) + (" ..." if len(values) > _MAX_SHOWN else "")


def _plain(values):
    """numpy scalars (also inside tuples) as Python values, for messages."""
    if isinstance(values, (list, tuple)):
        return type(values)(_plain(v) for v in values)
    return values.item() if hasattr(values, "item") else values


def check_equal(found: pd.DataFrame, expected: pd.DataFrame, keys: list[str], path: Path, what: str) -> None:
    """`found` (read from `path`) has the rows and values of `expected`, matched on the `keys` columns,
    exactly (NaN equals NaN); `what` says where the expected values come from."""
    missing = [c for c in expected.columns if c not in found.columns]
    if missing:
        raise InputError(str(path), "columns", f"the columns of {what}", f"missing {_shown(missing)}")
    f, e = found.set_index(keys), expected.set_index(keys)
    if f.index.has_duplicates or len(f) != len(e) or not f.index.isin(e.index).all() \
            or not e.index.isin(f.index).all():
        raise InputError(str(path), "rows", f"one row per ({', '.join(keys)}) of {what} ({len(e)})",
                         f"{len(f)} rows; differing: {_shown(list(f.index.symmetric_difference(e.index)))}")
    f = f.loc[e.index]
    for col in e.columns:
        same = (f[col] == e[col]) | (f[col].isna() & e[col].isna())
        if not same.all():
            at = same.idxmin()
            raise InputError(str(path), col, f"{_plain(e.at[at, col])!r} ({what}) in row {_plain(at)}",
                             repr(_plain(f.at[at, col])))
