//! Adapter manifests (WIT 0.2.0 and later): who an adapter is and which settings it takes.
//! Pure checks: a manifest when its plugin loads, and a subscription's settings against it
//! (unknown names with a "did you mean", missing required ones, values of the wrong type),
//! with the defaults filled in for the adapter. (Over 500 lines only because the unit
//! tests of these checks, about half the file, sit beside them.)

use std::collections::BTreeMap;

use serde::Serialize;

/// Most settings one manifest may declare.
const MAX_SETTINGS: usize = 100;
/// Longest name, version, or allowed value.
const MAX_SHORT: usize = 64;
/// Longest description.
const MAX_DESCRIPTION: usize = 1000;
/// Most allowed values of one setting.
const MAX_ALLOWED: usize = 100;

/// Who an adapter is and which settings it takes, as its `manifest` export says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Manifest {
    /// The adapter's own name, such as `slack` (subscriptions name the plugin file).
    pub name: String,
    /// The adapter's own version.
    pub version: String,
    /// What it sends where.
    pub description: String,
    /// Every setting it reads.
    pub settings: Vec<SettingSpec>,
}

/// One setting an adapter declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SettingSpec {
    /// The key in a subscription's `settings`.
    pub name: String,
    /// What the value must parse as.
    #[serde(rename = "type")]
    pub kind: SettingType,
    /// A subscription without it is refused.
    pub required: bool,
    /// Never shown back (API reads, logs).
    pub secret: bool,
    /// Used when a subscription leaves it unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// When not empty, the only values (for a `list`, items) accepted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
    /// For the operator.
    pub description: String,
}

/// The type of a setting's value; values travel as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SettingType {
    /// Any text.
    String,
    /// A 64-bit whole number.
    Integer,
    /// A finite decimal number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// An absolute http(s) URL.
    Url,
    /// Comma-separated items.
    List,
}

impl SettingType {
    /// The WIT spelling: `string`, `integer`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Url => "url",
            Self::List => "list",
        }
    }
}

/// A subscription's settings that the adapter refuses, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin `{plugin}` ({adapter}) refuses these settings: {}", problems.join("; "))]
pub struct SettingsError {
    /// The plugin name the subscription uses.
    pub plugin: String,
    /// The manifest's name and version, such as `slack 1.0.0`.
    pub adapter: String,
    /// One sentence per problem, each naming the setting.
    pub problems: Vec<String>,
}

