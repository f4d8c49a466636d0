//! How a setting is declared: the `settings!` macro, the [`Settings`] and
//! [`Show`] traits it implements, the [`Setting`] descriptions it produces,
//! the [`Validator`] that parses raw values (reporting each bad one as a
//! [`ConfigError`] with its [`Origin`]), and the parsers the declarations
//! share ([`duration`], [`positive`], [`parse_path`], [`auto_or`] …).
//!
//! This is the low level of configuration: it knows no subsystem. Each
//! subsystem declares its settings with it beside its code
//! (`audio/settings.rs`, `eyes/settings.rs`, `logs/settings.rs`,
//! `bus/settings.rs`); the `config` module assembles them into the server's
//! `Config` and reads the sources (file, environment, flags).

use std::{collections::BTreeMap, fmt, net::SocketAddr, path::PathBuf, time::Duration};

/// Declares a struct of settings, and implements [`Settings`] for it.
///
/// Each field is one of:
/// - `setting { key, env, default | unset, [type,] parse [, show] [, switch] [, secret] }`:
///   a setting. Its `///` comment is its help text (`--help`, `--print-config`,
///   `docs/settings.md`); `default` is the embedded default as text, or
///   `unset` the field's value when no source sets it; `parse` turns the
///   (trimmed) text into the field's type or says what is wrong; `show`
///   overrides how [`Show`] prints it back; `type` overrides the type's name
///   in the documentation; `switch: true` lets the flag go without a value;
///   `secret: true` keeps the value out of `--print-config` and `--help`.
/// - `group {}`: a nested struct of settings (anything implementing [`Settings`]).
/// - `fixed { expr }`: not a setting: always `expr` (tests may change it).
///
/// Settings are read, reported, printed and documented in declaration order.
macro_rules! settings {
    // The metadata of one setting, as an associated constant named after the field.
    (@meta $field:ident, $ty:ty, [$($doc:literal),*], setting {
        key: $key:literal, env: $env:literal,
        $(default: $default:literal,)? $(unset: $unset:expr,)?
        $(type: $tyname:literal,)?
        parse: $parse:expr
        $(, show: $show:expr)? $(, switch: $switch:literal)? $(, secret: $secret:literal)? $(,)?
    }) => {
        const $field: &'static $crate::declare::Setting = &$crate::declare::Setting {
            key: $key,
            env: $env,
            default: $crate::declare::settings!(@some $($default)?),
            doc: concat!($($doc),*),
            type_name: $crate::declare::settings!(@or [$($tyname)?] (<$ty as $crate::declare::Show>::TYPE)),
            switch: $crate::declare::settings!(@or [$($switch)?] false),
            secret: $crate::declare::settings!(@or [$($secret)?] false),
        };
    };
    (@meta $($other:tt)*) => {};

    (@describe $out:ident, $field:ident, $ty:ty, setting $body:tt) => {
        $out.push(Self::$field)
    };
    (@describe $out:ident, $field:ident, $ty:ty, group $body:tt) => {
        <$ty as $crate::declare::Settings>::describe($out)
    };
    (@describe $out:ident, $field:ident, $ty:ty, fixed $body:tt) => {
        ()
    };

    (@resolve $v:ident, $field:ident, $ty:ty, setting {
        key: $key:literal, env: $env:literal,
        $(default: $default:literal,)? $(unset: $unset:expr,)?
        $(type: $tyname:literal,)?
        parse: $parse:expr
        $(, show: $show:expr)? $(, switch: $switch:literal)? $(, secret: $secret:literal)? $(,)?
    }) => {
        $v.leaf::<$ty, _, _>(Self::$field, $parse, || $crate::declare::settings!(@unset $($unset)?))
    };
    (@resolve $v:ident, $field:ident, $ty:ty, group $body:tt) => {
        <$ty as $crate::declare::Settings>::resolve($v)
    };
    (@resolve $v:ident, $field:ident, $ty:ty, fixed { $value:expr }) => {
        Some($value)
    };

    (@print $this:tt, $out:ident, $field:ident, $ty:ty, setting {
        key: $key:literal, env: $env:literal,
        $(default: $default:literal,)? $(unset: $unset:expr,)?
        $(type: $tyname:literal,)?
        parse: $parse:expr
        $(, show: $show:expr)? $(, switch: $switch:literal)? $(, secret: $secret:literal)? $(,)?
    }) => {
        $out.push((Self::$field, $crate::declare::settings!(@show [$($show)?] &$this.$field)))
    };
    (@print $this:tt, $out:ident, $field:ident, $ty:ty, group $body:tt) => {
        $crate::declare::Settings::print(&$this.$field, $out)
    };
    (@print $this:tt, $out:ident, $field:ident, $ty:ty, fixed $body:tt) => {
        ()
    };

    (@some) => { None };
    (@some $value:literal) => { Some($value) };
    (@or [] $fallback:tt) => { $fallback };
    (@or [$value:literal] $fallback:tt) => { $value };
    (@unset) => { unreachable!("a setting with a default always has a value") };
    (@unset $value:expr) => { $value };
    (@show [] $value:expr) => { $crate::declare::Show::show($value) };
    (@show [$show:expr] $value:expr) => { ($show)($value) };

    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $fvis:vis $field:ident : $ty:ty = $kind:ident $body:tt
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $(
                $(#[doc = $doc])*
                $fvis $field: $ty,
            )*
        }

        // Each setting's metadata, named after its field.
        #[allow(non_upper_case_globals)]
        impl $name {
            $( $crate::declare::settings!(@meta $field, $ty, [$($doc),*], $kind $body); )*
        }

        impl $crate::declare::Settings for $name {
            fn describe(out: &mut Vec<&'static $crate::declare::Setting>) {
                $( $crate::declare::settings!(@describe out, $field, $ty, $kind $body); )*
            }

            fn resolve(v: &mut $crate::declare::Validator<'_>) -> Option<Self> {
                $( let $field = $crate::declare::settings!(@resolve v, $field, $ty, $kind $body); )*
                Some(Self { $( $field: $field?, )* })
            }

            fn print(&self, out: &mut Vec<(&'static $crate::declare::Setting, Option<String>)>) {
                $( $crate::declare::settings!(@print self, out, $field, $ty, $kind $body); )*
            }
        }
    };
}
pub(crate) use settings;

