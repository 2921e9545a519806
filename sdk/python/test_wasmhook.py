"""Unit tests of wasmhook.py itself: typed settings, what deliver() builds, and the clear
errors for wrong return types. `python3 -m unittest` from sdk/python (scripts/test runs it)."""

import json
import unittest

import wasmhook
from wasmhook import AdapterError, Context, Setting, deliver, skip


class Raw:
    """What componentize-py passes: objects with the WIT's attribute names."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


EVENT = Raw(id="evt_1", type="a.b", timestamp="2026-06-13T12:00:00Z", data='{"n": 1}')


def context(settings=()):
    return Raw(subscription_id="s", url="https://r.example/", settings=list(settings),
               message_id="msg_1", attempt=1, timestamp=1)


def world(transform, settings=()):
    return wasmhook.adapter(name="t", settings=settings, transform=transform)()


class HelperTest(unittest.TestCase):
    def test_settings_arrive_typed_with_defaults(self):
        seen = {}
        specs = [Setting.integer("n", default=3), Setting.boolean("on"), Setting.list("items"),
                 Setting.number("ratio"), Setting.string("name")]
        world(lambda e, s, c: seen.update(s) or skip("x"), specs).transform(
            EVENT, context([("on", "true"), ("items", "a, b,,c"), ("ratio", "0.5")]))
        self.assertEqual(seen, {"n": 3, "on": True, "items": ["a", "b", "c"], "ratio": 0.5, "name": None})

    def test_deliver_builds_json_text_and_raw_bodies(self):
        request = world(lambda e, s, c: deliver(json={"a": 1, "é": 2})).transform(EVENT, context())
        self.assertEqual(request.body, '{"a":1,"é":2}'.encode())
        self.assertEqual(request.headers, [("content-type", "application/json")])
        raw = world(lambda e, s, c: deliver(body="x,y", content_type="text/csv")).transform(EVENT, context())
        self.assertEqual((raw.body, raw.headers), (b"x,y", [("content-type", "text/csv")]))
        self.assertEqual(world(lambda e, s, c: skip("quiet")).transform(EVENT, context()).reason, "quiet")

    def test_wrong_return_types_say_what_to_return(self):
        for answer, said in [
            ({"text": "hi"}, "transform returned a dict; to send a dict as JSON, return wasmhook.deliver(json=...)"),
            ("hi", "transform returned a str"),
            (None, "transform returned nothing (None)"),
        ]:
            with self.assertRaises(AdapterError) as caught:
                world(lambda e, s, c, answer=answer: answer).transform(EVENT, context())
            self.assertIn(said, str(caught.exception))
            self.assertIn("wasmhook.skip(reason)", str(caught.exception))
        with self.assertRaises(AdapterError) as caught:
            world(lambda e, s, c: deliver(body={"a": 1})).transform(EVENT, context())
        self.assertIn("deliver(body=...) needs bytes or str, not dict", str(caught.exception))

    def test_errors_become_the_attempts_message(self):
        def boom(e, s, c):
            raise ValueError("no route")
        with self.assertRaises(AdapterError) as caught:
            world(boom).transform(EVENT, context())
        self.assertEqual(str(caught.exception), "ValueError: no route")
        with self.assertRaises(AdapterError) as caught:
            world(lambda e, s, c: skip("x"), [Setting.string("room", required=True)]).transform(EVENT, context())
        self.assertEqual(str(caught.exception), "setting room is required")

    def test_signing_uses_the_test_secrets(self):
        wasmhook.set_signing_secrets(["It's a Secret to Everybody"])
        self.assertEqual(
            wasmhook.hex(wasmhook.hmac_sha256("Hello, World!")[0]),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )


if __name__ == "__main__":
    unittest.main()
