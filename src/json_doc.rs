//! Arbitrary JSON documents for property tests: every number form (integers past 64 bits,
//! negative zero, exponents, shortest-form doubles, long fractions) and every string escape,
//! written as text, with a check that a parsed value is that document exactly.

use std::fmt::Write as _;

use proptest::prelude::*;
use serde_json::Value;

/// A document as written: numbers keep their text, strings their decoded content.
#[derive(Debug, Clone)]
pub(crate) enum Doc {
    Null,
    Bool(bool),
    /// The number's text, as written.
    Num(String),
    /// The content, and how it is escaped (see [`write_str`]).
    Str(String, u8),
    Arr(Vec<Doc>),
    /// Keys are distinct (a parsed object keeps one value per key).
    Obj(Vec<(String, u8, Doc)>),
}

/// JSON number texts of every form.
pub(crate) fn number() -> impl Strategy<Value = String> {
    let digits = |n| proptest::string::string_regex(&format!("[0-9]{{{n}}}")).expect("regex");
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        // Integers past 64 bits.
        ("-?[1-9][0-9]{19,40}").prop_map(|s| s),
        // Shortest-form doubles, as JavaScript and Python print them, plain and with an
        // exponent.
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        (0.0..1.0f64).prop_map(|f| format!("{f}")),
        Just("-0".to_owned()),
        Just("-0.0".to_owned()),
        Just("0".to_owned()),
        Just("1.5e3".to_owned()),
        Just("1E+2".to_owned()),
        Just("12345678901234567890123".to_owned()),
        Just("100000000000000000000".to_owned()),
        // Many digits, more than a double holds, with or without an exponent.
        (
            "-?(0|[1-9][0-9]{0,3})",
            digits("1,40"),
            "([eE][+-]?[0-9]{1,2})?"
        )
            .prop_map(|(i, f, e)| format!("{i}.{f}{e}")),
    ]
}

/// Strings with quotes, backslashes, controls, non-ASCII and characters outside the BMP.
fn text() -> impl Strategy<Value = String> {
    "(\\PC|[\"\\\\/\u{0}-\u{1f}\u{7f}\u{2028}\u{1F600}\u{10FFFF}]){0,12}"
}

/// A document up to a few levels deep and some members wide.
pub(crate) fn doc() -> impl Strategy<Value = Doc> {
    let leaf = prop_oneof![
        Just(Doc::Null),
        any::<bool>().prop_map(Doc::Bool),
        number().prop_map(Doc::Num),
        number().prop_map(Doc::Num),
        (text(), any::<u8>()).prop_map(|(s, e)| Doc::Str(s, e)),
    ];
    leaf.prop_recursive(6, 96, 12, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..12).prop_map(Doc::Arr),
            proptest::collection::vec((text(), any::<u8>(), inner), 0..12).prop_map(|members| {
                let mut seen = std::collections::HashSet::new();
                Doc::Obj(
                    members
                        .into_iter()
                        .filter(|(k, _, _)| seen.insert(k.clone()))
                        .collect(),
                )
            }),
        ]
    })
}

impl Doc {
    /// The document as compact JSON text.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Doc::Null => out.push_str("null"),
            Doc::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Doc::Num(n) => out.push_str(n),
            Doc::Str(s, e) => write_str(out, s, *e),
            Doc::Arr(items) => {
                out.push('[');
                for (i, d) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    d.write(out);
                }
                out.push(']');
            }
            Doc::Obj(members) => {
                out.push('{');
                for (i, (k, e, d)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k, *e);
                    out.push(':');
                    d.write(out);
                }
                out.push('}');
            }
        }
    }

    /// Whether `v` is this document: the same shape, member order, strings, and every
    /// number with the same text.
    pub(crate) fn is(&self, v: &Value) -> bool {
        match (self, v) {
            (Doc::Null, Value::Null) => true,
            (Doc::Bool(a), Value::Bool(b)) => a == b,
            (Doc::Num(a), Value::Number(b)) => exponent_spelled(a) == b.to_string(),
            (Doc::Str(a, _), Value::String(b)) => a == b,
            (Doc::Arr(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(d, v)| d.is(v))
            }
            (Doc::Obj(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((k, _, d), (bk, bv))| k == bk && d.is(bv))
            }
            _ => false,
        }
    }
}

/// A number's text with its exponent marker spelled `e+`/`e-`, as a parse writes it
/// back (`1.5E3` and `1.5e3` are `1.5e+3`); every digit stays as written.
pub(crate) fn exponent_spelled(n: &str) -> String {
    match n.find(['e', 'E']) {
        Some(at) => {
            let (mantissa, rest) = (&n[..at], &n[at + 1..]);
            let sign = if rest.starts_with(['+', '-']) {
                ""
            } else {
                "+"
            };
            format!("{mantissa}e{sign}{rest}")
        }
        None => n.to_owned(),
    }
}

/// Writes a JSON string; `how` picks the escapes: the short ones only where needed, `\u`
/// for every character (surrogate pairs beyond the BMP), or the two alternating.
fn write_str(out: &mut String, s: &str, how: u8) {
    out.push('"');
    for (i, c) in s.chars().enumerate() {
        let escape_all = match how % 3 {
            0 => false,
            1 => true,
            _ => !i.is_multiple_of(2),
        };
        match c {
            _ if escape_all => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '/' if how.is_multiple_of(2) => out.push_str("\\/"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest! {
        /// The generator writes valid JSON, and a plain parse keeps it.
        #[test]
        fn a_parse_keeps_the_document(d in doc()) {
            let text = d.text();
            let v: Value = serde_json::from_str(&text).unwrap();
            prop_assert!(d.is(&v), "{text}\n{v}");
            let again: Value = serde_json::from_str(&v.to_string()).unwrap();
            prop_assert!(d.is(&again), "{text}\n{again}");
        }
    }

    #[test]
    fn the_numbers_of_the_report_keep_their_text() {
        for n in [
            "0.9049426916855675",
            "0.41413233367384084",
            "12345678901234567890123",
            "100000000000000000000",
            "-0",
            "1.5e3",
            "3.141592653589793238462643383279",
        ] {
            let v: Value = serde_json::from_str(&format!("[{n}]")).unwrap();
            assert_eq!(v.to_string(), format!("[{}]", exponent_spelled(n)));
        }
        // Read as a double, the shortest form rounds to the double it names.
        let v: Value = serde_json::from_str("0.9049426916855675").unwrap();
        assert_eq!(format!("{:?}", v.as_f64().unwrap()), "0.9049426916855675");
    }
}
