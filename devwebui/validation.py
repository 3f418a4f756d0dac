"""Requests checked the way the WebUI (FastAPI, pydantic v1) checks them, and its error bodies."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

from devwebui.fields import Field

# --- errors in the WebUI's shapes --------------------------------------------------------------


class HTTPError(Exception):
    """A FastAPI HTTPException: A1111 answers {error: "HTTPException", detail, body, errors}."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ValidationFailed(Exception):
    """Request validation failed: FastAPI's 422 {"detail": [{loc, msg, type}]}."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        super().__init__(items)
        self.items = items


def exception_body(exc: BaseException, flavor: str = "a1111") -> dict[str, Any]:
    """The error body each fork sends: A1111's api_middleware, Forge's FastAPI default and
    webui.py handler ("message" instead of "errors"), SD.Next's middleware (with "code")."""
    if flavor == "forge":
        if isinstance(exc, HTTPError):
            return {"detail": exc.detail}
        return {"error": type(exc).__name__, "detail": "", "body": "", "message": str(exc)}
    if flavor == "sdnext":
        if isinstance(exc, HTTPError):
            return {
                "error": "HTTPException",
                "code": exc.status,
                "detail": exc.detail,
                "body": "",
                "errors": "",
            }
        return {
            "error": type(exc).__name__,
            "code": 500,
            "detail": "",
            "body": "",
            "errors": str(exc),
        }
    if isinstance(exc, HTTPError):
        return {"error": "HTTPException", "detail": exc.detail, "body": "", "errors": ""}
    return {"error": type(exc).__name__, "detail": "", "body": "", "errors": str(exc)}


# --- pydantic-v1-style validation --------------------------------------------------------------


class BadValue(Exception):
    def __init__(self, msg: str, kind: str, ctx: dict[str, Any] | None = None) -> None:
        super().__init__(msg)
        self.msg, self.kind, self.ctx = msg, kind, ctx


_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def _to_int(v: Any) -> int:
    if isinstance(v, bool | int):
        return int(v)
    if isinstance(v, float) and v == v and abs(v) != float("inf"):
        return int(v)  # pydantic v1 truncates: 20.7 -> 20
    if isinstance(v, str):
        with contextlib.suppress(ValueError):
            return int(v)
    raise BadValue("value is not a valid integer", "type_error.integer")


def _to_float(v: Any) -> float:
    if isinstance(v, bool | int | float):
        return float(v)
    if isinstance(v, str):
        with contextlib.suppress(ValueError):
            return float(v)
    raise BadValue("value is not a valid float", "type_error.float")


def _to_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, int | float):
        return str(v)
    raise BadValue("str type expected", "type_error.str")


def to_bool(v: Any) -> bool:
    if v is True or v is False:
        return v
    key = v.lower().strip() if isinstance(v, str) else v
    if isinstance(key, int | float | str):
        if key in _TRUE or (not isinstance(key, str) and key == 1):
            return True
        if key in _FALSE or (not isinstance(key, str) and key == 0):
            return False
    raise BadValue("value could not be parsed to a boolean", "type_error.bool")


def _constrain(value: float, spec: str) -> None:
    """Apply the range part of an extras json_type: '0..1', '>0', '>=1'."""
    if ".." in spec:
        low, high = (float(x) for x in spec.split(".."))
        if value < low:
            raise BadValue(
                f"ensure this value is greater than or equal to {low:g}",
                "value_error.number.not_ge",
            )
        if value > high:
            raise BadValue(
                f"ensure this value is less than or equal to {high:g}", "value_error.number.not_le"
            )
    elif spec.startswith(">="):
        if value < float(spec[2:]):
            raise BadValue(
                f"ensure this value is greater than or equal to {spec[2:]}",
                "value_error.number.not_ge",
            )
    elif spec.startswith(">") and value <= float(spec[1:]):
        raise BadValue(f"ensure this value is greater than {spec[1:]}", "value_error.number.not_gt")


def _coerce(value: Any, json_type: str, loc: list[Any], errors: list[dict[str, Any]]) -> Any:
    """One field, pydantic v1 lax rules; appends FastAPI error items instead of raising."""
    base, _, spec = json_type.partition(" ")
    try:
        if spec.startswith("("):  # Literal[0, 1]: no coercion, exact values only
            permitted = [int(x) for x in spec.strip("()").split("|")]
            if type(value) is not int or value not in permitted:
                given = json.dumps(value)
                raise BadValue(
                    "unexpected value; permitted: " + ", ".join(map(str, permitted)),
                    "value_error.const",
                    {"given": given, "permitted": permitted},
                )
            return value
        if base == "any":
            result: Any = value
        elif base == "integer|string":
            result = (
                value
                if isinstance(value, int | str) and not isinstance(value, bool)
                else _to_str(value)
            )
        elif base == "integer":
            result = _to_int(value)
        elif base == "number":
            result = _to_float(value)
        elif base == "string":
            result = _to_str(value)
        elif base == "boolean":
            result = to_bool(value)
        elif base == "object":
            if not isinstance(value, dict):
                raise BadValue("value is not a valid dict", "type_error.dict")
            result = value
        elif base.startswith("array"):
            if not isinstance(value, list):
                raise BadValue("value is not a valid list", "type_error.list")
            result = value
            if base == "array<string>":
                result = [_coerce(x, "string", [*loc, i], errors) for i, x in enumerate(value)]
        else:  # pragma: no cover - table typo
            raise AssertionError(json_type)
        if spec:
            _constrain(float(result), spec)
        return result
    except BadValue as bad:
        item: dict[str, Any] = {"loc": loc, "msg": bad.msg, "type": bad.kind}
        if bad.ctx:
            item["ctx"] = bad.ctx
        errors.append(item)
        return None


def validate(fields: list[Field], body: Any) -> dict[str, Any]:
    """Validate a JSON body like FastAPI + pydantic v1: unknown keys dropped, defaults filled."""
    if not isinstance(body, dict):
        raise ValidationFailed(
            [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]
        )
    out: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, json_type, default, nullable in fields:
        if name not in body:
            if default is ...:
                errors.append(
                    {"loc": ["body", name], "msg": "field required", "type": "value_error.missing"}
                )
            out[name] = copy.deepcopy(default)
        elif body[name] is None:
            if not nullable:
                errors.append(
                    {
                        "loc": ["body", name],
                        "msg": "none is not an allowed value",
                        "type": "type_error.none.not_allowed",
                    }
                )
            out[name] = None
        else:
            out[name] = _coerce(body[name], json_type, ["body", name], errors)
    if errors:
        raise ValidationFailed(errors)
    return out
