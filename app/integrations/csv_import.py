"""CSV in: a spreadsheet of CIs of one class, or of relationships, read into import rows
(app/services/imports.py applies them through ingest).

The format is RFC 4180 CSV (https://www.rfc-editor.org/rfc/rfc4180) with a header row; the columns
and cell rules are in csv_columns.py. Two forms:

CIs (`POST /api/v1/import?class=server`), exactly what `GET /api/v1/cis?format=csv` writes:

    id,class,name,status,environment,criticality,owner,tags,identifier.fqdn,attribute.cpu_count
    ,server,web-1,active,prod,2,web-team,"web,pci",web-1.example.com,8
    ,server,db-1,,prod,,dba,,db-1.example.com,16

Relationships (`POST /api/v1/import?relationships=true`): `source`, `type`, `target` and any
`attribute.<key>`; an end is a CI id, `key=value` of an identifier (`fqdn=web-1.example.com`,
`serial_number=XYZ`) or `name=<exact name>`, and must name exactly one CI:

    source,type,target,attribute.port
    fqdn=web-1.example.com,depends_on,fqdn=db-1.example.com,5432

Encodings: UTF-8, with or without a byte order mark (Excel's "CSV UTF-8"), and UTF-16 with a byte
order mark (Excel's "Unicode Text"). Separators: comma, semicolon (spreadsheets in locales with a
decimal comma) or tab, whichever the header row uses. Row numbers in the answer are the spreadsheet's
(the header is row 1). Unknown or repeated columns refuse the whole file (422, naming them); a bad
cell is that row's error, and every row's errors are reported, not the first.

It must never touch the database: it only reads text into rows.
"""

import codecs
import csv
import io
import uuid
from collections.abc import Iterator

from app.core.csv_cells import restore
from app.integrations import csv_columns as columns
from app.services.errors import InvalidInput, field_error
from app.services.imports import ImportRow, RelationshipRow, error

_SEPARATORS = (",", ";", "\t")
# A cell longer than this is refused with the file (csv's own guard: a stray quote swallows the rest).
MAX_CELL = 1024 * 1024
csv.field_size_limit(MAX_CELL)


def decode(body: bytes) -> str:
    """The file's text: UTF-16 with a BOM, else UTF-8 (a BOM dropped); 422 saying where it is not."""
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"The file is not {encoding.removesuffix('-sig').upper()} (byte {exc.start}): save it as "
                           "'CSV UTF-8' (or UTF-16 with a byte order mark).", [field_error("body", "not UTF-8")]) from None


def _records(text: str) -> tuple[list[str], Iterator[list[str]]]:
    first_line = text.split("\n", 1)[0]
    separator = max(_SEPARATORS, key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInput("The file is empty: a header row is expected.", [field_error("body", "empty")]) from None
    except csv.Error as exc:
        raise InvalidInput(f"The header row is not CSV: {exc}.", [field_error("body", "malformed")]) from None
    return [_column_name(name) for name in header], _checked(reader)


def _column_name(name: str) -> str:
    """A header cell's column: spaces around a field's name are not part of it, but an attribute's or
    an identifier's key is exactly what follows its prefix (`attribute.k ` is the key 'k ')."""
    stripped = name.lstrip()
    if stripped.startswith((columns.IDENTIFIER_PREFIX, columns.ATTRIBUTE_PREFIX)):
        return stripped
    return name.strip()


def _checked(reader) -> Iterator[list[str]]:
    try:
        yield from reader
    except csv.Error as exc:
        raise InvalidInput(f"Line {reader.line_num} is not CSV: {exc} (a quote left open?).",
                           [field_error(f"line {reader.line_num}", str(exc))]) from None


def _refuse_header(header: list[str], known) -> None:
    unknown = [name for name in header if not known(name)]
    repeated = sorted({name for name in header if header.count(name) > 1})
    keys = [name.split(".", 1)[1] for name in header if name.startswith((columns.IDENTIFIER_PREFIX,
                                                                          columns.ATTRIBUTE_PREFIX))]
    repeated += sorted({f"identifier.{key} and attribute.{key}" for key in keys if keys.count(key) > 1} - set(repeated))
    problems = [field_error(f"column {name!r}", "unknown column") for name in unknown] + [
        field_error(f"column {name!r}", "given twice") for name in repeated]
    if problems:
        said = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:20])
        raise InvalidInput(f"The header has columns this import does not take: {said}. Columns: "
                           f"{', '.join(columns.FIELD_COLUMNS)}, identifier.<key>, attribute.<key> "
                           "(relationships: source, type, target, attribute.<key>).", problems)


