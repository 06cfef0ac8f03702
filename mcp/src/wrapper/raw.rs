//! Tool-call arguments kept as the client sent them (raw JSON), so that the common call, whose
//! preparation changes nothing, is forwarded without building a JSON tree and serialising it
//! again. Part of the wrapper: [`prepare`] is [`prepare_arguments`] for
//! either form, and falls back to parsing only when stripping `approved` or coercion has work to
//! do, and only when parsing keeps every number in the arguments as it is (a parsed value holds
//! numbers as 64-bit integers or doubles): arguments with a number no double holds are
//! forwarded as sent, less a top-level `approved`.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::exact::has_inexact_number;
use super::{APPROVED_FIELD, ArgumentError, declares_property, may_convert, prepare_arguments};

/// How deep raw arguments may nest (the arguments object itself is level 1): the most that
/// serde_json parses (its recursion limit is 128), so that arguments accepted raw can always be
/// parsed when coercion needs them.
pub const MAX_NESTING: usize = 127;

/// A tool call's arguments: a JSON tree, or raw JSON text already checked to be an object.
#[derive(Debug, Clone)]
pub enum Arguments {
    /// Parsed (from a built-in caller, or after preparation changed something).
    Value(Value),
    /// As received.
    Raw(RawArguments),
}

impl From<Value> for Arguments {
    fn from(value: Value) -> Self {
        Arguments::Value(value)
    }
}

impl Serialize for Arguments {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Arguments::Value(value) => value.serialize(serializer),
            Arguments::Raw(raw) => raw.raw.serialize(serializer),
        }
    }
}

impl Arguments {
    /// The arguments as a JSON tree (parsed if raw).
    pub fn into_value(self) -> Value {
        match self {
            Arguments::Value(value) => value,
            Arguments::Raw(raw) => raw.to_value(),
        }
    }
}

/// Raw JSON arguments: an object, at most [`MAX_NESTING`] levels deep.
#[derive(Debug, Clone)]
pub struct RawArguments {
    raw: Box<RawValue>,
    /// Whether `approved` is one of its top-level keys.
    has_approved: bool,
}

impl RawArguments {
    /// Checks raw arguments: `null` is read as no arguments (`{}`); anything but an object, or an
    /// object nested deeper than [`MAX_NESTING`], is an error.
    pub fn new(raw: &RawValue) -> Result<Self, ArgumentError> {
        let text = raw.get();
        match raw_kind(text) {
            "null" => return Ok(Self::empty()),
            "an object" => {}
            kind => return Err(ArgumentError::NotAnObject { kind }),
        }
        if nesting_exceeds(text, MAX_NESTING) {
            return Err(ArgumentError::TooDeep { limit: MAX_NESTING });
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let has_approved =
            de.deserialize_map(TopLevelKeys)
                .map_err(|_| ArgumentError::NotAnObject {
                    kind: "invalid JSON",
                })?;
        Ok(RawArguments {
            raw: raw.to_owned(),
            has_approved,
        })
    }

    /// No arguments: `{}`.
    pub fn empty() -> Self {
        RawArguments {
            raw: RawValue::from_string("{}".to_owned()).expect("`{}` is JSON"),
            has_approved: false,
        }
    }

    /// The raw JSON text.
    pub fn get(&self) -> &str {
        self.raw.get()
    }

    fn to_value(&self) -> Value {
        // Checked in `new`: an object within serde_json's recursion limit parses, unless it
        // holds a number beyond a double's range (`prepare` forwards those raw).
        serde_json::from_str(self.raw.get()).unwrap_or_else(|_| Value::Object(Map::new()))
    }

    /// These arguments without their top-level `name` members; every other member's value is
    /// kept as its exact text.
    fn without(self, name: &str) -> Self {
        let mut de = serde_json::Deserializer::from_str(self.raw.get());
        // Checked in `new`: an object, so its members read.
        let Ok(members) = de.deserialize_map(Members) else {
            return self;
        };
        let mut text = String::with_capacity(self.raw.get().len());
        text.push('{');
        for (key, value) in members.iter().filter(|(key, _)| key != name) {
            if text.len() > 1 {
                text.push(',');
            }
            text.push_str(&serde_json::to_string(key).unwrap_or_default());
            text.push(':');
            text.push_str(value.get());
        }
        text.push('}');
        match RawValue::from_string(text) {
            Ok(raw) => RawArguments {
                raw,
                has_approved: self.has_approved && name != APPROVED_FIELD,
            },
            Err(_) => self,
        }
    }
}

/// [`prepare_arguments`] for either form: raw arguments stay raw when preparing them changes
/// nothing (no `approved` to strip, a schema under which nothing converts); otherwise they are
/// parsed and prepared.
pub fn prepare(schema: &Value, args: Arguments) -> Result<Arguments, ArgumentError> {
    prepare_with(schema, SchemaTraits::of(schema), args)
}

/// What preparing arguments under one schema can do, worked out once per tool (when its
/// server's tool list is read) rather than on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaTraits {
    /// Coercion could convert some member (see `may_convert`).
    may_convert: bool,
    /// The schema declares an `approved` property, so a top-level `approved` is kept.
    declares_approved: bool,
}

