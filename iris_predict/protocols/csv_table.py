"""Tables as CSV: a table in (scored like `instances`), and, when asked for, a table out.

docs/csv.md is the reference. A request body of Content-Type text/csv holds one
row per line, with a header row of the features' names (or aliases) in any
order, or no header and the features in model.json's order. Other columns, such
as an id or the true label, are not fed to the model; the CSV answer repeats
them first so that rows can be joined back, as batch prediction services keep a
key field. A column that merely misspells a feature is refused by name. A
request with `Accept: text/csv` gets its answer as CSV: those columns, then the
class index, the label and one probability column per class (a regressor's:
its value).

The usual spreadsheet mistakes are named with what to send instead: semicolon
or tab separators, newlines lost by `curl -d`, empty cells.
"""

import csv
import io

import numpy as np

from iris_predict.edge import decoding
from iris_predict.edge.responses import CSV, content_response, json_response
from iris_predict.errors import InvalidRequest
from iris_predict.model import served as model
from iris_predict.protocols import answers, rows
from iris_predict.protocols.batch import Batch, Kind
from iris_predict.text import show

NAME = "csv"
PATHS = {"/": ("predict", ("POST",))}
WHERE = "/ (CSV tables, Content-Type: text/csv)"
MEDIA_TYPES = (decoding.CSV,)
CLASS = "class"  # the class index's column
# A cell that is a category: anything but CSV's own characters (the contract's pattern).
CATEGORY_CELL = '[^,"\\r\\n]+'
MISSING = ("", "NA")  # cells that hold no value, as train.py reads them
SEPARATORS = {";": "semicolons", "\t": "tabs"}
LOST_NEWLINES = ("; the body is one line: were its newlines lost? curl -d strips them: send the "
                 "file with --data-binary @FILE")


def claims(payload) -> bool:
    return True


def decode(body: bytes, headers: dict, signature) -> bytes:
    return body  # the table's bytes: parse reads its lines


def parse(payload: bytes, request, served: model.Model) -> Batch:
    """A CSV request body as a batch of instances."""
    found, passthrough = read(payload, served.signature)
    table = accepted(request.headers)
    return Batch(Kind.INSTANCES, found.X, unknown=found.unknown, passthrough=passthrough,
                 explain=answers.explain_asked(request.query) if request.query else False,
                 table=table, probabilities=table)


def read(body: bytes, signature) -> tuple:
    """(rows.Rows, (passthrough header, passthrough rows)) of a CSV body; errors name line and
    column."""
    cols = rows.columns(signature)
    lines = _lines(body)
    header = _header(lines[0][1], cols, single_line=len(lines) == 1 and b"\n" not in body) \
        if lines else None
    if header is not None:
        lines = lines[1:]
    if not lines:
        raise InvalidRequest(f"the CSV body has no rows; send one row per line, with "
                             f"{_expected(cols)}")
    rows.check_rows(len(lines), "the CSV body")
    order, extra, names = header or (list(range(cols.width)), [], list(cols.names))
    width = len(order)
    X = np.full((len(lines), cols.width), np.nan)
    unknown, kept = [], []
    for i, (line, row) in enumerate(lines):
        if len(row) != width:
            separated = next((cell for cell in row if any(s in cell for s in SEPARATORS)), None)
            if separated is not None:
                raise InvalidRequest(_separator(separated, line))
            hint = _lost_newlines(body) if len(row) > width else ""
            raise InvalidRequest(f"line {line} has {len(row)} columns, expected {width} "
                                 f"({', '.join(names)}){hint}")
        for column, j in enumerate(order):
            if j is None:
                continue
            cell = row[column].strip()
            X[i, j] = rows.value("" if cell in MISSING else cell, j, cols,
                                 f"line {line}, column {column + 1} ({cols.names[j]})", i,
                                 unknown, text=True)
        if extra:
            kept.append([row[column] for column in extra])
    passthrough = ([names[column] for column in extra], kept) if extra else ()
    return rows.Rows(X, range(len(lines)), unknown), passthrough


