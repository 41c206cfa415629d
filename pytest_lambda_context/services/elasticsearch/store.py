"""In-memory indices, documents and a small query engine for the embedded stand-in.

The stand-in is a test double for connection behaviour, not a search engine: this
module gives handler code plausible Elasticsearch answers (same response shapes,
versions, sequence numbers, 404s and 409s) and a loud 400 for anything it does not
model, so that a test never passes on a silently wrong result.

Simplifications, on purpose:
- One shard, no replicas; every write is visible to search at once (as if each
  request were followed by a refresh), so ``_refresh`` is accepted and does nothing.
- Strings are "text with a .keyword sub-field" unless the index mappings say
  otherwise; text is analysed by lower-casing and splitting on non-word characters.
- Scores are simple (matching query terms, plus boosts), enough to order hits.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias, TypedDict, cast

__all__ = [
    "CONTAINER_HINT",
    "EsError",
    "JSONObject",
    "JSONValue",
    "Store",
    "compile_query",
    "index_not_found",
    "parse_json",
    "unsupported",
]

CONTAINER_HINT = (
    "run the tests against a real cluster with --lambda-es=container (Docker) "
    "or --lambda-es=url --lambda-es-url=URL"
)

# Single node, one shard, no replica: what every write and read reports.
_SHARDS = {"total": 1, "successful": 1, "failed": 0}
_PRIMARY_TERM = 1
_INVALID_INDEX_CHARS = frozenset('\\/*?"<>| ,#:')
_SEARCH_BODY_KEYS = frozenset({"query", "size", "from", "track_total_hits", "_source"})
_DEFAULT_TRACK_TOTAL_HITS = 10_000

# A JSON document as json.loads returns it and json.dumps takes it.
JSONValue: TypeAlias = str | int | float | bool | list["JSONValue"] | dict[str, "JSONValue"] | None
JSONObject: TypeAlias = dict[str, JSONValue]


class EsError(Exception):
    """An error answered with an Elasticsearch-shaped body and HTTP status."""

    def __init__(self, status: int, error_type: str, reason: str, **extra: JSONValue) -> None:
        super().__init__(reason)
        self.status = status
        self.error_type = error_type
        self.reason = reason
        self.extra = extra

    def cause(self) -> JSONObject:
        return {"type": self.error_type, "reason": self.reason, **self.extra}

    def body(self) -> JSONObject:
        cause = self.cause()
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


def unsupported(what: str) -> EsError:
    """A 400 that tells the user the stand-in, not their code, is the limit."""
    return EsError(
        400,
        "illegal_argument_exception",
        f"{what} is not supported by the pytest-lambda-context embedded Elasticsearch "
        f"stand-in; {CONTAINER_HINT}",
    )


def index_not_found(name: str) -> EsError:
    return EsError(
        404,
        "index_not_found_exception",
        f"no such index [{name}]",
        **{"resource.type": "index_or_alias", "resource.id": name},
        index_uuid="_na_",
        index=name,
    )


def parse_json(data: bytes) -> JSONValue:
    """Decode a request body, turning bad JSON into ES's 400 parse_exception."""
    try:
        parsed: JSONValue = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EsError(400, "parse_exception", f"Failed to parse JSON request body: {exc}") from exc
    return parsed


def _object_body(data: bytes | None, what: str) -> JSONObject:
    if not data or not data.strip():
        raise EsError(400, "parse_exception", "request body is required")
    body = parse_json(data)
    if not isinstance(body, dict):
        raise EsError(400, "parse_exception", f"{what} must be a JSON object")
    return body


@dataclass
class Doc:
    source: JSONObject
    version: int
    seq_no: int


@dataclass
class Index:
    name: str
    # Kept as sent: only mappings are read (by the query engine), none is validated.
    mappings: JSONValue = field(default_factory=dict)
    settings: JSONValue = field(default_factory=dict)
    aliases: JSONValue = field(default_factory=dict)
    docs: dict[str, Doc] = field(default_factory=dict)
    uuid: str = field(default_factory=lambda: secrets.token_urlsafe(16)[:22])
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    last_seq_no: int = -1

    def next_seq_no(self) -> int:
        self.last_seq_no += 1
        return self.last_seq_no

    def write_result(self, doc_id: str, version: int, seq_no: int, result: str) -> JSONObject:
        return {
            "_index": self.name,
            "_id": doc_id,
            "_version": version,
            "result": result,
            "_shards": dict(_SHARDS)
            if result != "noop"
            else {"total": 0, "successful": 0, "failed": 0},
            "_seq_no": seq_no,
            "_primary_term": _PRIMARY_TERM,
        }

    def error_extra(self) -> dict[str, str]:
        return {"index_uuid": self.uuid, "shard": "0", "index": self.name}


