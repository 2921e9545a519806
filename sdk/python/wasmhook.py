"""Helpers for writing wasmhook adapters in Python, for the WIT world
wasmhook:adapter@0.2.0 built with componentize-py.

    import wasmhook
    from wasmhook import Context, Event, Setting, deliver, skip

    def transform(event: Event, settings: dict, context: Context):
        return deliver(json={"room": settings["room"], "text": event.type})

    WitWorld = wasmhook.adapter(
        name="chat",
        version="0.1.0",
        description="Posts events to a chat room.",
        settings=[Setting.string("room", required=True, description="The room to post to.")],
        transform=transform,
    )

`adapter` builds the class componentize-py exports. It parses the payload and the
settings (typed as declared: ints, floats, bools, lists), and checks what `transform`
returns: anything but `deliver(...)` or `skip(...)` fails the attempt with a message
saying what to return, instead of an opaque error. Raising fails the attempt with the
exception's message; it is retried on the subscription's schedule.

Outside a component (unit tests with `python -m unittest`) the same module works with
stand-ins: `log` prints, and `hmac_sha256` signs with the secrets given to
`set_signing_secrets`.
"""

from __future__ import annotations

import base64 as _base64
import hmac as _hmac
import hashlib as _hashlib
import json as _json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

try:  # inside a component built by componentize-py
    import wit_world as _wit_world  # noqa: F401
    from wit_world.imports import log as _log
    from wit_world.imports import signing as _signing
    from wit_world.imports import types as _types
    from componentize_py_types import Err as _Err

    IN_COMPONENT = True
except ImportError:  # unit tests on the build machine
    IN_COMPONENT = False

SETTING_TYPES = ("string", "integer", "number", "boolean", "url", "list")


@dataclass(frozen=True)
class Setting:
    """One setting of the manifest. Build it with `Setting.string(...)`, `.integer`, ..."""

    name: str
    type: str = "string"
    required: bool = False
    secret: bool = False
    default: Optional[str] = None
    allowed: Sequence[str] = ()
    description: str = ""

    @classmethod
    def _of(cls, kind, name, required=False, secret=False, default=None, allowed=(), description=""):
        return cls(
            name=name,
            type=kind,
            required=required,
            secret=secret,
            default=None if default is None else _text(default),
            allowed=tuple(str(a) for a in allowed),
            description=description,
        )

    @classmethod
    def string(cls, name: str, **kw) -> "Setting":
        """Any text."""
        return cls._of("string", name, **kw)

    @classmethod
    def integer(cls, name: str, **kw) -> "Setting":
        """A whole number; the adapter gets an int."""
        return cls._of("integer", name, **kw)

    @classmethod
    def number(cls, name: str, **kw) -> "Setting":
        """A finite number; the adapter gets a float."""
        return cls._of("number", name, **kw)

    @classmethod
    def boolean(cls, name: str, **kw) -> "Setting":
        """`true` or `false`; the adapter gets a bool."""
        return cls._of("boolean", name, **kw)

    @classmethod
    def url(cls, name: str, **kw) -> "Setting":
        """An absolute http(s) URL."""
        return cls._of("url", name, **kw)

    @classmethod
    def list(cls, name: str, **kw) -> "Setting":
        """Comma-separated items; the adapter gets a list of str."""
        return cls._of("list", name, **kw)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class Event:
    """The event, with its payload parsed."""

    id: str
    type: str
    timestamp: str
    data: Any
    data_json: str = ""


@dataclass
class Context:
    """Where and for whom this delivery is made."""

    subscription_id: str = "sub_test"
    url: str = "https://receiver.example.com/hook"
    settings: list = field(default_factory=list)
    message_id: str = "msg_test"
    attempt: int = 1
    timestamp: int = 1781352000


@dataclass
class Request:
    """The request to send; build it with `deliver(...)`."""

    method: str
    url: Optional[str]
    headers: list
    body: bytes


@dataclass
class Skip:
    """Send nothing; build it with `skip(reason)`."""

    reason: str


class AdapterError(Exception):
    """Raise it (or any exception) to fail the attempt with its message."""