impl SchemaTraits {
    /// The traits of `schema` (a tool's `inputSchema`).
    pub fn of(schema: &Value) -> Self {
        SchemaTraits {
            may_convert: may_convert(schema),
            declares_approved: declares_property(schema, APPROVED_FIELD),
        }
    }
}

/// [`prepare`] with the schema's traits already worked out; `traits` must be
/// `SchemaTraits::of(schema)`.
pub fn prepare_with(
    schema: &Value,
    traits: SchemaTraits,
    args: Arguments,
) -> Result<Arguments, ArgumentError> {
    let raw = match args {
        Arguments::Value(value) => return prepare_arguments(schema, value).map(Arguments::Value),
        Arguments::Raw(raw) => raw,
    };
    let strips = raw.has_approved && !traits.declares_approved;
    if !strips && !traits.may_convert {
        return Ok(Arguments::Raw(raw));
    }
    if has_inexact_number(raw.get()) {
        // Parsing would change a number: forwarded as sent, unconverted, less `approved`.
        return Ok(Arguments::Raw(if strips {
            raw.without(APPROVED_FIELD)
        } else {
            raw
        }));
    }
    prepare_arguments(schema, raw.to_value()).map(Arguments::Value)
}

/// Reads an object's top-level members, each value as its raw text.
struct Members;

impl<'de> Visitor<'de> for Members {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry()? {
            members.push(member);
        }
        Ok(members)
    }
}

/// [`result_is_error`](super::result_is_error) on a result kept as raw JSON: whether its
/// top-level `isError` is `true` (the last one, if it occurs twice, as when parsed).
/// Unparseable JSON is not an error result.
pub fn raw_result_is_error(result: &RawValue) -> bool {
    let text = result.get();
    if let Some(last) = trailing_is_error(text) {
        return last;
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(IsErrorMember).unwrap_or(false)
}

/// The common case without a parse: a result whose last member is `"isError": true|false`.
/// `None` when the text does not end so.
///
/// Sound for valid JSON: the final `}` closes the root object, so the literal before it is the
/// root's last value, and a `"isError"` after `{` or `,` is a whole key (an escaped quote inside
/// a longer string would have a backslash before it, and a string closing there would leave
/// `isError"` bare, which is not JSON).
fn trailing_is_error(text: &str) -> Option<bool> {
    let rest = text.trim_end().strip_suffix('}')?.trim_end();
    let (rest, value) = match rest.strip_suffix("true") {
        Some(rest) => (rest, true),
        None => (rest.strip_suffix("false")?, false),
    };
    let rest = rest.trim_end().strip_suffix(':')?.trim_end();
    let rest = rest.strip_suffix("\"isError\"")?.trim_end();
    (rest.ends_with(',') || rest.ends_with('{')).then_some(value)
}

/// Walks an object's top-level members (values skipped unparsed): whether the last `isError`
/// is `true`.
struct IsErrorMember;

impl<'de> Visitor<'de> for IsErrorMember {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut is_error = false;
        while let Some(key) = map.next_key_seed(IsKey("isError"))? {
            if key {
                let value: &RawValue = map.next_value()?;
                is_error = value.get() == "true";
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(is_error)
    }
}

/// The JSON type of valid JSON text, from its first byte (as [`json_kind`](super::json_kind)).
fn raw_kind(text: &str) -> &'static str {
    match text.trim_start().bytes().next() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Whether valid JSON text nests arrays and objects deeper than `limit`, in one pass over its
/// bytes (brackets inside strings do not count).
fn nesting_exceeds(text: &str, limit: usize) -> bool {
    let mut depth = 0usize;
    for (_, byte) in outside_strings(text) {
        match byte {
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The bytes of valid JSON text that are outside its strings, with their offsets: a string's
/// quotes and everything between them (escaped quotes included) are skipped.
pub(super) fn outside_strings(text: &str) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut in_string = false;
    let mut escaped = false;
    text.bytes().enumerate().filter(move |&(_, byte)| {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            false
        } else {
            in_string = byte == b'"';
            !in_string
        }
    })
}

/// Walks an object's top-level keys (values are skipped unparsed): whether `approved` is one.
struct TopLevelKeys;

impl<'de> Visitor<'de> for TopLevelKeys {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(is_approved) = map.next_key_seed(IsKey(APPROVED_FIELD))? {
            found |= is_approved;
            map.next_value::<IgnoredAny>()?;
        }
        Ok(found)
    }
}

/// A key, read as whether it is this one (escapes decoded, nothing allocated for plain keys).
struct IsKey(&'static str);

impl<'de> DeserializeSeed<'de> for IsKey {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for IsKey {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}