def validate_index_name(name: str) -> None:
    problem = None
    if not name or name in {".", ".."}:
        problem = "must not be '.' or '..' or empty"
    elif name != name.lower():
        problem = "must be lowercase"
    elif name[0] in "-_+":
        problem = "must not start with '_', '-', or '+'"
    elif any(c in _INVALID_INDEX_CHARS for c in name):
        problem = 'must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?, #, :]'
    elif len(name.encode()) > 255:
        problem = "index name is too long"
    if problem:
        raise EsError(
            400,
            "invalid_index_name_exception",
            f"Invalid index name [{name}], {problem}",
            index_uuid="_na_",
            index=name,
        )


# --- the query engine ----------------------------------------------------------------

# A compiled query: the document's score if it matches, else None.
Matcher = Callable[[Index, str, JSONObject], "float | None"]


class _FieldMapping(TypedDict, total=False):
    """What the query engine reads of an index's mappings, and of each field's."""

    type: str
    properties: dict[str, _FieldMapping]
    fields: dict[str, _FieldMapping]


def _tokens(text: str) -> list[str]:
    # The standard analyser, roughly: lower-case words.
    return re.findall(r"\w+", text.lower())


def _values(node: JSONValue, path: str) -> list[JSONValue]:
    """The leaf values at a dotted path, with arrays flattened as ES does."""
    if isinstance(node, list):
        return [v for item in node for v in _values(item, path)]
    if not path:
        return [] if node is None else [node]
    if not isinstance(node, dict):
        return []
    parts = path.split(".")
    found: list[JSONValue] = []
    # Both {"a": {"b": 1}} and {"a.b": 1} are field "a.b" in ES.
    for i in range(1, len(parts) + 1):
        key = ".".join(parts[:i])
        if key in node:
            found.extend(_values(node[key], ".".join(parts[i:])))
    return found


def _mapped_type(mappings: _FieldMapping, path: str) -> tuple[str | None, str]:
    """(explicitly mapped type or None, the path whose values the field reads)."""
    node = mappings
    parts = path.split(".")
    for i, part in enumerate(parts):
        props = node.get("properties") or {}
        if part in props:
            node = props[part]
            continue
        fields = node.get("fields") or {}
        if i == len(parts) - 1 and i > 0 and part in fields:
            # A multi-field ("title.raw") indexes its parent's values.
            return fields[part].get("type"), ".".join(parts[:i])
        return None, path
    return node.get("type"), path


def _field(index: Index, source: JSONObject, path: str) -> tuple[list[JSONValue], bool]:
    """The field's values and whether its strings are analysed (text) or exact."""
    # Mappings are not validated when an index is created: malformed ones fail in here.
    mapped, read_path = _mapped_type(cast(_FieldMapping, index.mappings), path)
    if mapped is None and path.endswith(".keyword") and not _values(source, path):
        # Dynamic mapping gives every string a ".keyword" sub-field.
        mapped, read_path = "keyword", path[: -len(".keyword")]
    return _values(source, read_path), mapped in (None, "text", "match_only_text")


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _same(stored: JSONValue, wanted: JSONValue) -> bool:
    numeric = (int, float)
    either_bool = isinstance(stored, bool) or isinstance(wanted, bool)
    if not either_bool and (isinstance(stored, numeric) or isinstance(wanted, numeric)):
        # float() refuses null, arrays and objects: they never equal a number.
        if not isinstance(stored, (int, float, str)) or not isinstance(wanted, (int, float, str)):
            return False
        try:
            return float(stored) == float(wanted)
        except ValueError:
            return False
    return _as_text(stored) == _as_text(wanted)


def _term_hits(values: list[JSONValue], analysed: bool, wanted: JSONValue) -> bool:
    for value in values:
        if analysed and isinstance(value, str):
            # A term query is not analysed: "Foo" never matches text "foo".
            if _as_text(wanted) in _tokens(value):
                return True
        elif _same(value, wanted):
            return True
    return False


