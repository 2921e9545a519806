//! The Slack adapter: turns an event into a Block Kit message for an incoming webhook.
//! Its settings are declared in [`SlackSettings`]; all are optional.

mod message;

use wasmhook_adapter::{Action, Adapter, Context, Error, Event, Request};

wasmhook_adapter::settings! {
    /// What a subscription to Slack can set.
    pub struct SlackSettings {
        /// The channel to post to, passed through to Slack (incoming webhooks that allow it).
        channel: Option<String>,
        /// The name the message is posted under, passed through to Slack.
        username: Option<String>,
        /// The emoji shown as the poster's icon, such as `:rotating_light:`.
        icon_emoji: Option<String>,
        /// The header line; the event type when unset.
        title: Option<String>,
        /// The payload field holding a one-line summary; by default the first of `summary`,
        /// `message`, `title`, `description`.
        summary_field: Option<String>,
        /// Payload fields to show, comma-separated; by default the first ten scalar fields.
        fields: Vec<String>,
    }
}

struct Slack;

impl Adapter for Slack {
    type Settings = SlackSettings;

    fn transform(event: Event, settings: SlackSettings, _: Context) -> Result<Action, Error> {
        Ok(Action::deliver(Request::json(&message::render(
            &event, &settings,
        ))))
    }
}

wasmhook_adapter::export_adapter!(Slack);
