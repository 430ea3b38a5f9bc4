"""Flowers as CSV: a table in (scored like `instances`), and, when asked for, a table out.

docs/csv.md is the reference. A request body of Content-Type text/csv holds one
flower per line, with a header row of the long or the short feature names in any
order, or no header and the four columns in model.json's order. A request with
`Accept: text/csv` gets its answer as CSV: the class index, the species and one
probability column per species, one line per input row.
"""

import csv
import io

import numpy as np

from iris_predict.protocols import parsing
from iris_predict.protocols.batch import Batch, Kind
from iris_predict.errors import InvalidRequest
from iris_predict.features import ALIASES, NAMES
from iris_predict.edge.responses import CSV, content_response
from iris_predict.text import show

MEDIA_TYPE = "text/csv"
WIDTH = len(NAMES)
EXPECTED = (f"a header row of {', '.join(NAMES)} or {', '.join(ALIASES)}, "
            f"or no header and the {WIDTH} columns in that order")


def parse(body: bytes, explain: bool = False) -> Batch:
    """A CSV request body as a batch of instances."""
    return Batch(Kind.INSTANCES, matrix(body), explain=explain)


def matrix(body: bytes) -> np.ndarray:
    """The flowers of a CSV body as a validated (n, 4) matrix; errors name line and column."""
    try:
        text = body.decode("utf-8-sig")  # a byte-order mark, as spreadsheets write, is no column
    except UnicodeDecodeError:
        raise InvalidRequest("the CSV body is not valid UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    lines = []
    try:
        for row in reader:
            if row:  # blank lines hold no flower
                lines.append((reader.line_num, row))
    except csv.Error as e:
        raise InvalidRequest(f"the CSV body is malformed at line {reader.line_num}: {e}") from None
    order = _header(lines[0][1]) if lines else None
    if order is not None:
        lines = lines[1:]
    if not lines:
        raise InvalidRequest(f"the CSV body has no rows; send one flower per line, with {EXPECTED}")
    parsing.check_rows(len(lines), "the CSV body")
    order = order or list(range(WIDTH))
    names = [NAMES[j] for j in order]
    X = np.empty((len(lines), WIDTH))
    for i, (line, row) in enumerate(lines):
        if len(row) != WIDTH:
            raise InvalidRequest(f"line {line} has {len(row)} columns, expected {WIDTH} "
                                 f"({', '.join(names)})")
        for column, (j, value) in enumerate(zip(order, row), start=1):
            X[i, j] = parsing.number(value.strip(), f"line {line}, column {column} ({NAMES[j]})",
                                     allow_string=True)
    return X


def _header(first: list) -> list | None:
    """For a header row, the feature index of each column; None if the row is a flower."""
    cells = [cell.strip() for cell in first]
    if any(parsing.DECIMAL.fullmatch(cell) for cell in cells):  # a flower, maybe a bad one
        return None
    names = NAMES if any(cell in NAMES for cell in cells) else ALIASES
    for column, cell in enumerate(cells, start=1):
        if cell not in names or cells.index(cell) != column - 1:
            problem = "repeats" if cell in names else "has unknown column"
            raise InvalidRequest(f"line 1, column {column}: the header {problem} {show(cell)}; "
                                 f"expected {EXPECTED}")
    missing = [name for name in names if name not in cells]
    if missing:
        raise InvalidRequest(f"line 1: the header is missing {', '.join(missing)}")
    return [names.index(cell) for cell in cells]


def accepted(headers: dict) -> bool:
    """True if the request's Accept header asks for CSV."""
    accept = headers.get("accept", "")
    return MEDIA_TYPE in accept and any(
        part.partition(";")[0].strip().lower() == MEDIA_TYPE for part in accept.split(","))


def respond(answer: dict, classes: tuple):
    """An instances answer, with probabilities, as a CSV table with a header row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["class", "species", *(f"probability_{name}" for name in classes)])
    for k, species, probabilities in zip(answer["predictions"], answer["species"],
                                         answer["probabilities"]):
        writer.writerow([k, species, *(f"{probabilities[name]:.6f}" for name in classes)])
    return content_response(out.getvalue(), CSV)
