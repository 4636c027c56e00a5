"""Readers: task examples from CSV/TSV/JSONL, CoNLL, SQuAD JSON and plain text files.

Each reader returns `Records`, a list of plain dicts (one per example) that also carries what
the caller needs to keep: `label_names` (save them in the config as `id2label`) and the
number of examples skipped. A reader accepts a path, or rows already in memory: a list of
dicts or a `datasets.Dataset` (any iterable of dicts; `datasets` itself is never imported).

Bad data is never dropped silently. By default (`on_error="raise"`) the first problem is a
`DataError` that names the file, the line and the fix: an unknown label, a missing column,
an empty file, a malformed CoNLL line, a SQuAD answer that is not at its offset, bytes that
are not UTF-8. With `on_error="skip"` the bad example is skipped instead, counted in
`records.skipped` (first messages in `records.problems`) and logged as one warning.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "train.csv")
    >>> _ = open(path, "w").write("text,label\\ngood film,pos\\nawful,neg\\n")
    >>> records = read_classification(path)
    >>> records[0], records.label_names
    ({'text': 'good film', 'label': 1}, ['neg', 'pos'])
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..evaluation.ner import get_entities

logger = logging.getLogger("gpt2kit")

Source = str | os.PathLike | Iterable[Mapping[str, Any]]
ON_ERROR = ("raise", "skip")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
TAG_SCHEMES = ("IOB1", "IOB2", "BIOES")
_MAX_PROBLEMS = 20  # messages kept in `Records.problems`; the count is always exact
_LONE_CR = re.compile(r"\r(?!\n)")
# csv's default 131,072-character field limit would refuse long documents: lift it.
_CSV_FIELD_LIMIT = 2**31 - 1


class DataError(ValueError):
    """Bad input data, with where it is (`path`, `line`) and how to fix it (`fix`).

    Example:
        >>> str(DataError("unknown label 'x'", "train.csv", 7, "add it to label_names"))
        "train.csv:7: unknown label 'x'. Fix: add it to label_names"
    """

    def __init__(
        self, message: str, path: Any = None, line: int | str | None = None, fix: str | None = None
    ):
        self.message, self.path, self.line, self.fix = message, path, line, fix
        where = (
            f"{path}:{line}: " if line is not None else (f"{path}: " if path is not None else "")
        )
        super().__init__(f"{where}{message}" + (f". Fix: {fix}" if fix else ""))


class Records(list):  # type: ignore[type-arg]
    """The examples a reader produced, plus what it learned while reading.

    Attributes:
        source: the file (or `"<rows>"` for in-memory rows).
        label_names: class names by id (`id2label`), or `None` (regression, no labels).
        problem_type: for classification: `single_label_classification`,
            `multi_label_classification` or `regression`.
        skipped: examples skipped under `on_error="skip"`.
        problems: the first few skip messages.
    """

    def __init__(self, items: Iterable[Any] = (), source: str = "<rows>") -> None:
        super().__init__(items)
        self.source = source
        self.label_names: list[str] | None = None
        self.problem_type: str | None = None
        self.skipped = 0
        self.problems: list[str] = []

    @property
    def id2label(self) -> dict[int, str] | None:
        return None if self.label_names is None else dict(enumerate(self.label_names))


class _Issues:
    """Raises or counts problems according to `on_error`."""

    def __init__(self, source: str, on_error: str) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error={on_error!r}; use 'raise' or 'skip'")
        self.source, self.on_error = source, on_error
        self.skipped, self.problems = 0, []

    def error(self, message: str, line: int | str | None, fix: str | None) -> DataError:
        return DataError(message, self.source, line, fix)

    def report(self, err: DataError) -> None:
        """Raise `err`, or count it as one skipped example."""
        if self.on_error == "raise":
            raise err
        self.skipped += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(str(err))

    def finish(self, records: Records) -> Records:
        records.skipped, records.problems = self.skipped, self.problems
        if self.skipped:
            logger.warning(
                "%s: skipped %d bad examples (on_error='skip'); first: %s",
                self.source,
                self.skipped,
                self.problems[0],
            )
        if not records:
            raise self.error(
                "no examples left" if self.skipped else "no examples",
                None,
                "check the file and its column names" if self.skipped else "pass a non-empty file",
            )
        return records


def _is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def _source_name(source: Any) -> str:
    return str(source) if _is_path(source) else "<rows>"


def _lines(path: Path, issues: _Issues) -> Iterator[tuple[int, str]]:
    """`(line number, text)` of a file, decoded strictly as UTF-8 (a BOM is dropped)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; check the path")
    line_shift = [0]  # lines that lone CRs added before the current one
    with open(path, "rb") as f:
        for raw_number, raw in enumerate(f, 1):
            number = raw_number + line_shift[0]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                issues.report(
                    issues.error(
                        f"bytes {raw[err.start : err.end]!r} at column {err.start + 1} are not UTF-8",
                        number,
                        "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
                    )
                )
                continue
            if number == 1:
                text = text.lstrip("\ufeff")
            if "\r" in text.rstrip("\r\n"):
                # old Mac line endings (lone CR): each CR ends a line of its own, numbered so
                parts = _LONE_CR.split(text)
                for part in parts[:-1]:
                    yield number, part + "\n"
                    number += 1
                text = parts[-1]
                line_shift[0] += len(parts) - 1
            yield number, text


