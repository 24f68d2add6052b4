"""Load phase: bytes -> documents whose every value knows its line and column.

PyYAML's composer gives a node graph with marks; we build the Python values ourselves
from it so that (a) each JSON path maps to a location in the user's file, (b) duplicate
keys are errors instead of silent overwrites, and (c) alias expansion, nesting depth and
size are bounded, so a hostile file fails fast with a located message.
"""
from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import Problem, TaskError

MAX_BYTES = 2 * 1024 * 1024  # task files are a few KB; 2 MiB is generous
# byte-order marks of the encodings editors save in besides UTF-8 (UTF-32 LE's starts with
# UTF-16 LE's, so it comes first)
BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))
MAX_NODES = 50_000  # values built, aliases counted at every use (YAML bomb bound)
MAX_DEPTH = 64
SURROGATE = re.compile("[\ud800-\udfff]")  # half of a UTF-16 pair, alone


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    col: int  # 1-based


@dataclass
class Document:
    """One YAML document: its value plus the location of every path in it."""

    data: object
    filename: str
    index: int = 0
    problems: list[Problem] = field(default_factory=list)  # found while loading (duplicates, tags)
    values: dict[tuple, Mark] = field(default_factory=dict)  # path -> where its value starts
    keys: dict[tuple, Mark] = field(default_factory=dict)  # path -> where its key starts
    start: Mark = Mark(1, 1)

    def mark(self, path: tuple, *, key: bool = False) -> Mark:
        """Best location for `path`: the key (for unknown keys) or the value, else the
        nearest ancestor that has one."""
        path = tuple(path)
        while True:
            table = (self.keys, self.values) if key else (self.values, self.keys)
            for t in table:
                if path in t:
                    return t[path]
            if not path:
                return self.start
            path = path[:-1]

    def problem(self, path: tuple, message: str, fix: str = "", *, key: bool = False,
                rank: int = 0) -> Problem:
        from .errors import json_path

        m = self.mark(path, key=key)
        return Problem(m.line, m.col, rank, json_path(path), message, fix, self.filename)


# The tags plain YAML resolves to by itself; anything else (`!custom`, `!!python/...`,
# `!!binary`) is refused rather than constructed.
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in
               ("str", "int", "float", "bool", "null", "timestamp", "merge", "seq", "map")}


class _Builder:
    """Builds plain Python values from a composed YAML node, recording marks."""

    def __init__(self, doc: Document):
        self.doc = doc
        self.count = 0
        self.problems: list[Problem] = []
        self._scalars = yaml.constructor.SafeConstructor()

    def _problem(self, node: yaml.Node, message: str, fix: str = "", path: tuple = ()) -> None:
        from .errors import json_path

        m = node.start_mark
        self.problems.append(
            Problem(m.line + 1, m.column + 1, 0, json_path(path), message, fix, self.doc.filename))

    def build(self, node: yaml.Node, path: tuple, depth: int) -> object:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig(node)
        if depth > MAX_DEPTH:
            raise _TooDeep(node)
        self.doc.values[path] = Mark(node.start_mark.line + 1, node.start_mark.column + 1)
        if node.tag not in _PLAIN_TAGS:
            short = node.tag.replace("tag:yaml.org,2002:", "!!")
            self._problem(node, f"unsupported YAML tag {short}", "Remove the tag.", path)
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, path + (i,), depth + 1) for i, child in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: yaml.ScalarNode, path: tuple) -> object:
        if node.tag == "tag:yaml.org,2002:timestamp":
            return node.value  # keep dates as the text the user wrote
        value = self._scalars.construct_object(node, deep=True)
        if isinstance(value, str) and "\x00" in value:
            self._problem(node, "the value contains a NUL character, which no shell script can hold",
                          "Remove the \\0 escape.", path)
        elif isinstance(value, str) and SURROGATE.search(value):
            self._problem(node, "the value contains a lone surrogate (an escape like \\udc80), "
                          "which is not a character and cannot be written as UTF-8",
                          "Write the character itself, or its \\U escape.", path)
            value = SURROGATE.sub("\ufffd", value)  # reported; the other checks go on
        return value

    def _pairs(self, node: yaml.MappingNode):
        """Key/value node pairs, with `<<` merge keys expanded (explicit keys win)."""
        merged, own = [], []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    if isinstance(src, yaml.MappingNode):
                        merged.extend(self._pairs(src))
                    else:
                        self._problem(src, "a `<<` merge key needs a mapping", "Merge a mapping alias.")
            else:
                own.append((key_node, value_node, False))
        own_keys = {k.value for k, _, _ in own if isinstance(k, yaml.ScalarNode)}
        return [(k, v, True) for k, v, _ in merged if k.value not in own_keys] + own

    def _mapping(self, node: yaml.MappingNode, path: tuple, depth: int) -> dict:
        out: dict = {}
        seen: dict = {}
        for key_node, value_node, from_merge in self._pairs(node):
            self.count += 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _PLAIN_TAGS:
                self._problem(key_node, "a mapping key must be a plain string", "Quote the key.", path)
                continue
            key = self._scalar(key_node, path)
            if not isinstance(key, str):
                key = key_node.value  # `1:` or `true:` -> the text the user wrote
            if key in seen and not from_merge:
                first = seen[key]
                self._problem(key_node, f"duplicate key {key!r} (first defined at line {first})",
                              "Remove one of the two entries.", path + (key,))
                continue
            seen.setdefault(key, key_node.start_mark.line + 1)
            kpath = path + (key,)
            self.doc.keys[kpath] = Mark(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.build(value_node, kpath, depth + 1)
        return out


class _TooBig(Exception):
    def __init__(self, node):
        self.node = node


class _TooDeep(Exception):
    def __init__(self, node):
        self.node = node


_OPEN = (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken,
         yaml.BlockSequenceStartToken, yaml.BlockMappingStartToken)
_CLOSE = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)


