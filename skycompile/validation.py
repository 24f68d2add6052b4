"""Validate phase, first half: the JSON schema, turned into located, actionable problems.

The second half, the semantic checks that need substituted values and resolved stores,
lives in `semantic.py`; both only collect problems, never raise on the first one.
"""
from __future__ import annotations

import difflib
import json
import re
from functools import lru_cache

import jsonschema

from . import resources
from .errors import Problem
from .load import Document

_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number",
               "boolean": "true or false", "object": "a mapping", "array": "a list",
               "null": "empty"}

# Human wording for the schema's patterns (the schema keeps the regex, we keep the words).
_PATTERNS = {
    "^[A-Za-z_][A-Za-z0-9_]*$": ("is not a valid environment variable name",
                                 "Use letters, digits and '_', not starting with a digit."),
    "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$": ("is not a duration", "Write it like 30s, 5m or 2h."),
    "^[0-9]+(\\.[0-9]+)?[KMGTP]?$": ("is not a size", "Write it like 512M or 10G."),
    "^\\S+$": ("contains a space or a line break",
               "Write the name alone, e.g. us-east-1 or aws/us-east-1."),
    "^https?://[^\\s/]+(/[^\\s]*)?$": ("is not an http(s) URL",
                                       "Write it like https://s3.example.com:9000."),
}


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(resources.read_text("schema", "task.schema.json"))


def _pattern(validator, pattern: str, instance, _schema):
    """`pattern` as JSON Schema means it (ECMA-262): a final `$` is the end of the text.
    Python's `$` also matches before a final newline, which let "A\\n" pass as an env name."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern_re = pattern[:-1] + r"\Z"
    else:
        pattern_re = pattern
    if validator.is_type(instance, "string") and not re.search(pattern_re, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    cls = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern})
    return cls(schema())


def _json_type(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _expected(types) -> str:
    types = [types] if isinstance(types, str) else list(types)
    words = [_TYPE_NAMES.get(t, t) for t in types if t != "null"]
    if len(words) > 1:
        return ", ".join(words[:-1]) + " or " + words[-1]
    return words[0] if words else "empty"


def _branch_matches(sub: dict, instance: object) -> bool:
    types = sub.get("type")
    if types is None and "$ref" in sub:
        target = sub["$ref"].rsplit("/", 1)[-1]
        types = schema()["$defs"].get(target, {}).get("type")
    if types is None:
        return True
    types = [types] if isinstance(types, str) else types
    checker = _validator().TYPE_CHECKER
    return any(checker.is_type(instance, t) for t in types)


def _best_leaf(err: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For oneOf/anyOf, descend into the branch whose type fits the value."""
    while err.validator in ("oneOf", "anyOf") and err.context:
        branches = err.validator_value
        fitting = [e for e in err.context if _branch_matches(branches[e.schema_path[0]], err.instance)]
        if not fitting:
            return err
        err = jsonschema.exceptions.best_match(fitting)
    return err


def _problems_for(err: jsonschema.ValidationError, doc: Document) -> list[Problem]:
    err = _best_leaf(err)
    path = tuple(err.absolute_path)
    v = err.validator
    if "propertyNames" in err.relative_schema_path:
        return [_key_problem(err, path, doc)]
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        out = []
        for key in err.instance:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            fix = f"Did you mean {close[0]!r}?" if close else \
                f"Allowed fields here: {', '.join(a for a in allowed if not a.startswith('_'))}."
            out.append(doc.problem(path + (key,), f"unknown field {key!r}", fix, key=True))
        return out
    if v == "type":
        msg = f"must be {_expected(err.validator_value)}, not {_json_type(err.instance)}"
        return [doc.problem(path, msg, _type_fix(path, err.validator_value))]
    if v == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        return [doc.problem(path, f"missing required field {k!r}", f"Add `{k}:`.") for k in missing]
    if v == "pattern":
        words, fix = _PATTERNS.get(err.validator_value, (f"does not match {err.validator_value}", ""))
        return [doc.problem(path, f"{err.instance!r} {words}", fix)]
    if v in ("minimum", "maximum"):
        word = "at least" if v == "minimum" else "at most"
        return [doc.problem(path, f"must be {word} {err.validator_value}, not {err.instance!r}",
                            f"Use a value {word} {err.validator_value}.")]
    if v == "minLength":
        return [doc.problem(path, "must not be empty", "Give a value or remove the field.")]
    if v == "maxLength":
        return [doc.problem(path, f"is longer than {err.validator_value} characters", "Shorten it.")]
    if v == "minItems":
        return [doc.problem(path, "must not be an empty list", "Give at least one item.")]
    if v == "maxItems":
        return [doc.problem(path, f"must have at most {err.validator_value} item(s)",
                            "Keep one store.")]
    if v in ("oneOf", "anyOf"):
        shapes = " or ".join(_expected(b.get("type", "object")) if "type" in b else "a mapping"
                             for b in err.validator_value)
        return [doc.problem(path, f"must be {shapes}, not {_json_type(err.instance)}",
                            _ONEOF_FIX.get(path[:1] if len(path) == 2 else path, ""))]
    return [doc.problem(path, err.message, "")]


def _key_problem(err: jsonschema.ValidationError, path: tuple, doc: Document) -> Problem:
    """A mapping key that breaks `propertyNames`; located at the key itself."""
    name = err.instance
    if err.validator == "pattern":
        words, fix = _PATTERNS.get(err.validator_value, ("does not match " + err.validator_value, ""))
    elif err.validator == "maxLength":
        words, fix = f"is longer than {err.validator_value} characters", "Shorten it."
    elif err.validator == "minLength":
        words, fix = "must not be empty", "Give a non-empty key."
    else:
        words, fix = "is not allowed as a key", ""
    return doc.problem(path + (name,), f"{str(name)!r} {words}", fix, key=True)


_ONEOF_FIX = {
    ("file_mounts",): "Use a local path, a bucket URI, or a storage mapping (name/source/mode).",
    ("workdir",): "Use a local directory, or a git repository as `{url: ..., ref: ...}`.",
}


def _type_fix(path: tuple, expected) -> str:
    expected = [expected] if isinstance(expected, str) else list(expected)
    if "object" in expected:
        return "Write it as a mapping (`key: value` lines)."
    if len(path) == 2 and path[0] in ("envs", "secrets"):
        return "Quote the value or give a plain string/number."
    if "array" in expected:
        return "Write it as a list (`[a, b]` or `- item` lines)."
    if "string" in expected:
        return "Quote it as a string."
    if "integer" in expected:
        return "Use a whole number such as 2."
    if "boolean" in expected:
        return "Use true or false."
    return ""


def schema_problems(doc: Document) -> tuple[list[Problem], list[tuple] | None]:
    """Every schema violation of one task document, located in the file, and the paths
    whose values broke it (prune them and the rest can still be checked; None: nothing
    can be checked further)."""
    if not isinstance(doc.data, dict):
        return [doc.problem((), f"a task must be a mapping of fields, not {_json_type(doc.data)}",
                            "Start the file with fields such as `run:` or `file_mounts:`.")], None
    problems: list[Problem] = []
    prune: list[tuple] = []
    for err in _validator().iter_errors(doc.data):
        found = _problems_for(err, doc)
        problems.extend(found)
        path = tuple(err.absolute_path)
        if err.validator == "additionalProperties":
            prune += [path + (k,) for k in err.instance if k not in err.schema.get("properties", {})]
        elif "propertyNames" in err.relative_schema_path:
            prune.append(path + (err.instance,))
        else:
            prune.append(path)
    if () in prune:
        return problems, None
    return problems, prune
