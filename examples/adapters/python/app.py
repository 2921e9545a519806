"""wasmhook adapter for Discord, written in Python with the wasmhook.py helpers (sdk/python)
and built into a WebAssembly component with componentize-py (see build.sh). It turns one
event into a Discord webhook message with one embed: the event type as title, a one-line
summary, the payload's top-level scalar fields as inline fields, the event id as footer and
the event time as timestamp.
"""

import wasmhook
from wasmhook import AdapterError, Context, Event, Setting, deliver

MAX_FIELDS = 25  # Discord allows at most 25 fields per embed
SUMMARY_FIELDS = ("summary", "message", "title", "description")


def scalar_text(value):
    """A JSON scalar as text ("true", "3", ...); None for objects, arrays and null."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def truncate(text, limit):
    """`text` cut to at most `limit` characters, Discord's per-field limits."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def transform(event: Event, settings: dict, context: Context):
    payload = event.data if isinstance(event.data, dict) else {}
    texts = (scalar_text(payload.get(k)) for k in SUMMARY_FIELDS)
    summary = next((t for t in texts if t and t.strip()), None) or f"{event.type} ({event.id})"

    fields = []
    for key, value in payload.items():
        text = scalar_text(value)
        if key in SUMMARY_FIELDS or text is None or not text.strip():
            continue  # Discord rejects empty field values
        fields.append({"name": truncate(key, 256), "value": truncate(text, 1024), "inline": True})

    message = {
        "content": truncate(summary, 2000),
        "username": truncate(settings["username"], 80),
        "embeds": [
            {
                "title": truncate(event.type, 256),
                "description": truncate(summary, 4096),
                "fields": fields[:MAX_FIELDS],
                "footer": {"text": event.id},
                "timestamp": event.timestamp,
            }
        ],
    }
    avatar_url = settings["avatar_url"]
    if avatar_url:
        if not avatar_url.startswith("https://"):
            raise AdapterError(f"setting avatar_url: Discord loads avatars over https only, not {avatar_url}")
        message["avatar_url"] = avatar_url
    wasmhook.debug(f"discord: message for {event.type} {event.id} with {len(fields)} fields")
    return deliver(json=message)


WitWorld = wasmhook.adapter(
    name="discord",
    version="0.2.0",
    description="Embed messages for Discord webhooks.",
    settings=[
        Setting.string("username", default="wasmhook", description="The name the message is posted under."),
        Setting.url("avatar_url", description="An https URL of the avatar image for the message."),
    ],
    transform=transform,
)
