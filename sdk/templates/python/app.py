"""{{name}}: a wasmhook adapter. It posts each event to a chat channel as
{"channel": ..., "text": "<type>: <summary>", "fields": {...}}.

Build: wasmhook plugin build (it makes .venv/ with componentize-py on first use).
Try:   wasmhook plugin run {{name}}.wasm --event sample-event.json --set channel=#ops
Test:  python3 -m unittest
"""

import wasmhook
from wasmhook import Context, Event, Setting, deliver

SUMMARY_FIELDS = ("summary", "message", "title")


def scalar_text(value):
    """A JSON scalar as text; None for objects, arrays and null."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def transform(event: Event, settings: dict, context: Context):
    data = event.data if isinstance(event.data, dict) else {}
    summary = next((t for t in map(scalar_text, map(data.get, SUMMARY_FIELDS)) if t), None)
    summary = summary or f"event {event.id}"
    fields = {}
    for key, value in data.items():
        text = scalar_text(value)
        if key != "summary" and text is not None and len(fields) < settings["max_fields"]:
            fields[key] = text
    wasmhook.debug(f"{len(fields)} fields for {event.id}")
    title = settings["title"] or event.type
    return deliver(json={"channel": settings["channel"], "text": f"{title}: {summary}", "fields": fields})


# The class componentize-py exports. The engine refuses a subscription whose settings do not
# fit these, before the first delivery.
WitWorld = wasmhook.adapter(
    name="{{name}}",
    version="0.1.0",
    description="Posts each event to a chat channel.",
    settings=[
        Setting.string("channel", required=True, description="The channel to post to, such as #ops."),
        Setting.string("title", description="The line before the summary; the event type when unset."),
        Setting.integer("max_fields", default=10, description="How many payload fields to show."),
    ],
    transform=transform,
)