def _check_depth(text: str, filename: str) -> None:
    """Reject deep nesting from the token stream, before the (recursive) composer runs."""
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                m = token.start_mark
                raise _fail(filename, m.line + 1, m.column + 1,
                            f"values are nested more than {MAX_DEPTH} levels deep",
                            "Flatten the structure.")
        elif isinstance(token, _CLOSE):
            depth -= 1


def _fail(filename: str, line: int, col: int, message: str, fix: str = "") -> TaskError:
    return TaskError([Problem(line, col, 0, "", message, fix, filename)], filename)


def _too_big(filename: str, size: int) -> TaskError:
    return _fail(filename, 1, 1, f"the file is {size} bytes; task files are limited to "
                 f"{MAX_BYTES} bytes", "Move data into file_mounts instead of the task file.")


def load_text(text: str | bytes, filename: str) -> list[Document]:
    """Parse task text into documents with marks. Raises TaskError, never a YAML error,
    when the text cannot be read as YAML at all; problems inside a readable document
    (duplicate keys, tags) are kept in `Document.problems` so that later checks still run."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise _too_big(filename, len(text))
        for bom, encoding in BOMS:
            if text.startswith(bom):
                raise _fail(filename, 1, 1, f"the file is {encoding}, not UTF-8",
                            f"Save the task file as UTF-8 (iconv -f {encoding} -t UTF-8).")
        if b"\x00" in text:
            at = text.index(b"\x00")
            line = text[:at].count(b"\n") + 1
            col = at - (text.rfind(b"\n", 0, at) + 1) + 1
            raise _fail(filename, line, col, "the file contains a NUL byte (binary file?)",
                        "Pass a YAML task file.")
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = text[: e.start].count(b"\n") + 1
            col = e.start - (text.rfind(b"\n", 0, e.start) + 1) + 1
            raise _fail(filename, line, col, "the file is not valid UTF-8",
                        "Save the task file as UTF-8.") from None
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#")
                               for ln in text.splitlines()):
        raise _fail(filename, 1, 1, "the task file is empty",
                    "Add at least a `run:` command or `file_mounts:`.")
    docs: list[Document] = []
    try:
        _check_depth(text, filename)
        for index, node in enumerate(yaml.compose_all(text, Loader=yaml.SafeLoader)):
            doc = Document(data=None, filename=filename, index=index)
            if node is None:
                docs.append(doc)
                continue
            doc.start = Mark(node.start_mark.line + 1, node.start_mark.column + 1)
            builder = _Builder(doc)
            try:
                doc.data = builder.build(node, (), 0)
            except _TooBig as e:
                m = e.node.start_mark
                raise _fail(filename, m.line + 1, m.column + 1,
                            f"the document expands to more than {MAX_NODES} values "
                            "(YAML alias bomb?)", "Remove the nested aliases.") from None
            except _TooDeep as e:
                m = e.node.start_mark
                raise _fail(filename, m.line + 1, m.column + 1,
                            f"values are nested more than {MAX_DEPTH} levels deep",
                            "Flatten the structure.") from None
            doc.problems = builder.problems
            docs.append(doc)
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        what = e.problem or e.context or "invalid YAML"
        raise _fail(filename, (m.line + 1) if m else 1, (m.column + 1) if m else 1,
                    f"invalid YAML: {what}", "Fix the YAML syntax at this position.") from None
    except yaml.YAMLError as e:  # reader errors (control characters) carry a position too
        pos = getattr(e, "position", None)
        line = text[:pos].count("\n") + 1 if pos is not None else 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1 if pos is not None else 1
        reason = getattr(e, "reason", None) or str(e).splitlines()[0]
        raise _fail(filename, line, col, f"invalid YAML: {reason}",
                    "Remove the control character or binary content.") from None
    except RecursionError:
        raise _fail(filename, 1, 1, "the YAML is nested too deeply to parse",
                    "Flatten the structure.") from None
    return docs


def load_file(path: str | Path) -> list[Document]:
    """Read and parse a task file. Unreadable files are reported like any other input error."""
    path = Path(path)
    name = str(path)
    try:
        if path.is_dir():
            raise _fail(name, 1, 1, "this is a directory, not a task file", "Pass the YAML file.")
        if path.exists() and not path.is_file():
            raise _fail(name, 1, 1, "this is not a regular file (FIFO, socket or device?)",
                        "Pass the YAML file.")
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_BYTES:
                raise _too_big(name, size)
            data = fh.read(MAX_BYTES + 1)
    except OSError as e:
        raise _fail(name, 1, 1, f"cannot read the task file: {e.strerror}",
                    "Check the path and its permissions.") from None
    return load_text(data, name)
