//! Typed settings: [`settings!`](crate::settings!) declares a struct once, and from it come
//! both the manifest's settings schema and the parsing of a subscription's settings.

use crate::Error;
use crate::bindings::{Setting, SettingType};

/// A settings struct, as [`settings!`](crate::settings!) writes it.
pub trait Settings: Sized {
    /// The settings schema the manifest carries.
    fn schema() -> Vec<Setting>;
    /// Parses a subscription's settings (sorted key/value pairs). The engine has already
    /// checked them against the schema, so an error here means a hand-made call.
    fn parse(pairs: &[(String, String)]) -> Result<Self, Error>;
}

/// An adapter without settings.
impl Settings for () {
    fn schema() -> Vec<Setting> {
        Vec::new()
    }

    fn parse(_pairs: &[(String, String)]) -> Result<Self, Error> {
        Ok(())
    }
}

/// A Rust type a setting can have, with its WIT setting type.
pub trait SettingValue: Sized {
    /// The type the manifest declares.
    const TYPE: SettingType;
    /// Whether a subscription must set it (when the declaration gives no default).
    const REQUIRED: bool;
    /// Parses the setting `name` from its text; `None` when it is unset or blank.
    fn from_text(name: &str, text: Option<&str>) -> Result<Self, Error>;
}

fn required<'a>(name: &str, text: Option<&'a str>) -> Result<&'a str, Error> {
    text.map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::new(format!("setting `{name}` is required")))
}

fn invalid(name: &str, expected: &str) -> Error {
    Error::new(format!("setting `{name}` must be {expected}"))
}

impl SettingValue for String {
    const TYPE: SettingType = SettingType::String;
    const REQUIRED: bool = true;
    fn from_text(name: &str, text: Option<&str>) -> Result<Self, Error> {
        required(name, text).map(str::to_owned)
    }
}

impl SettingValue for bool {
    const TYPE: SettingType = SettingType::Boolean;
    const REQUIRED: bool = true;
    fn from_text(name: &str, text: Option<&str>) -> Result<Self, Error> {
        match required(name, text)? {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(invalid(name, "`true` or `false`")),
        }
    }
}

macro_rules! integer_setting {
    ($($ty:ty),*) => {$(
        impl SettingValue for $ty {
            const TYPE: SettingType = SettingType::Integer;
            const REQUIRED: bool = true;
            fn from_text(name: &str, text: Option<&str>) -> Result<Self, Error> {
                required(name, text)?
                    .parse()
                    .map_err(|_| invalid(name, concat!("a whole number that fits ", stringify!($ty))))
            }
        }
    )*};
}

integer_setting!(i32, i64, u8, u16, u32, u64, usize);

impl SettingValue for f64 {
    const TYPE: SettingType = SettingType::Number;
    const REQUIRED: bool = true;
    fn from_text(name: &str, text: Option<&str>) -> Result<Self, Error> {
        required(name, text)?
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite())
            .ok_or_else(|| invalid(name, "a finite number"))
    }
}

/// A comma-separated list; unset means empty, so it is never required.
impl SettingValue for Vec<String> {
    const TYPE: SettingType = SettingType::List;
    const REQUIRED: bool = false;
    fn from_text(_name: &str, text: Option<&str>) -> Result<Self, Error> {
        Ok(text
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

/// An absolute `http://` or `https://` URL setting (the engine checks its form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url(pub String);

impl SettingValue for Url {
    const TYPE: SettingType = SettingType::Url;
    const REQUIRED: bool = true;
    fn from_text(name: &str, text: Option<&str>) -> Result<Self, Error> {
        let text = required(name, text)?;
        if text.starts_with("http://") || text.starts_with("https://") {
            Ok(Self(text.to_owned()))
        } else {
            Err(invalid(name, "an http:// or https:// URL"))
        }
    }
}

/// Any setting type, made optional.
impl<T: SettingValue> SettingValue for Option<T> {
    const TYPE: SettingType = T::TYPE;
    const REQUIRED: bool = false;
    fn from_text(name: &str, text: Option<&str>) -> Result<Self, Error> {
        match text.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(text) => T::from_text(name, Some(text)).map(Some),
        }
    }
}

/// The text of setting `name` in `pairs`, or `default` when it is unset or blank.
#[doc(hidden)]
pub fn lookup(pairs: &[(String, String)], name: &str, default: Option<String>) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .or(default)
}

/// Joins a field's doc-comment lines into a setting description.
#[doc(hidden)]
pub fn description(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Declares an adapter's settings as a struct. Each field becomes one setting of the
/// manifest: its name is the field's name, its type comes from the field's Rust type, its
/// description from the doc comment. A field is required unless its type is an `Option`
/// or a `Vec<String>` (a comma-separated list) or it has a default (`= value`).
///
/// | Rust type | Setting type |
/// |---|---|
/// | `String` | `string` |
/// | `i32`, `i64`, `u8`, `u16`, `u32`, `u64`, `usize` | `integer` |
/// | `f64` | `number` |
/// | `bool` | `boolean` |
/// | [`Url`] | `url` |
/// | `Vec<String>` | `list` |
/// | `Option<T>` | as `T`, optional |
///
/// Attributes: `#[secret]` marks a credential (the engine never shows its value back);
/// `#[one_of("a", "b")]` lists the only values accepted (for a list, the only items).
///
/// ```
/// wasmhook_adapter::settings! {
///     /// PagerDuty's settings.
///     pub struct PagerDuty {
///         /// The integration key of the PagerDuty service.
///         #[secret]
///         routing_key: String,
///         /// Event-type patterns that resolve the incident.
///         resolve_on: Vec<String>,
///         /// Used when the payload has no severity.
///         #[one_of("critical", "error", "warning", "info")]
///         default_severity: String = "warning",
///     }
/// }
/// # use wasmhook_adapter::Settings;
/// let s = PagerDuty::parse(&[("routing_key".into(), "R0UT".into())]).unwrap();
/// assert_eq!(s.default_severity, "warning");
/// assert!(s.resolve_on.is_empty());
/// assert_eq!(PagerDuty::schema().len(), 3);
/// ```
#[macro_export]
macro_rules! settings {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$($attr:tt)*])*
                $field:ident : $ty:ty $(= $default:expr)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis struct $name {
            $(
                #[allow(missing_docs)]
                pub $field: $ty,
            )*
        }

