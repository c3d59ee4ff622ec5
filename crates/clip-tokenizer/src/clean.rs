//! open_clip's default text cleaning (`clean="lower"`): `ftfy.fix_text`, `html.unescape` twice, strip,
//! whitespace collapse, lowercase.
//!
//! Of ftfy's fixes, all those that apply to well-formed Unicode are reproduced (HTML entities,
//! C1 controls, Latin ligatures, character width, curly quotes, line breaks, terminal escapes, control
//! characters, NFC). Not reproduced: `fix_encoding`, ftfy's heuristic repair of mojibake (text that was
//! decoded with the wrong codec, such as `Ã©` for `é`); such text tokenizes as written.

use unicode_normalization::UnicodeNormalization;

use crate::html::unescape;
use crate::html_entities::{FTFY_UPPER_ENTITIES, HTML5, SLOPPY_WINDOWS_1252_C1, WIDTH_MAP};

/// Python's `str.isspace`: Unicode White_Space plus the information separators U+001C..U+001F.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// `whitespace_clean(basic_clean(text)).lower()`, open_clip's default cleaning: [`fix_text`],
/// HTML entities decoded twice, whitespace runs collapsed to one space, ends trimmed, lowercased.
pub fn clean(text: &str) -> String {
    clean_whitespace(text).to_lowercase()
}

/// open_clip's `clean="whitespace"` (its Hugging Face tokenizers' default): [`clean`] without the
/// lowercasing.
pub fn clean_whitespace(text: &str) -> String {
    collapse(&unescape(&unescape(&fix_text(text))))
}

/// open_clip's `clean="canonicalize"` (big_vision's `canonicalize_text` of the basic cleaning):
/// underscores to spaces, ASCII punctuation removed, lowercased, whitespace collapsed.
pub fn clean_canonical(text: &str) -> String {
    let basic = unescape(&unescape(&fix_text(text)));
    let kept: String = basic
        .replace('_', " ")
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    collapse(&kept.to_lowercase())
}

/// Whitespace runs (Python's `str.split()` sense) to one space, ends trimmed.
fn collapse(text: &str) -> String {
    text.split(is_python_space)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// ftfy's `fix_text` with its default configuration, except for `fix_encoding` (see module docs).
/// Like ftfy, it works line by line, and stops decoding HTML entities from the first line holding `<`.
pub fn fix_text(text: &str) -> String {
    let mut unescape_html = true;
    let mut out = String::with_capacity(text.len());
    for segment in text.split_inclusive('\n') {
        if segment.contains('<') {
            unescape_html = false;
        }
        out.push_str(&fix_segment(segment, unescape_html));
    }
    out
}

fn fix_segment(segment: &str, unescape_html: bool) -> String {
    let mut text = segment.to_string();
    loop {
        let mut fixed = if unescape_html {
            ftfy_unescape_html(&text)
        } else {
            text.clone()
        };
        fixed = fixed
            .chars()
            .flat_map(|c| fix_char(c).chars().collect::<Vec<_>>())
            .collect();
        fixed = fix_line_breaks(&fixed);
        fixed = remove_terminal_escapes(&fixed);
        fixed.retain(|c| !is_control(c));
        fixed = fixed.nfc().collect();
        if fixed == text {
            return fixed;
        }
        text = fixed;
    }
}

/// The per-character fixes, in ftfy's order: C1 controls, ligatures, width, curly quotes.
fn fix_char(c: char) -> String {
    let c = match c as u32 {
        0x80..=0x9F => SLOPPY_WINDOWS_1252_C1[c as usize - 0x80],
        _ => c,
    };
    let expanded = match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "ʼn",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => "",
    };
    let text = if expanded.is_empty() {
        c.to_string()
    } else {
        expanded.to_string()
    };
    text.chars()
        .map(|c| {
            let wide = WIDTH_MAP
                .binary_search_by(|(k, _)| k.cmp(&c))
                .map(|i| WIDTH_MAP[i].1.to_string())
                .unwrap_or_else(|_| c.to_string());
            wide.chars()
                .map(|c| match c {
                    '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
                    '\u{201c}'..='\u{201f}' => '"',
                    c => c,
                })
                .collect::<String>()
        })
        .collect()
}

fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// ftfy's `remove_control_chars` set.
fn is_control(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F | 0x206A..=0x206F | 0xFEFF | 0xFFF9..=0xFFFC)
}

/// Removes ANSI escapes `ESC [ (digits|;)* letter`.
fn remove_terminal_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("\x1b[") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let params = after
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b';')
            .count();
        match after[params..].chars().next() {
            Some(c) if c.is_ascii_alphabetic() => rest = &after[params + 1..],
            _ => {
                out.push_str("\x1b[");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// ftfy's `unescape_html`: only complete `&…;` references (`&#?[0-9A-Za-z]{1,24};`), including
/// its upper-cased names, and numeric ones only when `html.unescape` consumes the `;`.
fn ftfy_unescape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let candidate = &rest[amp..];
        let body = candidate[1..].strip_prefix('#').unwrap_or(&candidate[1..]);
        let hash = candidate.len() - 1 - body.len();
        let len = body
            .bytes()
            .take(24)
            .take_while(u8::is_ascii_alphanumeric)
            .count();
        if len > 0 && body[len..].starts_with(';') {
            let entity = &candidate[..1 + hash + len + 1];
            out.push_str(&ftfy_entity(entity));
            rest = &candidate[entity.len()..];
        } else {
            out.push('&');
            rest = &candidate[1..];
        }
    }
    out.push_str(rest);
    out
}

fn ftfy_entity(entity: &str) -> String {
    let name = &entity[1..];
    if !name.starts_with('#') {
        if let Ok(i) = HTML5.binary_search_by(|(n, _)| (*n).cmp(name)) {
            return HTML5[i].1.to_string();
        }
    }
    if let Ok(i) = FTFY_UPPER_ENTITIES.binary_search_by(|(n, _)| (*n).cmp(entity)) {
        return FTFY_UPPER_ENTITIES[i].1.to_string();
    }
    if name.starts_with('#') {
        let decoded = unescape(entity);
        if !decoded.contains(';') {
            return decoded;
        }
    }
    entity.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ftfy_examples() {
        // From ftfy's own docstring (the mojibake example excluded).
        assert_eq!(
            fix_text("Broken text&hellip; it&#x2019;s ﬂubberiﬁc!"),
            "Broken text… it's flubberific!"
        );
        assert_eq!(fix_text("ＬＯＵＤ　ＮＯＩＳＥＳ"), "LOUD NOISES");
        assert_eq!(fix_text("a\x1b[31mred\x1b[0m b"), "ared b");
        assert_eq!(fix_text("&NTILDE;"), "Ñ");
    }

    #[test]
    fn cleaning_collapses_whitespace_and_lowercases() {
        assert_eq!(clean("  Hello\t\n  WORLD\x1c "), "hello world");
        assert_eq!(clean("&amp;lt;b&amp;gt;"), "<b>");
    }
}
