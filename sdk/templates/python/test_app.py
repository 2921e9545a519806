"""Unit tests for app.py, run natively: `python3 -m unittest`."""

import json
import unittest

import app
import wasmhook
from wasmhook import Context, Event


class TransformTest(unittest.TestCase):
    def test_posts_the_summary_and_the_fields(self):
        data = {"summary": "web-1 stopped answering", "host": "web-1", "tags": ["x"]}
        event = Event("evt_1", "host.down", "2026-06-13T12:00:00Z", data, json.dumps(data))
        request = app.WitWorld.run(event, Context(settings=[("channel", "#ops")]))
        self.assertIsInstance(request, wasmhook.Request)
        self.assertEqual(request.headers, [("content-type", "application/json")])
        self.assertEqual(
            json.loads(request.body),
            {"channel": "#ops", "text": "host.down: web-1 stopped answering", "fields": {"host": "web-1"}},
        )

    def test_the_manifest_requires_a_channel(self):
        channel = next(s for s in app.WitWorld.settings if s.name == "channel")
        self.assertTrue(channel.required)


if __name__ == "__main__":
    unittest.main()