def _is_ci_column(name: str) -> bool:
    return name in columns.FIELD_COLUMNS or (
        name.startswith((columns.IDENTIFIER_PREFIX, columns.ATTRIBUTE_PREFIX)) and len(name.split(".", 1)[1]) > 0)


def read_cis(body: bytes) -> list[ImportRow]:
    header, records = _records(decode(body))
    _refuse_header(header, _is_ci_column)
    if columns.NAME not in header:
        raise InvalidInput("The header has no 'name' column.", [field_error("column 'name'", "required")])
    # What each column is, worked out once: a file of 100,000 rows reads each cell in a few steps.
    values = [(index, name.split(".", 1)[1], name.startswith(columns.IDENTIFIER_PREFIX))
              for index, name in enumerate(header) if name.startswith((columns.IDENTIFIER_PREFIX, columns.ATTRIBUTE_PREFIX))]
    fields = [(index, name) for index, name in enumerate(header) if name in columns.FIELD_COLUMNS]
    came_from = {key: header[index] for index, key, _ in values}  # one mapping shared by every row
    rows = []
    for number, record in enumerate(records, start=2):
        if not "".join(record).strip():
            continue  # a blank line
        row = ImportRow(where=number, columns=came_from)
        width = len(record)
        if width != len(header):
            row.errors.append(error("row", f"{width} cells for {len(header)} columns"))
        for index, key, is_identifier in values:
            cell = record[index] if index < width else ""
            if cell:
                cell = restore(cell)
                value = columns.decode_value(cell)
                (row.identifiers if is_identifier else row.attributes)[key] = value
                if type(value) is not str:
                    row.texts[key] = cell  # read as text instead where the class declares it text
        for index, name in fields:
            try:
                _read_cell(row, name, restore(record[index]) if index < width else "")
            except columns.CellError as exc:
                row.errors.append(error(name, str(exc)))
        rows.append(row)
    return rows


def _read_cell(row: ImportRow, name: str, cell: str) -> None:
    if name == columns.ID:
        if cell.strip():
            try:
                row.ci_id = uuid.UUID(cell.strip())
            except ValueError:
                raise columns.CellError(f"'{cell[:40]}' is not a CI id") from None
    elif name == columns.CLASS:
        row.ci_class = cell.strip() or None
    elif name == columns.NAME:
        row.name = cell
    elif name == columns.STATUS:
        if cell.strip():
            row.fields["status"] = cell.strip()
    elif name == columns.CRITICALITY:
        row.fields["criticality"] = columns.decode_criticality(cell)
    elif name == columns.TAGS:
        row.fields["tags"] = columns.decode_tags(cell)
    else:  # environment, owner
        row.fields[name] = cell if cell != "" else None


def _is_relationship_column(name: str) -> bool:
    return name in columns.RELATIONSHIP_COLUMNS or (name.startswith(columns.ATTRIBUTE_PREFIX) and len(name) > 10)


def read_relationships(body: bytes) -> list[RelationshipRow]:
    header, records = _records(decode(body))
    _refuse_header(header, _is_relationship_column)
    missing = [name for name in columns.RELATIONSHIP_COLUMNS if name not in header]
    if missing:
        raise InvalidInput(f"The header lacks {', '.join(missing)}.",
                           [field_error(f"column {name!r}", "required") for name in missing])
    rows = []
    for number, record in enumerate(records, start=2):
        if not any(cell.strip() for cell in record):
            continue
        rel = RelationshipRow(where=number)
        if len(record) != len(header):
            rel.errors.append(error("row", f"{len(record)} cells for {len(header)} columns"))
        for name, cell in zip(header, record):
            cell = restore(cell)
            if name.startswith(columns.ATTRIBUTE_PREFIX):
                if cell != "":
                    rel.attributes[name.split(".", 1)[1]] = columns.decode_value(cell)
            else:
                setattr(rel, name, cell.strip() or None)
        rows.append(rel)
    return rows