/// Whether `name` may name a setting: a lower-case letter, then lower-case letters, digits
/// and `_`, at most 64 characters.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && name.len() <= MAX_SHORT
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Manifest {
    /// Checks the manifest itself when its plugin loads: names, sizes, duplicates, and that
    /// every default is a valid value. The error says what to fix in the adapter.
    pub fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.len() > MAX_SHORT {
            return Err(format!(
                "its manifest `name` must be 1 to {MAX_SHORT} characters"
            ));
        }
        if self.version.len() > MAX_SHORT || self.description.len() > MAX_DESCRIPTION {
            return Err(format!(
                "its manifest `version` must be at most {MAX_SHORT} characters and `description` {MAX_DESCRIPTION}"
            ));
        }
        if self.settings.len() > MAX_SETTINGS {
            return Err(format!(
                "its manifest declares {} settings; at most {MAX_SETTINGS} are allowed",
                self.settings.len()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.settings {
            let name = &s.name;
            if !valid_name(name) {
                return Err(format!(
                    "setting `{name}` in its manifest: names are a lower-case letter, then lower-case letters, digits and `_`, at most {MAX_SHORT} characters"
                ));
            }
            if !seen.insert(name.as_str()) {
                return Err(format!("its manifest declares setting `{name}` twice"));
            }
            if s.description.len() > MAX_DESCRIPTION
                || s.allowed.len() > MAX_ALLOWED
                || s.allowed.iter().any(|a| a.len() > MAX_SHORT * 4)
            {
                return Err(format!(
                    "setting `{name}` in its manifest: the description is over {MAX_DESCRIPTION} characters or the allowed values are too many or too long"
                ));
            }
            if s.required && s.default.is_some() {
                return Err(format!(
                    "setting `{name}` in its manifest is required and has a default; drop one of the two"
                ));
            }
            if let Some(default) = &s.default
                && let Err(reason) = check_value(s, default)
            {
                return Err(format!(
                    "setting `{name}` in its manifest: its default {reason}"
                ));
            }
        }
        Ok(())
    }

    /// `name version`, for messages.
    pub fn label(&self) -> String {
        if self.version.is_empty() {
            self.name.clone()
        } else {
            format!("{} {}", self.name, self.version)
        }
    }

    /// The settings declared secret.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.settings
            .iter()
            .filter(|s| s.secret)
            .map(|s| s.name.as_str())
    }

    /// Checks a subscription's settings, for plugin `plugin`: every name is declared, every
    /// required setting is set, every value parses as its type and is an allowed one. A
    /// blank value counts as unset. Values of secret settings never appear in the error.
    pub fn check_settings<'a>(
        &self,
        plugin: &str,
        settings: impl IntoIterator<Item = (&'a String, &'a String)> + Clone,
    ) -> Result<(), SettingsError> {
        let mut problems = Vec::new();
        for (name, value) in settings.clone() {
            let Some(spec) = self.settings.iter().find(|s| &s.name == name) else {
                problems.push(self.unknown(name));
                continue;
            };
            if value.trim().is_empty() {
                continue;
            }
            if let Err(reason) = check_value(spec, value) {
                let shown = if spec.secret {
                    "its value".to_owned()
                } else {
                    format!("`{}`", crate::text::truncate(value, 100))
                };
                problems.push(format!("setting `{name}`: {shown} {reason}"));
            }
        }
        for spec in self.settings.iter().filter(|s| s.required) {
            let set = settings
                .clone()
                .into_iter()
                .any(|(k, v)| k == &spec.name && !v.trim().is_empty());
            if !set {
                let about = if spec.description.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", spec.description.trim_end_matches('.'))
                };
                problems.push(format!(
                    "setting `{}` is required and missing{about}",
                    spec.name
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsError {
                plugin: plugin.to_owned(),
                adapter: self.label(),
                problems,
            })
        }
    }

    /// The settings an adapter call gets: the subscription's, plus the default of every
    /// declared setting it leaves unset or blank, sorted by key.
    pub fn with_defaults(&self, settings: &[(String, String)]) -> Vec<(String, String)> {
        let mut all: BTreeMap<String, String> = settings
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .cloned()
            .collect();
        for spec in &self.settings {
            if let Some(default) = &spec.default {
                all.entry(spec.name.clone())
                    .or_insert_with(|| default.clone());
            }
        }
        for (name, value) in settings {
            all.entry(name.clone()).or_insert_with(|| value.clone());
        }
        all.into_iter().collect()
    }

    fn unknown(&self, name: &str) -> String {
        let names: Vec<&str> = self.settings.iter().map(|s| s.name.as_str()).collect();
        let hint = match did_you_mean(name, &names) {
            Some(best) => format!("; did you mean `{best}`?"),
            None if names.is_empty() => "; it takes no settings".to_owned(),
            None => format!("; it takes {}", quoted_list(&names)),
        };
        format!("`{name}` is not one of its settings{hint}")
    }
}

/// The declared name closest to `typo`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(typo: &str, names: &[&'a str]) -> Option<&'a str> {
    let typo = typo.to_ascii_lowercase();
    names
        .iter()
        .map(|n| (strsim::jaro_winkler(&typo, n), *n))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks one non-blank value against its setting's type and allowed values; the error
/// completes a sentence that starts with the value.
fn check_value(spec: &SettingSpec, value: &str) -> Result<(), String> {
    let parses = match spec.kind {
        SettingType::String | SettingType::List => true,
        SettingType::Integer => value.trim().parse::<i64>().is_ok(),
        SettingType::Number => value.trim().parse::<f64>().is_ok_and(f64::is_finite),
        SettingType::Boolean => matches!(value.trim(), "true" | "false"),
        SettingType::Url => crate::outbound::parse_target_url(value.trim()).is_ok(),
    };
    if !parses {
        let expected = match spec.kind {
            SettingType::Integer => "a whole number such as `42`",
            SettingType::Number => "a finite number such as `0.5`",
            SettingType::Boolean => "`true` or `false`",
            SettingType::Url => "an absolute http:// or https:// URL",
            SettingType::String | SettingType::List => "text",
        };
        return Err(format!("is not {expected}"));
    }
    if spec.allowed.is_empty() {
        return Ok(());
    }
    let allowed: Vec<&str> = spec.allowed.iter().map(String::as_str).collect();
    let items: Vec<&str> = if spec.kind == SettingType::List {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    } else {
        vec![value.trim()]
    };
    match items.iter().find(|item| !allowed.contains(item)) {
        None => Ok(()),
        Some(bad) => {
            let hint = did_you_mean(bad, &allowed)
                .map(|best| format!(" (did you mean `{best}`?)"))
                .unwrap_or_default();
            let what = if spec.kind == SettingType::List {
                format!("has item `{bad}`, which is")
            } else {
                "is".to_owned()
            };
            Err(format!("{what} not one of {}{hint}", quoted_list(&allowed)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(name: &str, kind: SettingType) -> SettingSpec {
        SettingSpec {
            name: name.into(),
            kind,
            required: false,
            secret: false,
            default: None,
            allowed: Vec::new(),
            description: String::new(),
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            name: "pagerduty".into(),
            version: "1.0.0".into(),
            description: "PagerDuty Events v2".into(),
            settings: vec![
                SettingSpec {
                    required: true,
                    secret: true,
                    description: "The integration key.".into(),
                    ..setting("routing_key", SettingType::String)
                },
                SettingSpec {
                    default: Some("warning".into()),
                    allowed: vec!["critical".into(), "error".into(), "warning".into()],
                    ..setting("default_severity", SettingType::String)
                },
                setting("resolve_on", SettingType::List),
                setting("max_fields", SettingType::Integer),
                setting("sample", SettingType::Number),
                setting("verbose", SettingType::Boolean),
                setting("link", SettingType::Url),
                SettingSpec {
                    allowed: vec!["host".into(), "region".into()],
                    ..setting("dedup_fields", SettingType::List)
                },
            ],
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_good_manifest_and_good_settings_pass() {
        let m = manifest();
        m.check().unwrap();
        let ok = map(&[
            ("routing_key", "R0UT"),
            ("default_severity", "error"),
            ("max_fields", "-3"),
            ("sample", "0.25"),
            ("verbose", "true"),
            ("link", "https://example.com/x"),
            ("dedup_fields", "host, region"),
            ("resolve_on", ""),
        ]);
        m.check_settings("pd", &ok).unwrap();
    }

    #[test]
    fn a_typo_gets_a_suggestion_and_a_missing_required_setting_is_named() {
        let err = manifest()
            .check_settings("pd", &map(&[("default_sevrity", "error")]))
            .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with("plugin `pd` (pagerduty 1.0.0) refuses"),
            "{text}"
        );
        assert!(
            text.contains(
                "`default_sevrity` is not one of its settings; did you mean `default_severity`?"
            ),
            "{text}"
        );
        assert!(
            text.contains("setting `routing_key` is required and missing (The integration key)"),
            "{text}"
        );
    }

    #[test]
    fn a_name_far_from_every_setting_lists_them() {
        let m = Manifest {
            settings: vec![setting("channel", SettingType::String)],
            ..manifest()
        };
        let err = m.check_settings("s", &map(&[("zzz", "1")])).unwrap_err();
        assert!(err.to_string().contains("it takes `channel`"), "{err}");
        let none = Manifest {
            settings: vec![],
            ..manifest()
        };
        let err = none.check_settings("s", &map(&[("x", "1")])).unwrap_err();
        assert!(err.to_string().contains("it takes no settings"), "{err}");
    }

    #[test]
    fn values_are_checked_by_type_and_secret_values_are_not_echoed() {
        let m = manifest();
        let bad = |k: &str, v: &str| {
            let mut settings = map(&[("routing_key", "R0UT")]);
            settings.insert(k.into(), v.into());
            m.check_settings("pd", &settings).unwrap_err().problems[0].clone()
        };
        assert_eq!(
            bad("max_fields", "ten"),
            "setting `max_fields`: `ten` is not a whole number such as `42`"
        );
        assert!(bad("sample", "inf").contains("is not a finite number"));
        assert!(bad("verbose", "yes").contains("is not `true` or `false`"));
        assert!(bad("link", "ftp://x").contains("http:// or https://"));
        assert_eq!(
            bad("default_severity", "warn"),
            "setting `default_severity`: `warn` is not one of `critical`, `error`, `warning` (did you mean `warning`?)"
        );
        assert!(bad("dedup_fields", "host,zone").contains("has item `zone`, which is not one of"),);
        let secret = Manifest {
            settings: vec![SettingSpec {
                secret: true,
                ..setting("api_port", SettingType::Integer)
            }],
            ..manifest()
        };
        let err = secret
            .check_settings("x", &map(&[("api_port", "hunter2")]))
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("its value is not a whole number"));
    }

    #[test]
    fn defaults_fill_unset_and_blank_settings() {
        let m = manifest();
        let given = vec![
            ("routing_key".to_string(), "R".to_string()),
            ("default_severity".to_string(), " ".to_string()),
        ];
        assert_eq!(
            m.with_defaults(&given),
            vec![
                ("default_severity".to_string(), "warning".to_string()),
                ("routing_key".to_string(), "R".to_string()),
            ]
        );
        assert_eq!(m.secret_names().collect::<Vec<_>>(), ["routing_key"]);
    }

    #[test]
    fn bad_manifests_say_what_to_fix() {
        let with = |s: SettingSpec| Manifest {
            settings: vec![s],
            ..manifest()
        };
        let err = |m: Manifest| m.check().unwrap_err();
        assert!(err(with(setting("Channel", SettingType::String))).contains("lower-case"));
        assert!(
            err(with(SettingSpec {
                default: Some("x".into()),
                ..setting("n", SettingType::Integer)
            }))
            .contains("setting `n` in its manifest: its default is not a whole number")
        );
        assert!(
            err(with(SettingSpec {
                required: true,
                default: Some("1".into()),
                ..setting("n", SettingType::Integer)
            }))
            .contains("required and has a default")
        );
        let twice = Manifest {
            settings: vec![
                setting("a", SettingType::String),
                setting("a", SettingType::Url),
            ],
            ..manifest()
        };
        assert!(err(twice).contains("twice"));
        assert!(
            err(Manifest {
                name: " ".into(),
                ..manifest()
            })
            .contains("`name`")
        );
    }
}