def _as_list(value: JSONValue) -> list[JSONValue]:
    return value if isinstance(value, list) else [value]


def _single_field(kind: str, spec: JSONValue) -> tuple[str, JSONValue]:
    if not isinstance(spec, dict):
        raise EsError(400, "parsing_exception", f"[{kind}] query malformed, no start_object")
    fields = [k for k in spec if k not in ("boost", "_name")]
    if len(fields) != 1:
        raise EsError(400, "parsing_exception", f"[{kind}] query requires exactly one field")
    return fields[0], spec[fields[0]]


def _options(kind: str, spec: Mapping[str, object], allowed: Iterable[str]) -> None:
    for key in spec:
        if key not in allowed:
            raise unsupported(f"option [{key}] of the [{kind}] query")


def _boost(spec: JSONValue) -> float:
    if not isinstance(spec, dict):
        return 1.0
    # Not checked: a boost that is null, an array or an object fails in float().
    return float(cast("str | float", spec.get("boost", 1.0)))


def compile_query(query: JSONValue) -> Matcher:
    """Check a query DSL object and turn it into a matcher (400 if unsupported)."""
    if not isinstance(query, dict) or len(query) != 1:
        raise EsError(400, "parsing_exception", "query malformed, must be an object with one key")
    ((kind, spec),) = query.items()
    compiler = _COMPILERS.get(kind)
    if compiler is None:
        raise unsupported(f"query type [{kind}]")
    return compiler(spec)


def _match_all(spec: JSONValue) -> Matcher:
    boost = _boost(spec)
    return lambda index, doc_id, source: boost


def _ids(spec: JSONValue) -> Matcher:
    if not isinstance(spec, dict):
        raise EsError(400, "parsing_exception", "[ids] query malformed")
    _options("ids", spec, ("values", "boost", "_name"))
    # Not checked: ES wants an array; a number, a boolean or null fails in the loop.
    wanted = {str(v) for v in cast("Iterable[JSONValue]", spec.get("values", []))}
    boost = _boost(spec)
    return lambda index, doc_id, source: boost if doc_id in wanted else None


def _term(spec: JSONValue) -> Matcher:
    name, value = _single_field("term", spec)
    boost = _boost(spec)
    if isinstance(value, dict):
        _options("term", value, ("value", "boost", "_name"))
        boost *= _boost(value)
        value = value.get("value")

    def match(index: Index, doc_id: str, source: JSONObject) -> float | None:
        values, analysed = _field(index, source, name)
        return boost if _term_hits(values, analysed, value) else None

    return match


def _terms(spec: JSONValue) -> Matcher:
    name, wanted = _single_field("terms", spec)
    if not isinstance(wanted, list):
        raise unsupported("a [terms] query without an array of values (terms lookup)")
    boost = _boost(spec)

    def match(index: Index, doc_id: str, source: JSONObject) -> float | None:
        values, analysed = _field(index, source, name)
        return boost if any(_term_hits(values, analysed, w) for w in wanted) else None

    return match


def _match(spec: JSONValue) -> Matcher:
    name, value = _single_field("match", spec)
    operator, boost = "or", _boost(spec)
    if isinstance(value, dict):
        _options("match", value, ("query", "operator", "boost", "_name"))
        operator = str(value.get("operator", "or")).lower()
        boost *= _boost(value)
        value = value.get("query")
    if operator not in ("or", "and"):
        raise EsError(400, "parsing_exception", f"[match] unknown operator [{operator}]")
    return _text_matcher(name, value, operator == "and", boost)


def _text_matcher(name: str | None, text: JSONValue, require_all: bool, boost: float) -> Matcher:
    """match on one field (or on every field when ``name`` is None, for ``q=``)."""

    def match(index: Index, doc_id: str, source: JSONObject) -> float | None:
        values: list[JSONValue]
        if name is None:
            values, analysed = [v for v in _leaves(source) if v is not None], True
        else:
            values, analysed = _field(index, source, name)
        if not analysed or not isinstance(text, str):
            # Keyword, numeric and boolean fields match the query as one term.
            return boost if _term_hits(values, False, text) else None
        wanted = _tokens(text)
        present = {t for v in values for t in _tokens(_as_text(v))}
        hits = sum(1 for t in wanted if t in present)
        if hits == 0 or (require_all and hits < len(wanted)):
            return None
        return hits * boost

    return match