def _lines(body: bytes) -> list:
    try:
        text = body.decode("utf-8-sig")  # a byte-order mark, as spreadsheets write, is no column
    except UnicodeDecodeError:
        raise InvalidRequest("the CSV body is not valid UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    lines = []
    try:
        for row in reader:
            if row:  # blank lines hold no row
                lines.append((reader.line_num, row))
    except csv.Error as e:
        raise InvalidRequest(f"the CSV body is malformed at line {reader.line_num}: {e}") from None
    return lines


def _header(first: list, cols: rows.Columns, single_line: bool):
    """For a header row, (the feature of each column or None, the passthrough columns, the
    header's names); None if the row is data."""
    cells = [cell.strip() for cell in first]
    named = [cell for cell in cells if cell in cols.name_set or cell in cols.alias_set]
    numbers = any(rows.DECIMAL.fullmatch(cell) for cell in cells)
    if not named and (numbers or not any(f.number for f in cols.features)):
        return None  # a row of data, maybe a bad one
    if len(cells) == 1 and any(s in cells[0] for s in SEPARATORS):
        raise InvalidRequest(_separator(cells[0], 1))
    keys = cols.names if sum(c in cols.name_set for c in named) * 2 >= len(named) \
        else cols.signature.aliases
    other = cols.signature.aliases if keys is cols.names else cols.names
    order, extra = [], []
    for column, cell in enumerate(cells, start=1):
        if cell in keys:
            if cell in cells[:column - 1]:
                raise InvalidRequest(f"line 1, column {column}: the header repeats {show(cell)}")
            order.append(keys.index(cell))
        elif cell in other:
            raise InvalidRequest(
                f"line 1, column {column}: the header mixes long and short names: {show(cell)} "
                f"is the other form of {show(keys[other.index(cell)])}; use "
                f"{', '.join(keys)}")
        else:
            suggestion = rows.suggest(cell, cols.signature)
            glued = single_line and any(ch.isdigit() for ch in cell)  # "petal_width5.1"
            if suggestion or glued:
                raise InvalidRequest(
                    f"line 1, column {column}: the header has unknown column {show(cell)}"
                    f"{suggestion}; expected {_expected(cols)}{LOST_NEWLINES if glued else ''}")
            order.append(None)
            extra.append(column - 1)
    missing = [k for k, f in zip(keys, cols.features)
               if keys.index(k) not in order and not f.missing]
    if missing:
        others = [show(cells[column]) for column in extra]
        note = f" (its columns {', '.join(others)} are not features)" if others else ""
        raise InvalidRequest(f"line 1: the header is missing {', '.join(missing)}{note}")
    return order, extra, cells


def _expected(cols: rows.Columns) -> str:
    names = ", ".join(cols.names)
    aliases = f" or {', '.join(cols.signature.aliases)}" if cols.signature.aliases else ""
    return (f"a header row of {names}{aliases} (other columns are passed through), "
            f"or no header and the {cols.width} columns in that order")


def _separator(cell: str, line: int) -> str:
    used = next(name for s, name in SEPARATORS.items() if s in cell)
    return (f"line {line} has a cell holding {show(cell)}: the table seems separated by "
            f"{used}, but the CSV separator must be a comma (and the decimal mark a point)")


def _lost_newlines(body: bytes) -> str:
    return "" if b"\n" in body or b"\r" in body else LOST_NEWLINES


def accepted(headers: dict) -> bool:
    """True if the request's Accept header asks for CSV."""
    accept = headers.get("accept", "")
    return decoding.CSV in accept and any(
        part.partition(";")[0].strip().lower() == decoding.CSV for part in accept.split(","))


def answer(batch: Batch, served: model.Model):
    scores = answers.Scores(batch, served, batch.probabilities)
    return scores if batch.table else scores.body(served.signature.target)


def respond(answered, batch: Batch, served: model.Model):
    if not batch.table:
        return json_response(answered)
    return table(answered, batch.passthrough, served.signature)


def columns(signature) -> list:
    """The answer's own columns, after those of the request's it passes through."""
    if signature.classifier:
        return [CLASS, signature.target, *(f"probability_{c}" for c in signature.classes)]
    return [signature.target]


def table(scores: answers.Scores, passthrough: tuple, signature):
    """Scores as a CSV table with a header row, passed-through columns first."""
    extra_header, extra_rows = passthrough or ([], None)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*extra_header, *columns(signature)])
    if signature.classifier:
        classes = signature.classes
        lines = ([k, label, *(f"{p[name]:.6f}" for name in classes)]
                 for k, label, p in zip(scores.predictions, scores.labels,
                                        scores.probabilities))
    else:
        lines = ([value] for value in scores.predictions)
    if extra_rows is None:
        writer.writerows(lines)
    else:
        writer.writerows(kept + line for kept, line in zip(extra_rows, lines))
    return content_response(out.getvalue(), CSV)


def error_body(message: str, status: int) -> dict:
    return {"error": message}


def openapi(c) -> object:
    """This protocol's part of the contract (contract.py: `c` is its Contract)."""
    answer = columns(c.s)
    return c.Part(
        about=("CSV tables", "on `/`"),
        takes={("/", "post"): {decoding.CSV: [c.ref("CsvTable")]}},
        gives={("/", "post"): {decoding.CSV: [c.ref("CsvAnswer")]}},
        requests={"CsvTable": {
            "description": "One row per line: a header row of the long or the short names (in "
                           "any order), or no header and the columns in the features' order.",
            "type": "string", "pattern": _pattern(c)}},
        answers={"CsvAnswer": {
            "description": f"A header row (the request's columns the model does not use, then "
                           f"{', '.join(answer)}), then one line per input row.",
            "type": "string",
            "pattern": f"^([^\\n]*,)?{','.join(c.escape(name) for name in answer)}\\n"}})


def _pattern(c) -> str:
    """The tables this protocol answers, as a regular expression."""
    s = c.s
    headers = [",".join(c.escape(n) for n in s.names)]
    if s.aliases:
        headers.append(",".join(c.escape(a) for a in s.aliases))
    cells = []
    for f in s.features:
        cell = (c.decimal_pattern(f) or "[^,\\r\\n]+") if f.number else CATEGORY_CELL
        cells.append(f"({cell})?" if f.missing else f"({cell})")
    row = ",".join(cells)
    return f"^(({'|'.join(headers)})\\n)?{row}(\\n{row})*\\n?$"
