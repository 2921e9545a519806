// The versioned test adapter, included by versioned-1, -2 and -3 with their own `VERSION`.
// It delivers `{"version": N, "event_id": …, "data": …}`; a version listed in the
// `broken_versions` setting returns an adapter error instead, so a test can fix a failing
// adapter by replacing the file.

use wasmhook_adapter::{Action, Adapter, Context, Error, Event, Request};

wasmhook_adapter::settings! {
    /// The versioned adapter's one setting.
    pub struct VersionedSettings {
        /// Versions (1, 2, 3) that fail with an adapter error.
        broken_versions: Vec<String>,
    }
}

struct Versioned;

impl Adapter for Versioned {
    type Settings = VersionedSettings;

    fn transform(event: Event, settings: VersionedSettings, _: Context) -> Result<Action, Error> {
        if settings.broken_versions.contains(&VERSION.to_string()) {
            return Err(Error::new(format!("version {VERSION} is broken")));
        }
        let body = serde_json::json!({"version": VERSION, "event_id": event.id, "data": event.data});
        Ok(Action::deliver(Request::json(&body)))
    }
}

wasmhook_adapter::export_adapter!(Versioned);