def _leaves(node: JSONValue) -> Iterable[JSONValue]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, list):
        for value in node:
            yield from _leaves(value)
    else:
        yield node


def _bool(spec: JSONValue) -> Matcher:
    if not isinstance(spec, dict):
        raise EsError(400, "parsing_exception", "[bool] query malformed")
    _options(
        "bool",
        spec,
        ("must", "filter", "should", "must_not", "minimum_should_match", "boost", "_name"),
    )
    must = [compile_query(q) for q in _as_list(spec.get("must", []))]
    filters = [compile_query(q) for q in _as_list(spec.get("filter", []))]
    should = [compile_query(q) for q in _as_list(spec.get("should", []))]
    must_not = [compile_query(q) for q in _as_list(spec.get("must_not", []))]
    # As in ES: with no must/filter clause, at least one should clause must match.
    required = 1 if should and not (must or filters) else 0
    if "minimum_should_match" in spec:
        minimum = _to_int(spec["minimum_should_match"])
        if minimum is None:
            raise unsupported("a non-integer bool minimum_should_match")
        required = minimum
    boost = _boost(spec)

    def match(index: Index, doc_id: str, source: JSONObject) -> float | None:
        score = 0.0
        for m in must:
            s = m(index, doc_id, source)
            if s is None:
                return None
            score += s
        if any(m(index, doc_id, source) is None for m in filters):
            return None
        if any(m(index, doc_id, source) is not None for m in must_not):
            return None
        matched = 0
        for m in should:
            s = m(index, doc_id, source)
            if s is not None:
                matched += 1
                score += s
        if matched < required:
            return None
        return score * boost

    return match


_COMPILERS: dict[str, Callable[[JSONValue], Matcher]] = {
    "match_all": _match_all,
    "ids": _ids,
    "term": _term,
    "terms": _terms,
    "match": _match,
    "bool": _bool,
}

# Query-string syntax beyond "field:value" or plain words.
_QUERY_STRING_SYNTAX = re.compile(r'[()\[\]{}^"~*?\\/!]|&&|\|\||\b(AND|OR|NOT|TO)\b|(^|\s)[+-]')


def query_string(q: str) -> Matcher:
    """The ``q=`` parameter: ``*``, ``field:value`` or free text over every field."""
    q = q.strip()
    if q in ("", "*", "*:*"):
        return _match_all({})
    field_match = re.fullmatch(r"([A-Za-z0-9_@][\w.@-]*):(.+)", q)
    name, text = (field_match.group(1), field_match.group(2)) if field_match else (None, q)
    if _QUERY_STRING_SYNTAX.search(text) or ":" in text:
        raise unsupported(f"query-string syntax beyond field:value or free text (q=[{q}])")
    return _text_matcher(name, text, False, 1.0)


# --- the store ------------------------------------------------------------------------


def _merge(base: JSONObject, patch: JSONObject) -> JSONObject:
    # Partial updates merge objects recursively, as ES's update API does.
    merged = dict(base)
    for key, value in patch.items():
        current = merged.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


def _new_id() -> str:
    # ES auto ids are 20 URL-safe base64 characters.
    return secrets.token_urlsafe(15)


def _to_int(value: JSONValue) -> int | None:
    """What int() makes of the value, or None where it fails (null, [], {}, "x")."""
    if isinstance(value, (str, int, float)):
        with contextlib.suppress(ValueError):
            return int(value)
    return None


def _int_param(value: JSONValue, name: str) -> int:
    number = _to_int(value)
    if number is None:
        raise EsError(400, "illegal_argument_exception", f"[{name}] must be an integer")
    if number < 0:
        raise EsError(400, "illegal_argument_exception", f"[{name}] parameter cannot be negative")
    return number