def deliver(
    *,
    json: Any = None,
    text: Optional[str] = None,
    body: Union[bytes, bytearray, str, None] = None,
    content_type: Optional[str] = None,
    method: str = "POST",
    url: Optional[str] = None,
    headers: Union[dict, Sequence, None] = None,
) -> Request:
    """The request to send. Give exactly one of `json` (serialised, content-type
    application/json), `text` (UTF-8, text/plain) or `body` (bytes sent as they are)."""
    given = [x is not None for x in (json, text, body)].count(True)
    if given != 1:
        raise AdapterError("deliver() takes exactly one of json=, text= or body=")
    if json is not None:
        payload = _json.dumps(json, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        content_type = content_type or "application/json"
    elif text is not None:
        if not isinstance(text, str):
            raise AdapterError(f"deliver(text=...) needs a str, not {type(text).__name__}")
        payload = text.encode("utf-8")
        content_type = content_type or "text/plain; charset=utf-8"
    elif isinstance(body, str):
        payload = body.encode("utf-8")
    elif isinstance(body, (bytes, bytearray)):
        payload = bytes(body)
    else:
        raise AdapterError(f"deliver(body=...) needs bytes or str, not {type(body).__name__}")
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    pairs = [(str(k), str(v)) for k, v in pairs]
    if content_type and not any(k.lower() == "content-type" for k, _ in pairs):
        pairs.insert(0, ("content-type", content_type))
    return Request(method=str(method).upper(), url=url, headers=pairs, body=payload)


def skip(reason: str) -> Skip:
    """Send nothing for this event; recorded as skipped with this reason."""
    return Skip(str(reason))


_LEVELS = ("trace", "debug", "info", "warn", "error")
test_logs: list = []


def log(level: str, message: str) -> None:
    """A log line for the operator: the engine's log, and `wasmhook plugin run`'s output."""
    if level not in _LEVELS:
        raise ValueError(f"log level must be one of {', '.join(_LEVELS)}")
    if IN_COMPONENT:
        _log.log(getattr(_log.Level, level.upper()), str(message))
    else:
        test_logs.append(f"{level}: {message}")


def debug(message: str) -> None:
    log("debug", message)


def info(message: str) -> None:
    log("info", message)


def warn(message: str) -> None:
    log("warn", message)


def error(message: str) -> None:
    log("error", message)


_test_keys: list = []


def set_signing_secrets(secrets: Sequence[str]) -> None:
    """Unit tests: the secrets `hmac_sha256` signs with, newest first."""
    _test_keys[:] = [
        _base64.b64decode(s[6:]) if s.startswith("whsec_") else s.encode("utf-8") for s in secrets
    ]


def hmac_sha256(message: Union[bytes, str]) -> list:
    """HMAC-SHA256 of `message` under each active signing secret of the subscription,
    newest first: one MAC normally, two during a rotation's grace period. The engine
    computes it; the secret never enters the adapter."""
    data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
    if IN_COMPONENT:
        return [bytes(m) for m in _signing.hmac_sha256(data)]
    return [_hmac.new(k, data, _hashlib.sha256).digest() for k in _test_keys]


def _typed(spec: Setting, text: str):
    if spec.type == "integer":
        return int(text)
    if spec.type == "number":
        return float(text)
    if spec.type == "boolean":
        return text == "true"
    if spec.type == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def parse_settings(specs: Sequence[Setting], pairs) -> dict:
    """The settings as a dict, typed as declared, defaults filled; unset ones are None
    (an empty list for a list)."""
    raw = {k: v.strip() for k, v in pairs if v.strip()}
    out = {}
    for spec in specs:
        text = raw.get(spec.name, spec.default)
        if text is None:
            if spec.required:
                raise AdapterError(f"setting {spec.name} is required")
            out[spec.name] = [] if spec.type == "list" else None
        else:
            out[spec.name] = _typed(spec, text)
    return out


def _check(answer):
    if isinstance(answer, (Request, Skip)):
        return answer
    what = "nothing (None)" if answer is None else f"a {type(answer).__name__}"
    hint = ""
    if isinstance(answer, dict):
        hint = "; to send a dict as JSON, return wasmhook.deliver(json=...)"
    elif isinstance(answer, (str, bytes)):
        hint = "; to send it as the body, return wasmhook.deliver(text=...) or deliver(body=...)"
    raise AdapterError(
        f"transform returned {what}{hint}; return wasmhook.deliver(...) to send a request "
        "or wasmhook.skip(reason) to send nothing"
    )


def adapter(
    *,
    name: str,
    transform: Callable[[Event, dict, Context], Union[Request, Skip]],
    version: str = "0.1.0",
    description: str = "",
    settings: Sequence[Setting] = (),
):
    """Builds the `WitWorld` class componentize-py exports; assign it to `WitWorld` in
    your app module. `transform(event, settings, context)` returns `deliver(...)` or
    `skip(...)`, or raises."""
    specs = tuple(settings)
    for spec in specs:
        if spec.type not in SETTING_TYPES:
            raise ValueError(f"setting {spec.name}: type must be one of {', '.join(SETTING_TYPES)}")

    def run(event: Event, context: Context):
        """The adapter with plain Python values in and out (what unit tests call)."""
        return _check(transform(event, parse_settings(specs, context.settings), context))

    def handle(raw_event, raw_context):
        try:
            data = _json.loads(raw_event.data)
        except ValueError as e:
            raise AdapterError(f"event {raw_event.id}: data is not valid JSON: {e}")
        event = Event(raw_event.id, raw_event.type, raw_event.timestamp, data, raw_event.data)
        context = Context(
            raw_context.subscription_id,
            raw_context.url,
            list(raw_context.settings),
            raw_context.message_id,
            raw_context.attempt,
            raw_context.timestamp,
        )
        return run(event, context)

    class WitWorld:
        """The component's exports: `manifest` and `transform`."""

        def manifest(self):
            if not IN_COMPONENT:
                return {"name": name, "version": version, "description": description, "settings": specs}
            return _types.Manifest(
                name=name,
                version=version,
                description=description,
                settings=[
                    _types.Setting(
                        name=s.name,
                        type=getattr(_types.SettingType, s.type.upper()),
                        required=s.required,
                        secret=s.secret,
                        default=s.default,
                        allowed=list(s.allowed),
                        description=s.description,
                    )
                    for s in specs
                ],
            )

        def transform(self, event, context):
            try:
                answer = handle(event, context)
            except Exception as e:  # every failure becomes the attempt's error message
                message = str(e) if isinstance(e, AdapterError) else f"{type(e).__name__}: {e}"
                if IN_COMPONENT:
                    raise _Err(_types.AdapterError(message))
                raise AdapterError(message) from e
            if not IN_COMPONENT:
                return answer
            if isinstance(answer, Skip):
                return _types.Action_Skip(answer.reason)
            return _types.Action_Deliver(
                _types.Request(
                    method=answer.method, url=answer.url, headers=answer.headers, body=answer.body
                )
            )

    WitWorld.run = staticmethod(run)
    WitWorld.settings = specs
    return WitWorld


def hex(data: bytes) -> str:  # noqa: A001 - mirrors the JS and Rust helpers
    """Lower-case hex, as GitHub-style signatures use."""
    return bytes(data).hex()


def b64(data: bytes) -> str:
    """Standard base64."""
    return _base64.b64encode(bytes(data)).decode("ascii")
