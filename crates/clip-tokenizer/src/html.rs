//! Python's `html.unescape`, exactly: the same reference grammar, the same longest-prefix rule for
//! names without `;`, and the same replacements for invalid numeric references. open_clip runs it twice
//! on every text, so any difference here changes token ids.

use crate::html_entities::{HTML5, INVALID_CHARREFS, INVALID_CODEPOINTS};

fn html5(name: &str) -> Option<&'static str> {
    HTML5
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| HTML5[i].1)
}

/// Characters that may not appear in a named reference (`[^\t\n\f <&#;]`).
fn name_char(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';')
}

/// Replacement for a numeric reference, as `html._replace_charref` computes it.
fn numeric(digits: &str, radix: u32) -> String {
    // Python parses arbitrarily large integers; anything past u64 is out of range anyway.
    let num = u64::from_str_radix(digits, radix).unwrap_or(u64::MAX);
    if let Ok(i) = INVALID_CHARREFS.binary_search_by(|(n, _)| u64::from(*n).cmp(&num)) {
        return INVALID_CHARREFS[i].1.to_string();
    }
    if (0xD800..=0xDFFF).contains(&num) || num > 0x10FFFF {
        return '\u{FFFD}'.to_string();
    }
    let num = num as u32;
    if INVALID_CODEPOINTS.binary_search(&num).is_ok() {
        return String::new();
    }
    char::from_u32(num).map(String::from).unwrap_or_default()
}

/// Tries to match the reference that starts just after an `&` in `rest`. Returns the replacement
/// and the number of bytes of `rest` consumed.
fn reference(rest: &str) -> Option<(String, usize)> {
    if let Some(num) = rest.strip_prefix('#') {
        let (radix, body, skip) = match num.strip_prefix(['x', 'X']) {
            Some(hex) => (16, hex, 2),
            None => (10, num, 1),
        };
        let len = body
            .bytes()
            .take_while(|b| match radix {
                16 => b.is_ascii_hexdigit(),
                _ => b.is_ascii_digit(),
            })
            .count();
        if len == 0 {
            // `&#x` with no hex digit: the decimal alternative already failed; `#` can't start a name.
            return None;
        }
        let semicolon = usize::from(body[len..].starts_with(';'));
        return Some((numeric(&body[..len], radix), skip + len + semicolon));
    }
    let name_len: usize = rest
        .chars()
        .take_while(|&c| name_char(c))
        .take(32)
        .map(char::len_utf8)
        .sum();
    if name_len == 0 {
        return None;
    }
    let consumed = name_len + usize::from(rest[name_len..].starts_with(';'));
    let s = &rest[..consumed];
    if let Some(value) = html5(s) {
        return Some((value.to_string(), consumed));
    }
    // The longest prefix (of at least two characters) that is a known name; the rest is kept.
    let boundaries: Vec<usize> = s.char_indices().map(|(i, _)| i).skip(2).collect();
    for &end in boundaries.iter().rev() {
        if let Some(value) = html5(&s[..end]) {
            return Some((format!("{value}{}", &s[end..]), consumed));
        }
    }
    Some((format!("&{s}"), consumed))
}

/// Python's `html.unescape(text)`: named (HTML5) and numeric character references decoded, with
/// Python's rules for references without `;` and for invalid code points.
pub fn unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match reference(after) {
            Some((replacement, consumed)) => {
                out.push_str(&replacement);
                rest = &after[consumed..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn matches_python_html_unescape() {
        // Expected values from Python 3.11 `html.unescape`.
        let cases = [
            ("a &amp; b", "a & b"),
            ("&amp;amp;", "&amp;"),
            ("&ampx", "&x"),
            ("&notit;", "¬it;"),
            ("&notin;", "∉"),
            ("&#39;&#x27;&#X27", "'''"),
            ("&#0;", "\u{FFFD}"),
            ("&#128;", "€"),
            ("&#1;x", "x"),
            ("&#xD800;", "\u{FFFD}"),
            ("&#99999999999999999999999;", "\u{FFFD}"),
            ("&#;", "&#;"),
            ("&#x;", "&#x;"),
            ("&zz;", "&zz;"),
            ("& amp;", "& amp;"),
            ("&lt&gt", "<>"),
        ];
        for (input, expected) in cases {
            assert_eq!(unescape(input), expected, "{input:?}");
        }
    }
}