def _guess_format(path: Path) -> str:
    suffix = "".join(path.suffixes[-1:]).lower()
    return {
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".json": "json",
        ".tsv": "tsv",
        ".csv": "csv",
    }.get(suffix, "csv")


def iter_rows(
    source: Source, issues: _Issues, format: str | None = None, delimiter: str | None = None
) -> Iterator[tuple[int | str, dict[str, Any]]]:
    """`(line, row dict)` from a CSV/TSV/JSONL/JSON-list file, or from in-memory rows.

    CSV and TSV take their column names from the header line; JSONL has one object per line;
    `.json` holds a list of objects (or `{"data": [...]}`).
    """
    if not _is_path(source):
        for i, row in enumerate(source):  # list of dicts, datasets.Dataset, ...
            yield f"row {i}", dict(row)
        return
    path = Path(source)
    fmt = format or _guess_format(path)
    lines = _lines(path, issues)
    if fmt == "jsonl":
        for number, text in lines:
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                issues.report(
                    issues.error(
                        f"not valid JSON ({err.msg} at column {err.colno})",
                        number,
                        "write one JSON object per line",
                    )
                )
                continue
            if not isinstance(row, dict):
                issues.report(
                    issues.error(
                        f"expected a JSON object, got {type(row).__name__}",
                        number,
                        "write one JSON object per line",
                    )
                )
                continue
            yield number, row
    elif fmt == "json":
        text = "".join(t for _, t in lines)
        if not text.strip():
            return
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise issues.error(
                f"not valid JSON ({err.msg} at column {err.colno})",
                err.lineno,
                "write a JSON list of objects (or {'data': [...]}), or one object per line as .jsonl",
            ) from err
        rows = data.get("data", data) if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise issues.error(
                f"expected a JSON list of objects (or {{'data': [...]}}), got {type(rows).__name__}",
                None,
                "write a JSON list of objects",
            )
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                issues.report(
                    issues.error(
                        f"item {i} is a {type(row).__name__}, not a JSON object",
                        f"item {i}",
                        "write a list of objects such as {'text': ..., 'label': ...}",
                    )
                )
                continue
            yield f"item {i}", row
    elif fmt in ("csv", "tsv"):
        sep = delimiter or ("\t" if fmt == "tsv" else ",")
        if csv.field_size_limit() < _CSV_FIELD_LIMIT:
            csv.field_size_limit(_CSV_FIELD_LIMIT)
        # csv.reader pulls more lines for quoted multi-line fields; line_num tracks them.
        numbered = iter(lines)
        at_line = [1]  # the file line the csv reader last pulled

        def texts() -> Iterator[str]:
            for number, text in numbered:
                at_line[0] = number
                yield text

        # TSV is read without quoting, as GLUE writes it (and `datasets`' GLUE loader reads
        # it): a sentence that starts with `"` is text, not a quoted field that would swallow
        # the rows after it.
        quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
        reader = csv.reader(texts(), delimiter=sep, quoting=quoting)

        def rows() -> Iterator[list[str]]:
            while True:
                try:
                    yield next(reader)
                except StopIteration:
                    return
                except csv.Error as err:
                    raise issues.error(
                        f"not valid {fmt.upper()} ({err})",
                        at_line[0],
                        "check the quoting on this line (a quote opened and never closed?)",
                    ) from err

        values_iter = rows()
        header = next(values_iter, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise issues.error(
                f"the header names column(s) {dupes} more than once",
                at_line[0],
                "give every column its own name",
            )
        for values in values_iter:
            if not values:
                continue  # an empty line
            if all(not v.strip() for v in values):
                issues.report(
                    issues.error(
                        f"blank row ({len(values)} empty fields)",
                        at_line[0],
                        "remove the row, or pass on_error='skip' to count and skip such rows",
                    )
                )
                continue
            if len(values) != len(header):
                issues.report(
                    issues.error(
                        f"{len(values)} fields but the header has {len(header)}",
                        at_line[0],
                        f"quote fields that contain the delimiter {sep!r}",
                    )
                )
                continue
            yield at_line[0], dict(zip(header, values, strict=True))
    else:
        raise ValueError(f"format={fmt!r}; use 'csv', 'tsv', 'jsonl' or 'json'")


def _pick_column(
    row: Mapping[str, Any], wanted: str | None, candidates: Sequence[str], what: str
) -> str | None:
    if wanted is not None:
        return wanted
    return next((c for c in candidates if c in row), None)


def _get(row: Mapping[str, Any], column: str, line: Any, issues: _Issues, what: str) -> Any:
    if column not in row:
        raise issues.error(
            f"no {what} column {column!r}; columns are {sorted(row)}",
            line,
            f"pass {what}_column= naming one of them",
        )
    if row[column] is None:
        raise issues.error(
            f"the {what} ({column!r}) is null", line, f"give every example its {what}"
        )
    return row[column]


def _text(value: Any, line: Any, issues: _Issues, what: str) -> str:
    """A text field as a string: numbers are written out, a JSON object, list or boolean
    where text is expected is an error (str() of it would train on "{'a': 1}")."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise issues.error(
        f"the {what} is a JSON {type(value).__name__} ({str(value)[:60]}), not text",
        line,
        f"write the {what} as a string",
    )


def _clean_label(value: Any, line: Any, issues: _Issues) -> Any:
    """A label with surrounding spaces removed (`' pos'` and `'pos'` are one class); an empty
    cell, NaN or infinity is an error at its line."""
    if isinstance(value, (list, tuple)):
        return [_clean_label(v, line, issues) for v in value]
    if isinstance(value, str):
        value = value.strip()
        if not value:
            raise issues.error("empty label", line, "give every example its label")
    number = _as_number(value)
    if number is not None and not math.isfinite(number):
        raise issues.error(
            f"label {value!r} is not a finite number", line, "write a class name or a number"
        )
    if isinstance(value, (dict, bool)):
        raise issues.error(
            f"label {value!r} is a JSON {type(value).__name__}",
            line,
            "write a class name, an integer id or a number",
        )
    return value


# ------------------------------------------------------------------------------------------
# Classification
# ------------------------------------------------------------------------------------------


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def read_classification(
    source: Source,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    label_names: Sequence[str] | None = None,
    problem_type: str | None = None,
    label_separator: str | None = None,
    format: str | None = None,
    delimiter: str | None = None,
    on_error: str = "raise",
    require_labels: bool = True,
) -> Records:
    """Text (and optional text pair) classification or regression examples.

    Args:
        source: a CSV/TSV/JSONL file, or rows (list of dicts, `datasets.Dataset`).
        text_column: default the first of `text`, `sentence`, `sentence1`, `content`.
        text_pair_column: default `text_pair` or `sentence2` when present, else none.
        label_column: default `label` or `labels`.
        label_names: the classes in id order; a label outside them is an error. Default:
            integer labels are their own ids (names `"0"`, `"1"`, ...), other names are
            sorted. Given names also accept integer ids in range.
        problem_type: `single_label_classification`, `multi_label_classification` (labels
            are lists, or strings split on `label_separator`) or `regression` (float
            labels). Default: lists -> multi-label; numbers not all integers -> regression;
            else single-label.
        label_separator: splits a CSV multi-label cell (`"sports|politics"`).
        format: `csv`, `tsv`, `jsonl` or `json`; default from the file suffix.
        delimiter: CSV delimiter override.
        on_error: `"raise"` or `"skip"`.
        require_labels: `False` reads unlabeled text (for prediction).

    Returns:
        `Records` of `{"text", ["text_pair"], "label"}` with `label` an int id, a float
        (regression) or a list of 0/1 floats (multi-label); `records.label_names`,
        `records.problem_type`.

    Example:
        >>> r = read_classification([{"text": "a", "label": 2.5}, {"text": "b", "label": 1}])
        >>> r.problem_type, r[0]["label"]
        ('regression', 2.5)
    """
    name = _source_name(source)
    issues = _Issues(name, on_error)
    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem_type={problem_type!r}; use one of {PROBLEM_TYPES}")
    raw: list[tuple[Any, dict[str, Any]]] = []
    columns: tuple[str | None, str | None, str | None] | None = None
    for line, row in iter_rows(source, issues, format, delimiter):
        if columns is None:
            columns = (
                _pick_column(
                    row, text_column, ("text", "sentence", "sentence1", "content"), "text"
                ),
                _pick_column(row, text_pair_column, ("text_pair", "sentence2"), "text_pair"),
                _pick_column(row, label_column, ("label", "labels"), "label"),
            )
            if columns[0] is None:
                raise issues.error(f"no text column among {sorted(row)}", line, "pass text_column=")
            if columns[2] is None and require_labels:
                raise issues.error(
                    f"no label column among {sorted(row)}", line, "pass label_column="
                )
        t_col, p_col, l_col = columns
        try:
            example = {"text": _text(_get(row, t_col, line, issues, "text"), line, issues, "text")}
            if p_col is not None:
                example["text_pair"] = _text(
                    _get(row, p_col, line, issues, "text_pair"), line, issues, "text_pair"
                )
            unlabeled = not require_labels and (
                row.get(l_col) is None or str(row.get(l_col)).strip() == ""
            )
            if l_col is not None and (require_labels or l_col in row) and not unlabeled:
                label = _get(row, l_col, line, issues, "label")
                if isinstance(label, str) and label_separator is not None:
                    # multi-label: an empty cell is "none of the classes", not a missing label
                    label = [x.strip() for x in label.split(label_separator) if x.strip()]
                example["label"] = _clean_label(label, line, issues)
        except DataError as err:
            issues.report(err)
            continue
        raw.append((line, example))
    if columns is None:
        raise issues.error(
            "the file is empty", None, "pass a file with a header and at least one example"
        )

    labels = [ex["label"] for _, ex in raw if "label" in ex]
    if problem_type is None:
        if any(isinstance(x, (list, tuple)) for x in labels):
            problem_type = "multi_label_classification"
        else:
            numbers = [_as_number(x) for x in labels]
            if (
                labels
                and label_names is None
                and all(n is not None for n in numbers)
                and any(n != int(n) for n in numbers)
            ):
                problem_type = "regression"
            else:
                problem_type = "single_label_classification"

    names = list(label_names) if label_names is not None else None
    if names is None and problem_type != "regression":
        flat = [x for y in labels for x in (y if isinstance(y, (list, tuple)) else [y])]
        ints = [_as_number(x) for x in flat]
        if flat and all(n is not None and n == int(n) and n >= 0 for n in ints):
            names = [str(i) for i in range(int(max(ints)) + 1)]
        else:
            names = sorted({str(x) for x in flat})
    index = {n: i for i, n in enumerate(names or [])}
    # Given names (an eval file read with the training labels) also take integer ids in
    # range, as documented above. Never silently: the first id read into a name is a
    # warning at its file:line with the mapping used, so an eval label "1" among names
    # ("pos", "neg") is seen.
    warned = [False]

    def to_id(value: Any, line: Any) -> int:
        if str(value) in index:
            return index[str(value)]
        number = _as_number(value)
        if number is not None and number == int(number) and 0 <= number < len(index):
            if not warned[0]:
                warned[0] = True
                logger.warning(
                    "%s:%s: label %r is not a class name; read as class id %d = %r "
                    "(label_names: %s)",
                    name,
                    line,
                    value,
                    int(number),
                    names[int(number)] if names else number,
                    ", ".join(f"{i}={n}" for n, i in list(index.items())[:10]),
                )
            return int(number)
        raise issues.error(
            f"unknown label {value!r}; known labels are {list(index)[:20]}",
            line,
            "add it to label_names (or fix the label)",
        )

    records = Records(source=name)
    for line, ex in raw:
        if "label" in ex:
            try:
                if problem_type == "regression":
                    number = _as_number(ex["label"])
                    if number is None:
                        raise issues.error(
                            f"regression label {ex['label']!r} is not a number",
                            line,
                            "write a number",
                        )
                    ex["label"] = number
                elif problem_type == "multi_label_classification":
                    values = (
                        ex["label"] if isinstance(ex["label"], (list, tuple)) else [ex["label"]]
                    )
                    vector = [0.0] * len(index)
                    for v in values:
                        vector[to_id(v, line)] = 1.0
                    ex["label"] = vector
                else:
                    ex["label"] = to_id(ex["label"], line)
            except DataError as err:
                issues.report(err)
                continue
        records.append(ex)
    records.label_names = names if problem_type != "regression" else None
    records.problem_type = problem_type
    return issues.finish(records)


# ------------------------------------------------------------------------------------------
# Token classification (CoNLL)
# ------------------------------------------------------------------------------------------


def convert_tags(tags: Sequence[str], to_scheme: str = "IOB2") -> list[str]:
    """Re-write a tag sequence in another scheme (`IOB1`, `IOB2` or `BIOES`), keeping its
    entities as conlleval reads them.

    Example:
        >>> convert_tags(["I-PER", "I-PER", "B-PER", "O"], "IOB2")
        ['B-PER', 'I-PER', 'B-PER', 'O']
        >>> convert_tags(["B-LOC", "I-LOC", "B-PER"], "BIOES")
        ['B-LOC', 'E-LOC', 'S-PER']
    """
    if to_scheme not in TAG_SCHEMES:
        raise ValueError(f"to_scheme={to_scheme!r}; use one of {TAG_SCHEMES}")
    out = ["O"] * len(tags)
    prev_end, prev_type = -2, None
    for type_, start, end in get_entities(tags):
        for i in range(start, end + 1):
            out[i] = f"I-{type_}"
        if to_scheme == "IOB2":
            out[start] = f"B-{type_}"
        elif to_scheme == "IOB1":
            # IOB1 uses B only where an entity directly follows one of the same type.
            if prev_end == start - 1 and prev_type == type_:
                out[start] = f"B-{type_}"
        else:
            out[start] = f"B-{type_}" if end > start else f"S-{type_}"
            if end > start:
                out[end] = f"E-{type_}"
        prev_end, prev_type = end, type_
    return out


_TAG = re.compile(r"^(O|[A-Z]-.+)$")


def read_conll(
    source: str | os.PathLike,
    word_column: int = 0,
    tag_column: int = -1,
    scheme: str | None = None,
    to_scheme: str | None = None,
    label_names: Sequence[str] | None = None,
    delimiter: str | None = None,
    on_error: str = "raise",
) -> Records:
    """Sentences from a CoNLL file: one `word ... tag` line per token, blank lines between
    sentences, `-DOCSTART-` lines ignored.

    Args:
        source: the file.
        word_column: column index of the word.
        tag_column: column index of the tag (default: the last column).
        scheme: check tags against `IOB1`, `IOB2` or `BIOES` (prefixes allowed by it).
        to_scheme: convert tags to this scheme (CoNLL-2003's IOB1 -> `IOB2`, say).
        label_names: the tag set in id order; a tag outside it is an error. Default: the
            tags seen, `O` first, then sorted.
        delimiter: column separator (default: any whitespace).
        on_error: `"raise"`, or `"skip"` to drop a sentence that has a malformed line.

    Returns:
        `Records` of `{"words": [...], "tags": [...], "labels": [ids]}`;
        `records.label_names`.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "train.conll")
        >>> _ = open(p, "w").write("-DOCSTART- -X- O\\n\\nJohn NNP B-PER\\nruns VBZ O\\n")
        >>> r = read_conll(p)
        >>> r[0]["words"], r[0]["tags"], r.label_names
        (['John', 'runs'], ['B-PER', 'O'], ['O', 'B-PER'])
    """
    if scheme is not None and scheme not in TAG_SCHEMES:
        raise ValueError(f"scheme={scheme!r}; use one of {TAG_SCHEMES}")
    allowed = {"IOB1": "BIO", "IOB2": "BIO", "BIOES": "BIOES"}.get(scheme or "", "BIOES")
    name = _source_name(source)
    issues = _Issues(name, on_error)
    sentences: list[tuple[int, list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    start, bad, seen_any = 0, None, False

    def close() -> None:
        nonlocal words, tags, bad
        if bad is not None:
            issues.report(bad)
        elif words:
            sentences.append((start, words, tags))
        words, tags, bad = [], [], None

    path = Path(source)
    number = 0
    try:
        for number, text in _lines(path, issues):
            seen_any = True
            line = text.rstrip("\r\n")
            if not line.strip():
                close()
                continue
            fields = line.split(delimiter) if delimiter else line.split()
            if fields[0] == "-DOCSTART-":
                close()
                continue
            if not words and bad is None:
                start = number
            if bad is not None:
                continue
            try:
                word, tag = fields[word_column], fields[tag_column]
            except IndexError:
                bad = issues.error(
                    f"{len(fields)} columns; expected the word in column {word_column} and the tag in column {tag_column}",
                    number,
                    "write one 'word ... tag' line per token (check the delimiter)",
                )
                continue
            if len(fields) < 2 or not _TAG.match(tag) or (tag != "O" and tag[0] not in allowed):
                bad = issues.error(
                    f"{tag!r} is not a tag{' of scheme ' + scheme if scheme else ''}",
                    number,
                    f"tags are O or PREFIX-TYPE with PREFIX in {allowed!r}",
                )
                continue
            words.append(word)
            tags.append(tag)
        close()
    except DataError:
        raise
    if not seen_any:
        raise issues.error(
            "the file is empty", None, "pass a CoNLL file with at least one sentence"
        )

    records = Records(source=name)
    if label_names is None:
        seen = {
            t for _, _, ts in sentences for t in (convert_tags(ts, to_scheme) if to_scheme else ts)
        }
        names = (["O"] if "O" in seen else []) + sorted(seen - {"O"})
    else:
        names = list(label_names)
    index = {t: i for i, t in enumerate(names)}
    for line, ws, ts in sentences:
        if to_scheme:
            ts = convert_tags(ts, to_scheme)
        unknown = [t for t in ts if t not in index]
        if unknown:
            issues.report(
                issues.error(
                    f"unknown tag {unknown[0]!r} in the sentence starting here; known: {names}",
                    line,
                    "add it to label_names",
                )
            )
            continue
        records.append({"words": ws, "tags": ts, "labels": [index[t] for t in ts]})
    records.label_names = names
    return issues.finish(records)


# ------------------------------------------------------------------------------------------
# Question answering (SQuAD)
# ------------------------------------------------------------------------------------------


def _line_of(text: str, needle: str) -> int | None:
    at = text.find(needle)
    return None if at < 0 else text.count("\n", 0, at) + 1


def read_squad(source: Source, on_error: str = "raise", check_offsets: bool = True) -> Records:
    """Questions from SQuAD v1.1/v2.0 JSON (`{"data": [{"paragraphs": [...]}]}`), or from
    flat rows (JSONL / `datasets.Dataset`) with `id`, `question`, `context`, `answers`
    (`{"text": [...], "answer_start": [...]}`).

    Args:
        source: the file or rows.
        on_error: `"raise"`, or `"skip"` to drop a question with a bad answer.
        check_offsets: verify that every answer text occurs at its `answer_start`.

    Returns:
        `Records` of `{"id", "title", "question", "context", "answers": {"text",
        "answer_start"}, "is_impossible"}`. A v2.0 unanswerable question has empty answers.

    Example:
        >>> r = read_squad([{"id": "1", "question": "Who?", "context": "Ann ran.",
        ...                  "answers": {"text": ["Ann"], "answer_start": [0]}}])
        >>> r[0]["answers"], r[0]["is_impossible"]
        ({'text': ['Ann'], 'answer_start': [0]}, False)
    """
    name = _source_name(source)
    issues = _Issues(name, on_error)
    records = Records(source=name)
    raw_text = ""
    items: list[tuple[Any, dict[str, Any]]] = []
    if _is_path(source) and _guess_format(Path(source)) == "json":
        raw_text = "".join(t for _, t in _lines(Path(source), issues))
        if not raw_text.strip():
            raise issues.error("the file is empty", None, "pass a SQuAD JSON file")
        try:
            data = json.loads(raw_text)
        except json.JSONDecodeError as err:
            raise issues.error(
                f"not valid JSON ({err.msg})", err.lineno, "check the file is SQuAD JSON"
            ) from err
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise issues.error(
                "no top-level 'data' list", 1, "pass SQuAD JSON: {'version': ..., 'data': [...]}"
            )
        for article in data["data"]:
            for paragraph in article.get("paragraphs", []):
                for qa in paragraph.get("qas", []):
                    answers = qa.get("answers", [])
                    items.append(
                        (
                            _line_of(raw_text, json.dumps(str(qa.get("id", "")))) or "?",
                            {
                                "id": str(qa.get("id", "")),
                                "title": article.get("title", ""),
                                "question": qa.get("question"),
                                "context": paragraph.get("context"),
                                "answers": {
                                    "text": [a.get("text") for a in answers],
                                    "answer_start": [a.get("answer_start") for a in answers],
                                },
                                "is_impossible": bool(qa.get("is_impossible", False)),
                            },
                        )
                    )
    else:
        for line, row in iter_rows(source, issues):
            answers = row.get("answers") or {"text": [], "answer_start": []}
            if isinstance(answers, list):  # [{"text", "answer_start"}, ...]
                answers = {
                    "text": [a["text"] for a in answers],
                    "answer_start": [a["answer_start"] for a in answers],
                }
            items.append(
                (
                    line,
                    {
                        "id": str(row.get("id", line)),
                        "title": row.get("title", ""),
                        "question": row.get("question"),
                        "context": row.get("context"),
                        "answers": {
                            "text": list(answers["text"]),
                            "answer_start": list(answers["answer_start"]),
                        },
                        "is_impossible": bool(row.get("is_impossible", not answers["text"])),
                    },
                )
            )
    seen_ids: dict[str, Any] = {}
    for line, ex in items:
        if not isinstance(ex["question"], str) or not isinstance(ex["context"], str):
            issues.report(
                issues.error(
                    f"question {ex['id']!r} lacks a 'question' or 'context' string",
                    line,
                    "give every question its text and context",
                )
            )
            continue
        if ex["id"] in seen_ids:
            issues.report(
                issues.error(
                    f"question id {ex['id']!r} appears twice (first at {seen_ids[ex['id']]})",
                    line,
                    "give every question its own id (predictions and scores are keyed by id)",
                )
            )
            continue
        seen_ids[ex["id"]] = line
        bad = None
        if len(ex["answers"]["text"]) != len(ex["answers"]["answer_start"]):
            bad = (
                f"question {ex['id']!r} has {len(ex['answers']['text'])} answer texts but "
                f"{len(ex['answers']['answer_start'])} answer_start offsets"
            )
        for text, start in zip(ex["answers"]["text"], ex["answers"]["answer_start"]):
            if bad:
                break
            if not isinstance(start, int) or isinstance(start, bool) or not isinstance(text, str):
                bad = f"answer {text!r} has answer_start {start!r}; expected a string and an int"
            elif not 0 <= start <= len(ex["context"]) - len(text):
                bad = (
                    f"answer {text!r} of question {ex['id']!r} has answer_start {start}, outside "
                    f"its context of {len(ex['context'])} characters"
                )
            elif check_offsets and ex["context"][start : start + len(text)] != text:
                found = ex["context"][start : start + len(text)]
                bad = f"answer {text!r} of question {ex['id']!r} is not at offset {start} (the context has {found!r} there)"
            if bad:
                break
        if bad:
            issues.report(
                issues.error(
                    bad, line, "fix answer_start (character offset of the answer in the context)"
                )
            )
            continue
        if not ex["answers"]["text"] and not ex["is_impossible"]:
            issues.report(
                issues.error(
                    f"question {ex['id']!r} has no answer and is not marked is_impossible",
                    line,
                    "add its answers, or set is_impossible: true (SQuAD v2.0)",
                )
            )
            continue
        records.append(ex)
    if not items:
        raise issues.error("no questions", None, "pass a non-empty SQuAD file")
    return issues.finish(records)


# ------------------------------------------------------------------------------------------
# Multiple choice
# ------------------------------------------------------------------------------------------

MC_LAYOUTS = ("generic", "swag", "story_cloze")


def _mc_layout(row: Mapping[str, Any]) -> str:
    if "sent1" in row and "ending0" in row:
        return "swag"
    if "InputSentence1" in row and "RandomFifthSentenceQuiz1" in row:
        return "story_cloze"
    return "generic"


def read_multiple_choice(
    source: Source,
    layout: str | None = None,
    context_column: str | None = None,
    choices_column: str | None = None,
    label_column: str | None = None,
    format: str | None = None,
    on_error: str = "raise",
) -> Records:
    """Multiple-choice examples: a context, its candidate continuations, the right one.

    Layouts (default: detected from the columns):

    - `generic` (JSONL): `context` (or `question`), `choices` (a list), `label` (index, or
      the text of the right choice, or a letter `A`, `B`, ...; also read from `answer`).
    - `swag`: `sent1`, `sent2`, `ending0..ending3`, `label`; choice i is `sent2 + " " +
      ending_i`, the context is `sent1`.
    - `story_cloze`: `InputSentence1..4` (the context), `RandomFifthSentenceQuiz1/2`,
      `AnswerRightEnding` (1 or 2).

    Returns:
        `Records` of `{"context", "choices": [...], "label": int}` (label absent if the
        file has none).

    Example:
        >>> r = read_multiple_choice([{"sent1": "He sat.", "sent2": "He", "ending0": "slept.",
        ...     "ending1": "flew.", "ending2": "ate.", "ending3": "sang.", "label": "0"}])
        >>> r[0]["choices"][1], r[0]["label"]
        ('He flew.', 0)
    """
    name = _source_name(source)
    issues = _Issues(name, on_error)
    records = Records(source=name)
    n_choices = None
    any_row = False
    for line, row in iter_rows(source, issues, format):
        any_row = True
        kind = layout or _mc_layout(row)
        if kind not in MC_LAYOUTS:
            raise ValueError(f"layout={kind!r}; use one of {MC_LAYOUTS}")
        try:
            if kind == "swag":
                endings = sorted(
                    (k for k in row if re.fullmatch(r"ending\d+", k)), key=lambda k: int(k[6:])
                )
                context = str(_get(row, "sent1", line, issues, "sent1"))
                header = str(row.get("sent2", "")).strip()
                choices = [f"{header} {row[k]}".strip() for k in endings]
                label = row.get(label_column or "label")
            elif kind == "story_cloze":
                context = " ".join(
                    str(_get(row, f"InputSentence{i}", line, issues, f"InputSentence{i}"))
                    for i in range(1, 5)
                )
                choices = [
                    str(_get(row, f"RandomFifthSentenceQuiz{i}", line, issues, "ending"))
                    for i in (1, 2)
                ]
                right = row.get(label_column or "AnswerRightEnding")
                label = None if right in (None, "") else int(_as_number(right) or 0) - 1
            else:
                c_col = _pick_column(
                    row, context_column, ("context", "question", "prompt", "ctx"), "context"
                )
                ch_col = _pick_column(
                    row, choices_column, ("choices", "endings", "options"), "choices"
                )
                if c_col is None or ch_col is None:
                    raise issues.error(
                        f"no context/choices columns among {sorted(row)}",
                        line,
                        "pass context_column= and choices_column=",
                    )
                context = _text(_get(row, c_col, line, issues, "context"), line, issues, "context")
                choices = _get(row, ch_col, line, issues, "choices")
                if isinstance(choices, str):
                    try:
                        choices = json.loads(choices)
                    except json.JSONDecodeError as err:
                        raise issues.error(
                            f"choices {choices[:60]!r} is not a JSON list ({err.msg})",
                            line,
                            'write the choices as a JSON list: ["first", "second"]',
                        ) from err
                if not isinstance(choices, list):
                    raise issues.error(
                        f"choices is a {type(choices).__name__}, not a list",
                        line,
                        "write the choices as a list of strings",
                    )
                choices = [_text(c, line, issues, "choice") for c in choices]
                l_col = _pick_column(row, label_column, ("label", "answer", "answerKey"), "label")
                label = row.get(l_col) if l_col else None
            if label is not None and label != "":
                label = _choice_index(label, choices, line, issues)
            else:
                label = None
            if len(choices) < 2:
                raise issues.error(
                    f"{len(choices)} choices; need at least 2",
                    line,
                    "give every example two or more choices",
                )
            if n_choices is not None and len(choices) != n_choices:
                raise issues.error(
                    f"{len(choices)} choices where earlier examples have {n_choices}",
                    line,
                    "give every example the same number of choices",
                )
            n_choices = len(choices)
        except DataError as err:
            issues.report(err)
            continue
        example: dict[str, Any] = {"context": context, "choices": choices}
        if label is not None:
            example["label"] = label
        records.append(example)
    if not any_row:
        raise issues.error("the file is empty", None, "pass a file with at least one example")
    return issues.finish(records)


def _choice_index(label: Any, choices: list[str], line: Any, issues: _Issues) -> int:
    number = _as_number(label)
    if number is not None and number == int(number) and 0 <= number < len(choices):
        return int(number)
    text = str(label).strip()
    if text in choices:
        return choices.index(text)
    if len(text) == 1 and "A" <= text.upper() <= "Z" and ord(text.upper()) - 65 < len(choices):
        return ord(text.upper()) - 65
    raise issues.error(
        f"answer {label!r} is neither a choice index in [0, {len(choices)}), a letter, nor a choice's text",
        line,
        "write the index of the right choice",
    )


# ------------------------------------------------------------------------------------------
# Seq2seq and plain text
# ------------------------------------------------------------------------------------------


def read_seq2seq(
    source: Source,
    source_column: str | None = None,
    target_column: str | None = None,
    format: str | None = None,
    on_error: str = "raise",
    require_targets: bool = True,
) -> Records:
    """Source/target pairs (summarization, translation, ...) from JSONL/CSV/TSV or rows.

    Args:
        source: the file or rows.
        source_column: default the first of `source`, `src`, `input`, `document`, `article`,
            `prompt`.
        target_column: default the first of `target`, `tgt`, `output`, `summary`,
            `highlights`, `completion`.
        require_targets: `False` for prediction inputs.

    Returns:
        `Records` of `{"source", "target"}`.

    Example:
        >>> read_seq2seq([{"document": "long text", "summary": "short"}])[0]
        {'source': 'long text', 'target': 'short'}
    """
    name = _source_name(source)
    issues = _Issues(name, on_error)
    records = Records(source=name)
    columns = None
    any_row = False
    for line, row in iter_rows(source, issues, format):
        any_row = True
        if columns is None:
            columns = (
                _pick_column(
                    row,
                    source_column,
                    ("source", "src", "input", "document", "article", "prompt"),
                    "source",
                ),
                _pick_column(
                    row,
                    target_column,
                    ("target", "tgt", "output", "summary", "highlights", "completion"),
                    "target",
                ),
            )
            if columns[0] is None or (columns[1] is None and require_targets):
                raise issues.error(
                    f"no source/target columns among {sorted(row)}",
                    line,
                    "pass source_column= and target_column=",
                )
        try:
            example = {
                "source": _text(
                    _get(row, columns[0], line, issues, "source"), line, issues, "source"
                )
            }
            if columns[1] is not None and (require_targets or columns[1] in row):
                example["target"] = _text(
                    _get(row, columns[1], line, issues, "target"), line, issues, "target"
                )
        except DataError as err:
            issues.report(err)
            continue
        records.append(example)
    if not any_row:
        raise issues.error("the file is empty", None, "pass a file with at least one example")
    return issues.finish(records)


def read_text(source: str | os.PathLike, on_error: str = "raise") -> str:
    """A whole UTF-8 text file (for small language-modeling corpora; large ones go through
    `text_shards.tokenize_to_shards`).

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> _ = open(p, "w").write("one\\ntwo\\n")
        >>> read_text(p)
        'one\\ntwo\\n'
    """
    issues = _Issues(str(source), on_error)
    text = "".join(t for _, t in _lines(Path(source), issues))
    if not text:
        raise issues.error("the file is empty", None, "pass a non-empty text file")
    if issues.skipped:
        logger.warning(
            "%s: skipped %d lines that are not UTF-8; first: %s",
            source,
            issues.skipped,
            issues.problems[0],
        )
    return text