class Store:
    """Indices and documents, shared by every connection (one lock, short sections)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._indices: dict[str, Index] = {}
        self.cluster_uuid = secrets.token_urlsafe(16)[:22]
        self.node_id = uuid.uuid4().hex[:22]

    # indices

    def create_index(self, name: str, body: bytes | None) -> JSONObject:
        validate_index_name(name)
        spec = _object_body(body, "index creation body") if body and body.strip() else {}
        for key in spec:
            if key not in ("mappings", "settings", "aliases"):
                raise unsupported(f"index creation option [{key}]")
        with self._lock:
            if name in self._indices:
                existing = self._indices[name]
                raise EsError(
                    400,
                    "resource_already_exists_exception",
                    f"index [{name}/{existing.uuid}] already exists",
                    index_uuid=existing.uuid,
                    index=name,
                )
            self._indices[name] = Index(
                name,
                mappings=spec.get("mappings") or {},
                settings=spec.get("settings") or {},
                aliases=spec.get("aliases") or {},
            )
        return {"acknowledged": True, "shards_acknowledged": True, "index": name}

    def delete_index(self, expr: str) -> JSONObject:
        with self._lock:
            names = expr.split(",")
            if any("*" in n or n == "_all" for n in names):
                # ES 8 refuses this too (action.destructive_requires_name).
                raise unsupported("deleting indices by wildcard or _all")
            for name in names:
                if name not in self._indices:
                    raise index_not_found(name)
            for name in names:
                del self._indices[name]
        return {"acknowledged": True}

    def index_exists(self, name: str) -> bool:
        with self._lock:
            return all(n in self._indices for n in name.split(","))

    def get_index(self, name: str) -> JSONObject:
        with self._lock:
            index = self._require(name)
            settings: JSONObject = {
                "index": {
                    "number_of_shards": "1",
                    "number_of_replicas": "0",
                    "uuid": index.uuid,
                    "creation_date": str(index.created_ms),
                    "provided_name": name,
                }
            }
            return {
                name: {"aliases": index.aliases, "mappings": index.mappings, "settings": settings}
            }

    def index_names(self) -> list[str]:
        with self._lock:
            return list(self._indices)

    def _require(self, name: str) -> Index:
        index = self._indices.get(name)
        if index is None:
            raise index_not_found(name)
        return index

    def _for_write(self, name: str) -> Index:
        # Writing to a missing index creates it, as ES does by default.
        index = self._indices.get(name)
        if index is None:
            validate_index_name(name)
            index = self._indices[name] = Index(name)
        return index

    def _resolve(self, expr: str | None, ignore_unavailable: bool = False) -> list[Index]:
        if expr in (None, "", "_all", "*"):
            return list(self._indices.values())
        chosen: dict[str, Index] = {}
        for part in expr.split(","):
            if "*" in part or "?" in part:
                for name in fnmatch.filter(self._indices, part):
                    chosen[name] = self._indices[name]
            elif part in self._indices:
                chosen[part] = self._indices[part]
            elif not ignore_unavailable:
                raise index_not_found(part)
        return list(chosen.values())

    # documents

    def put_doc(
        self, index_name: str, doc_id: str | None, body: bytes | None, *, create: bool = False
    ) -> tuple[int, JSONObject]:
        return self._put(index_name, doc_id, _object_body(body, "document"), create)

    def _put(
        self, index_name: str, doc_id: str | None, source: JSONObject, create: bool
    ) -> tuple[int, JSONObject]:
        if doc_id == "":
            raise EsError(
                400, "action_request_validation_exception", "Validation Failed: 1: id is missing;"
            )
        with self._lock:
            index = self._for_write(index_name)
            doc_id = _new_id() if doc_id is None else doc_id
            old = index.docs.get(doc_id)
            if old is not None and create:
                raise EsError(
                    409,
                    "version_conflict_engine_exception",
                    f"[{doc_id}]: version conflict, document already exists "
                    f"(current version [{old.version}])",
                    **index.error_extra(),
                )
            version = 1 if old is None else old.version + 1
            doc = index.docs[doc_id] = Doc(source, version, index.next_seq_no())
            result = "created" if old is None else "updated"
            return (201 if old is None else 200), index.write_result(
                doc_id, version, doc.seq_no, result
            )

    def get_doc(
        self, index_name: str, doc_id: str, with_source: bool = True
    ) -> tuple[int, JSONObject]:
        with self._lock:
            index = self._require(index_name)
            doc = index.docs.get(doc_id)
            if doc is None:
                return 404, {"_index": index_name, "_id": doc_id, "found": False}
            found: JSONObject = {
                "_index": index_name,
                "_id": doc_id,
                "_version": doc.version,
                "_seq_no": doc.seq_no,
                "_primary_term": _PRIMARY_TERM,
                "found": True,
            }
            if with_source:
                found["_source"] = doc.source
            return 200, found

    def delete_doc(self, index_name: str, doc_id: str) -> tuple[int, JSONObject]:
        with self._lock:
            index = self._require(index_name)
            doc = index.docs.pop(doc_id, None)
            if doc is None:
                return 404, index.write_result(doc_id, 1, index.next_seq_no(), "not_found")
            return 200, index.write_result(doc_id, doc.version + 1, index.next_seq_no(), "deleted")

    def update_doc(
        self, index_name: str, doc_id: str, body: bytes | None
    ) -> tuple[int, JSONObject]:
        return self._update(index_name, doc_id, _object_body(body, "update body"))

    def _update(self, index_name: str, doc_id: str, spec: JSONObject) -> tuple[int, JSONObject]:
        for key in spec:
            if key not in ("doc", "doc_as_upsert", "upsert", "detect_noop"):
                raise unsupported(f"update option [{key}] (only partial 'doc' updates are)")
        patch = spec.get("doc")
        if not isinstance(patch, dict):
            raise EsError(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: script or doc is missing;",
            )
        with self._lock:
            index = self._for_write(index_name)
            old = index.docs.get(doc_id)
            if old is None:
                upsert = patch if spec.get("doc_as_upsert") else spec.get("upsert")
                if not isinstance(upsert, dict):
                    raise EsError(
                        404,
                        "document_missing_exception",
                        f"[{doc_id}]: document missing",
                        **index.error_extra(),
                    )
                doc = index.docs[doc_id] = Doc(upsert, 1, index.next_seq_no())
                return 201, index.write_result(doc_id, 1, doc.seq_no, "created")
            merged = _merge(old.source, patch)
            if merged == old.source and spec.get("detect_noop", True):
                return 200, index.write_result(doc_id, old.version, old.seq_no, "noop")
            doc = index.docs[doc_id] = Doc(merged, old.version + 1, index.next_seq_no())
            return 200, index.write_result(doc_id, doc.version, doc.seq_no, "updated")

    # search

    def search(self, expr: str | None, body: JSONObject, params: Mapping[str, str]) -> JSONObject:
        started = time.perf_counter()
        for key in body:
            if key not in _SEARCH_BODY_KEYS:
                raise unsupported(f"search option [{key}]")
        size = _int_param(params.get("size", body.get("size", 10)), "size")
        offset = _int_param(params.get("from", body.get("from", 0)), "from")
        track: JSONValue = params.get(
            "track_total_hits", body.get("track_total_hits", _DEFAULT_TRACK_TOTAL_HITS)
        )
        if isinstance(track, str):
            track = {"true": True, "false": False}.get(track.lower(), track)
        show_source = params.get("_source", body.get("_source", True))
        if isinstance(show_source, str):
            show_source = show_source.lower() != "false"
        if not isinstance(show_source, bool):
            raise unsupported("_source filtering")
        matcher = self._matcher(body, params)
        indices, hits = self._hits(expr, matcher, params)
        hits.sort(key=lambda hit: -hit[0])  # stable: ties keep index and insertion order
        total: JSONObject | None = {"value": len(hits), "relation": "eq"}
        if track is False:
            total = None
        elif track is not True:
            limit = _int_param(track, "track_total_hits")
            if len(hits) > limit:
                total = {"value": limit, "relation": "gte"}
        page: list[JSONValue] = []
        for score, index_name, doc_id, source in hits[offset : offset + size]:
            hit: JSONObject = {"_index": index_name, "_id": doc_id, "_score": score}
            if show_source:
                hit["_source"] = source
            page.append(hit)
        hits_body: JSONObject = {}
        if total is not None:
            as_int = params.get("rest_total_hits_as_int", "false").lower() in ("", "true")
            hits_body["total"] = total["value"] if as_int else total
        hits_body["max_score"] = max((h[0] for h in hits), default=None)
        hits_body["hits"] = page
        shards = len(indices)
        return {
            "took": int((time.perf_counter() - started) * 1000),
            "timed_out": False,
            "_shards": {"total": shards, "successful": shards, "skipped": 0, "failed": 0},
            "hits": hits_body,
        }

    def count(self, expr: str | None, body: JSONObject, params: Mapping[str, str]) -> JSONObject:
        for key in body:
            if key != "query":
                raise unsupported(f"count option [{key}]")
        indices, hits = self._hits(expr, self._matcher(body, params), params)
        shards = len(indices)
        return {
            "count": len(hits),
            "_shards": {"total": shards, "successful": shards, "skipped": 0, "failed": 0},
        }

    def refresh(self, expr: str | None) -> JSONObject:
        with self._lock:
            shards = len(self._resolve(expr))
        return {"_shards": {"total": shards, "successful": shards, "failed": 0}}

    @staticmethod
    def _matcher(body: JSONObject, params: Mapping[str, str]) -> Matcher:
        if "q" in params:
            return query_string(params["q"])
        return compile_query(body.get("query", {"match_all": {}}))

    def _hits(
        self, expr: str | None, matcher: Matcher, params: Mapping[str, str]
    ) -> tuple[list[Index], list[tuple[float, str, str, JSONObject]]]:
        ignore = params.get("ignore_unavailable", "false").lower() in ("", "true")
        with self._lock:
            indices = self._resolve(expr, ignore)
            hits = []
            for index in indices:
                for doc_id, doc in index.docs.items():
                    score = matcher(index, doc_id, doc.source)
                    if score is not None:
                        hits.append((score, index.name, doc_id, doc.source))
        return indices, hits

    # bulk

    def bulk(self, default_index: str | None, body: bytes | None) -> JSONObject:
        started = time.perf_counter()
        if not body or not body.strip():
            raise EsError(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: no requests added;",
            )
        if not body.endswith(b"\n"):
            raise EsError(
                400,
                "illegal_argument_exception",
                "The bulk request must be terminated by a newline [\\n]",
            )
        lines = [line for line in body.split(b"\n") if line.strip()]
        items: list[JSONValue] = []
        position = 0
        # Parse everything first: a malformed line fails the whole request, as in ES.
        operations: list[tuple[str, JSONObject, JSONValue]] = []
        while position < len(lines):
            action_line = parse_json(lines[position])
            position += 1
            if not isinstance(action_line, dict) or len(action_line) != 1:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{position}]",
                )
            ((action, meta),) = action_line.items()
            if action not in ("index", "create", "delete", "update"):
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{position}], expected one of "
                    f"[create, delete, index, update] but found [{action}]",
                )
            if not isinstance(meta, dict):
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{position}]",
                )
            for key in meta:
                if key not in ("_index", "_id", "routing", "retry_on_conflict", "require_alias"):
                    raise unsupported(f"bulk action metadata [{key}]")
            source: JSONValue = None
            if action != "delete":
                if position >= len(lines):
                    raise EsError(
                        400,
                        "illegal_argument_exception",
                        f"Missing source for action on line [{position}]",
                    )
                source = parse_json(lines[position])
                position += 1
            operations.append((action, meta, source))
        errors = False
        for action, meta, source in operations:
            # Metadata values are not type-checked: a non-string _index is used as it is.
            index_name = cast("str | None", meta.get("_index", default_index))
            doc_id = meta.get("_id")
            if not index_name:
                raise EsError(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: index is missing;",
                )
            try:
                if action in ("index", "create"):
                    if not isinstance(source, dict):
                        raise EsError(
                            400,
                            "mapper_parsing_exception",
                            "failed to parse, document is not an object",
                        )
                    status, result = self._put(
                        index_name,
                        None if doc_id is None else str(doc_id),
                        source,
                        action == "create",
                    )
                elif doc_id is None:
                    raise EsError(
                        400,
                        "action_request_validation_exception",
                        "Validation Failed: 1: id is missing;",
                    )
                elif action == "delete":
                    status, result = self.delete_doc(index_name, str(doc_id))
                else:
                    if not isinstance(source, dict):
                        raise EsError(400, "parse_exception", "update body must be a JSON object")
                    status, result = self._update(index_name, str(doc_id), source)
                items.append({action: {**result, "status": status}})
            except EsError as exc:
                errors = True
                failure = {
                    "_index": index_name,
                    "_id": doc_id,
                    "status": exc.status,
                    "error": exc.cause(),
                }
                items.append({action: failure})
        return {
            "took": int((time.perf_counter() - started) * 1000),
            "errors": errors,
            "items": items,
        }