/// One setting's description: what `--help`, the file's keys, the error
/// messages, `--print-config` and `docs/settings.md` are made of.
#[derive(Debug)]
pub struct Setting {
    /// TOML key; the flag is this with dashes.
    pub key: &'static str,
    /// Environment variable (`CANTINA_` + the key in capitals).
    pub env: &'static str,
    /// The default, as text; `None` when unset by default.
    pub default: Option<&'static str>,
    /// The declaration's `///` comment, as written; see [`Setting::help`].
    pub doc: &'static str,
    /// What kind of value it takes, for the documentation: `duration`, `path` …
    pub type_name: &'static str,
    /// Whether the flag may go without a value (`--allow-insecure-remote`).
    pub switch: bool,
    /// Whether the value is kept out of `--print-config` and `--help`.
    pub secret: bool,
}

impl Setting {
    /// One line for `--help`, `--print-config` and the documentation.
    pub fn help(&self) -> &'static str {
        self.doc.trim()
    }

    /// The command-line flag, `--` and the key with dashes.
    pub fn flag(&self) -> String {
        format!("--{}", flag_name(self.key))
    }
}

/// A struct of settings, declared with the `settings!` macro.
pub trait Settings: Sized {
    /// Appends the description of each setting, in declaration order.
    fn describe(out: &mut Vec<&'static Setting>);

    /// Parses each setting from the merged raw values, reporting every
    /// problem to `v`; `None` when any was bad.
    fn resolve(v: &mut Validator<'_>) -> Option<Self>;

    /// Appends each setting with its value as TOML (`None`: unset), in
    /// declaration order.
    fn print(&self, out: &mut Vec<(&'static Setting, Option<String>)>);
}

/// A setting's type as `--print-config` prints it: TOML that reads back as
/// the same value.
pub trait Show {
    /// What kind of value it is, for the documentation.
    const TYPE: &'static str;

    /// The value as a TOML value; `None` when unset.
    fn show(&self) -> Option<String>;
}

/// `text` as a TOML string.
pub fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

impl Show for String {
    const TYPE: &'static str = "text";
    fn show(&self) -> Option<String> {
        Some(quote(self))
    }
}

impl Show for PathBuf {
    const TYPE: &'static str = "path";
    fn show(&self) -> Option<String> {
        Some(quote(&self.display().to_string()))
    }
}

impl Show for SocketAddr {
    const TYPE: &'static str = "address";
    fn show(&self) -> Option<String> {
        Some(quote(&self.to_string()))
    }
}

impl Show for Duration {
    const TYPE: &'static str = "duration";
    fn show(&self) -> Option<String> {
        Some(quote(&humantime::format_duration(*self).to_string()))
    }
}

/// `Show` for types whose TOML form is their `Display`.
macro_rules! show_as_displayed {
    ($( $ty:ty => $name:literal ),* $(,)?) => {
        $(
            impl Show for $ty {
                const TYPE: &'static str = $name;
                fn show(&self) -> Option<String> {
                    Some(self.to_string())
                }
            }
        )*
    };
}

show_as_displayed! {
    bool => "boolean",
    usize => "integer",
    u32 => "integer",
    u64 => "integer",
    f32 => "number",
}

impl<T: Show> Show for Option<T> {
    const TYPE: &'static str = T::TYPE;
    fn show(&self) -> Option<String> {
        self.as_ref().and_then(Show::show)
    }
}

/// Parses each raw value, keeping every failure.
pub struct Validator<'a> {
    raw: &'a BTreeMap<&'static str, (String, Origin)>,
    errors: &'a mut Vec<ConfigError>,
}

impl<'a> Validator<'a> {
    /// A validator of the merged raw values (by key, with their origin) that
    /// reports each problem to `errors`.
    pub fn new(
        raw: &'a BTreeMap<&'static str, (String, Origin)>,
        errors: &'a mut Vec<ConfigError>,
    ) -> Self {
        Self { raw, errors }
    }

    /// The value of `setting`: parsed from its raw text, or `unset()` when no
    /// source gives it; `None`, and the problem reported, when it is bad.
    pub fn leaf<T, P, U>(&mut self, setting: &'static Setting, parse: P, unset: U) -> Option<T>
    where
        P: FnOnce(&str) -> Result<T, String>,
        U: FnOnce() -> T,
    {
        let Some((value, _)) = self.raw.get(setting.key) else {
            return Some(unset());
        };
        parse(value.trim())
            .map_err(|problem| self.report(setting.key, problem))
            .ok()
    }

    /// Reports a problem with the value of `key`, which some source gave.
    pub fn report(&mut self, key: &'static str, problem: String) {
        let (value, origin) = self.raw[key].clone();
        self.errors.push(ConfigError {
            key: key.into(),
            value: Some(value),
            origin,
            problem,
        });
    }
}

/// The embedded defaults of a struct of settings (settings without a default
/// take their `unset` value).
pub fn defaults<T: Settings>() -> T {
    let mut described = Vec::new();
    T::describe(&mut described);
    let raw = described
        .iter()
        .filter_map(|s| Some((s.key, (s.default?.to_string(), Origin::Default))))
        .collect();
    let mut errors = Vec::new();
    T::resolve(&mut Validator {
        raw: &raw,
        errors: &mut errors,
    })
    .expect("the embedded defaults are valid")
}

/// Where a setting's value came from, for error messages and `--print-config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The embedded default.
    Default,
    /// The configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => f.write_str(var),
            Origin::Flag(flag) => f.write_str(flag),
        }
    }
}

/// One bad setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting's key (or the file, for file-level problems).
    pub key: String,
    /// The offending value, when there is one.
    pub value: Option<String>,
    /// Where it came from.
    pub origin: Origin,
    /// What is wrong and what to do about it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(
                f,
                "{} = {:?} (from {}): {}",
                self.key, value, self.origin, self.problem
            ),
            None => write!(f, "{} (from {}): {}", self.key, self.origin, self.problem),
        }
    }
}