        impl $crate::Settings for $name {
            fn schema() -> ::std::vec::Vec<$crate::bindings::Setting> {
                ::std::vec![$(
                    $crate::bindings::Setting {
                        name: ::std::string::ToString::to_string(::std::stringify!($field)),
                        type_: <$ty as $crate::SettingValue>::TYPE,
                        required: <$ty as $crate::SettingValue>::REQUIRED
                            && $crate::__setting_default!($($default)?).is_none(),
                        secret: false $(|| $crate::__setting_secret!($($attr)*))*,
                        default: $crate::__setting_default!($($default)?),
                        allowed: {
                            #[allow(unused_mut)]
                            let mut allowed = ::std::vec::Vec::<::std::string::String>::new();
                            $(allowed.extend($crate::__setting_allowed!($($attr)*));)*
                            allowed
                        },
                        description: $crate::__private::description(
                            &[$($crate::__setting_doc!($($attr)*)),*]
                        ),
                    }
                ),*]
            }

            fn parse(
                pairs: &[(::std::string::String, ::std::string::String)],
            ) -> ::std::result::Result<Self, $crate::Error> {
                ::std::result::Result::Ok(Self {
                    $(
                        $field: {
                            let name = ::std::stringify!($field);
                            let text = $crate::__private::lookup(
                                pairs,
                                name,
                                $crate::__setting_default!($($default)?),
                            );
                            <$ty as $crate::SettingValue>::from_text(name, text.as_deref())?
                        },
                    )*
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::settings! {
        /// Every kind of setting.
        pub struct All {
            /// A required string.
            /// Second line.
            name: String,
            count: u32 = 3,
            ratio: Option<f64>,
            on: bool = false,
            #[secret]
            token: Option<String>,
            #[one_of("a", "b")]
            pick: String = "a",
            items: Vec<String>,
            link: Option<Url>,
        }
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_schema_follows_the_declaration() {
        let schema = All::schema();
        let names: Vec<&str> = schema.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "name", "count", "ratio", "on", "token", "pick", "items", "link"
            ]
        );
        let by = |n: &str| schema.iter().find(|s| s.name == n).expect("declared");
        assert!(by("name").required);
        assert_eq!(by("name").description, "A required string. Second line.");
        assert!(!by("count").required);
        assert_eq!(by("count").default.as_deref(), Some("3"));
        assert_eq!(by("count").type_, SettingType::Integer);
        assert_eq!(by("ratio").type_, SettingType::Number);
        assert!(!by("ratio").required);
        assert!(by("token").secret && !by("name").secret);
        assert_eq!(by("pick").allowed, ["a", "b"]);
        assert_eq!(by("pick").default.as_deref(), Some("a"));
        assert_eq!(by("items").type_, SettingType::List);
        assert_eq!(by("link").type_, SettingType::Url);
    }

    #[test]
    fn parsing_applies_defaults_and_types() {
        let all = All::parse(&pairs(&[
            ("name", " web "),
            ("ratio", "0.5"),
            ("items", "a, b,,c"),
            ("on", "true"),
        ]))
        .expect("parses");
        assert_eq!(
            all,
            All {
                name: "web".into(),
                count: 3,
                ratio: Some(0.5),
                on: true,
                token: None,
                pick: "a".into(),
                items: vec!["a".into(), "b".into(), "c".into()],
                link: None,
            }
        );
        let missing = All::parse(&pairs(&[("count", "3")])).unwrap_err();
        assert_eq!(missing.message(), "setting `name` is required");
        let bad = All::parse(&pairs(&[("name", "x"), ("count", "-1")])).unwrap_err();
        assert_eq!(
            bad.message(),
            "setting `count` must be a whole number that fits u32"
        );
    }
}
