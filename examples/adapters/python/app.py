"""wasmhook adapter for Discord, written in Python and built into a WebAssembly component
with componentize-py (see build.sh). It turns one event into a Discord webhook message with
one embed: the event type as title, a one-line summary, the payload's top-level scalar
fields as inline fields, the event id as footer and the event time as timestamp.

Settings (all optional):
  username    the name the message is posted under; defaults to "wasmhook"
  avatar_url  the avatar image URL for the message
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports.log import Level, log
from wit_world.imports.types import Action_Deliver, AdapterError, Context, Event, Request

MAX_FIELDS = 25  # Discord allows at most 25 fields per embed
SUMMARY_FIELDS = ("summary", "message", "title", "description")


def scalar_text(value):
    """A JSON scalar as text ("true", "3", ...); None for objects, arrays and null."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return None


def truncate(text, limit):
    """`text` cut to at most `limit` characters, Discord's per-field limits."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def setting(context, key):
    """A setting's value, or None when it is missing or blank."""
    for k, v in context.settings:
        if k == key and v.strip():
            return v.strip()
    return None


class WitWorld(wit_world.WitWorld):
    def transform(self, event: Event, context: Context) -> Action_Deliver:
        try:
            data = json.loads(event.data)
        except ValueError as e:
            raise Err(AdapterError(f"event {event.id}: data is not valid JSON: {e}"))
        payload = data if isinstance(data, dict) else {}

        texts = (scalar_text(payload.get(k)) for k in SUMMARY_FIELDS)
        summary = next((t for t in texts if t and t.strip()), None)
        summary = summary or f"{event.type} ({event.id})"

        fields = []
        for key, value in payload.items():
            text = scalar_text(value)
            if key in SUMMARY_FIELDS or text is None or not text.strip():
                continue  # Discord rejects empty field values
            fields.append({"name": truncate(key, 256), "value": truncate(text, 1024), "inline": True})
        fields = fields[:MAX_FIELDS]

        message = {
            "content": truncate(summary, 2000),
            "username": truncate(setting(context, "username") or "wasmhook", 80),
            "embeds": [
                {
                    "title": truncate(event.type, 256),
                    "description": truncate(summary, 4096),
                    "fields": fields,
                    "footer": {"text": event.id},
                    "timestamp": event.timestamp,
                }
            ],
        }
        avatar_url = setting(context, "avatar_url")
        if avatar_url:
            message["avatar_url"] = avatar_url

        log(Level.DEBUG, f"discord: message for {event.type} {event.id} with {len(fields)} fields")
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return Action_Deliver(
            Request(method="POST", url=None, headers=[("content-type", "application/json")], body=body)
        )
