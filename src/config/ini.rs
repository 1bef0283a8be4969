//! INI line reader: turns the text into section headers and `key = value` entries with
//! line numbers, on top of the `ini_core` streaming parser.
//!
//! It accepts what the original server's goconfig accepted: `#` and `;` comment lines,
//! `key = value` or `key: value`, inline comments after whitespace (`x = 1  # note`),
//! indentation, any line ending (LF, CRLF, CR) and a UTF-8 byte-order mark. It does not
//! support goconfig's continuation lines or `%(name)s` interpolation (the original file
//! uses neither).

use ini_core::{Item, Parser};

/// One meaningful line of the file. Lines are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Line<'a> {
    Section {
        line: u32,
        name: &'a str,
    },
    Entry {
        line: u32,
        key: &'a str,
        value: &'a str,
    },
}

/// A line that is neither a comment, a section header nor an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SyntaxError {
    pub line: u32,
    pub message: String,
}

/// Reads every section header and entry, in order; stops at the first malformed line.
pub(super) fn read(text: &str) -> Result<Vec<Line<'_>>, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // `#` is the parser's comment char; `;` comments and indented lines come through as
    // keys and are sorted out in `classify`, so both comment styles work anywhere.
    let mut parser = Parser::new(text).comment_char(b'#').auto_trim(true);
    let mut out = Vec::new();
    loop {
        // The parser counts line ends consumed so far: before an item, that is the
        // 0-based index of the line the item is on.
        let line = parser.line().saturating_add(1);
        let Some(item) = parser.next() else {
            return Ok(out);
        };
        if let Some(parsed) = classify(item, line)? {
            out.push(parsed);
        }
    }
}

fn classify(item: Item<'_>, line: u32) -> Result<Option<Line<'_>>, SyntaxError> {
    let fail = |message: String| Err(SyntaxError { line, message });
    match item {
        Item::SectionEnd | Item::Blank | Item::Comment(_) => Ok(None),
        Item::Section(name) => Ok(Some(Line::Section { line, name })),
        // ini_core rejects a header followed by anything, even spaces or a comment.
        Item::Error(raw) => match header(strip_comment(raw)) {
            Some(name) => Ok(Some(Line::Section { line, name })),
            None => fail(format!("malformed section header {:?}", raw.trim())),
        },
        Item::Property(key, value) => {
            if key.starts_with(['#', ';']) {
                return Ok(None);
            }
            // Indented headers reach us as a key without a value.
            if key.starts_with('[') {
                return match (value, header(strip_comment(key))) {
                    (None, Some(name)) => Ok(Some(Line::Section { line, name })),
                    _ => fail(format!("malformed section header {:?}", key)),
                };
            }
            // goconfig also took `key: value`.
            let (key, value) = match value {
                Some(value) => (key, value),
                None => match key.split_once(':') {
                    Some((k, v)) => (k.trim(), v),
                    None => return fail(format!("expected `key = value`, got {:?}", key)),
                },
            };
            if key.is_empty() {
                return fail("missing key before `=`".to_owned());
            }
            Ok(Some(Line::Entry {
                line,
                key,
                value: strip_comment(value),
            }))
        }
    }
}

/// `[name]` (already trimmed) → `name`, trimmed.
fn header(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    Some(inner.trim())
}

/// Drops an inline comment: `#` or `;` preceded by whitespace, as goconfig did; then trims.
fn strip_comment(s: &str) -> &str {
    let bytes = s.as_bytes();
    let cut = (1..bytes.len())
        .find(|&i| matches!(bytes[i], b'#' | b';') && bytes[i - 1].is_ascii_whitespace())
        .unwrap_or(bytes.len());
    // `cut` is at an ASCII byte or the end, so it is a char boundary.
    s.get(..cut).unwrap_or(s).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: u32, key: &'static str, value: &'static str) -> Line<'static> {
        Line::Entry { line, key, value }
    }

    fn section(line: u32, name: &'static str) -> Line<'static> {
        Line::Section { line, name }
    }

    #[test]
    fn sections_entries_and_line_numbers() {
        let text = "\n# c\n[Server]\n; c\ndebug = False\n\n  port=1  \n[Monitor]\nurl =\n";
        let got = read(text).unwrap();
        assert_eq!(
            got,
            [
                section(3, "Server"),
                entry(5, "debug", "False"),
                entry(7, "port", "1"),
                section(8, "Monitor"),
                entry(9, "url", ""),
            ]
        );
    }

    #[test]
    fn crlf_and_cr_line_endings() {
        let got = read("[A]\r\nx = 1\r\n\r\ny=2\rz=3").unwrap();
        assert_eq!(
            got,
            [
                section(1, "A"),
                entry(2, "x", "1"),
                entry(4, "y", "2"),
                entry(5, "z", "3")
            ]
        );
    }

    #[test]
    fn comments_everywhere() {
        let text =
            "[A] # header comment\n  # indented\n\t; indented\nx = 1 ; why\ny = a#b\nz = 2\t# tab";
        let got = read(text).unwrap();
        assert_eq!(
            got,
            [
                section(1, "A"),
                entry(4, "x", "1"),
                entry(5, "y", "a#b"),
                entry(6, "z", "2")
            ]
        );
    }

    #[test]
    fn indented_header_colon_separator_and_bom() {
        let got = read("\u{feff}  [ A ]  \nkey: http://h:1/x\n").unwrap();
        assert_eq!(got, [section(1, "A"), entry(2, "key", "http://h:1/x")]);
    }

    #[test]
    fn malformed_lines() {
        let e = read("[A]\njust words\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.message.contains("expected `key = value`"),
            "{}",
            e.message
        );
        assert_eq!(read("[A\n").unwrap_err().line, 1);
        assert_eq!(read("x=1\n[A] junk\n").unwrap_err().line, 2);
        assert_eq!(read("[A]\n = 1").unwrap_err().line, 2);
        assert_eq!(read("  [A] = 1").unwrap_err().line, 1);
    }
}