/// The flag's name for `key`: the key with dashes.
pub fn flag_name(key: &str) -> String {
    key.replace('_', "-")
}

/// The per-user data folder (`~/.local/share/cantina` on Linux).
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("cantina"))
        .unwrap_or_else(|| PathBuf::from("cantina-data"))
}

/// A path; empty means none.
pub fn parse_path(s: &str) -> Result<Option<PathBuf>, String> {
    Ok((!s.is_empty()).then(|| PathBuf::from(s)))
}

/// A duration longer than zero, with a unit (`500ms`, `5s`, `2m`).
pub fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s, false)
}

/// A duration with a unit, zero allowed (it means "never" or "at once").
pub fn duration_or_zero(s: &str) -> Result<Duration, String> {
    parse_duration(s, true)
}

fn parse_duration(s: &str, zero_ok: bool) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if zero_ok || !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero".into()),
        Err(_) => Err("not a duration; use a number with a unit, such as 500ms, 5s or 2m".into()),
    }
}

/// `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("use true or false".into()),
    }
}

/// A whole number, zero allowed.
pub fn whole(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .map_err(|_| "use a whole number".to_string())
}

/// A whole number of at least 1.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("use a whole number of at least 1".to_string()),
    }
}

/// `auto` (`None`) or a whole number of `what` from `low` to `high`.
pub fn auto_or(
    low: u32,
    high: u32,
    what: &'static str,
) -> impl Fn(&str) -> Result<Option<u32>, String> {
    move |s: &str| {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(None);
        }
        match s.parse::<u32>() {
            Ok(n) if (low..=high).contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "use `auto` or a whole number of {what} from {low} to {high}"
            )),
        }
    }
}

/// Prints what [`auto_or`] reads: `auto` for `None`.
pub fn show_auto(value: &Option<u32>) -> Option<String> {
    Some(quote(&value.map_or("auto".to_string(), |n| n.to_string())))
}

/// A number of bytes, optionally with a unit (`KiB`, `MiB`, `GiB`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(
                "use a number of bytes, optionally with KiB, MiB or GiB, such as 4MiB".into(),
            );
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| {
            "use a number of bytes, optionally with KiB, MiB or GiB, such as 4MiB".into()
        })
}
