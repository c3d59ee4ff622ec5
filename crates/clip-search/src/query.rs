//! Search queries: a text, an image, or a weighted sum of both kinds, in rclip's syntax —
//! `beach + sunset - 2:people`, `./cat.jpg + "in the snow"`.
//!
//! `+` and `-` separate terms when they stand alone (between spaces), so `t-shirt` is one word; a
//! term is the words up to the next operator. `W:` before a term weights it (`2:people`,
//! `0.5:dog`). Quotes keep a term whole, operators and colons included (`"12:30 - lunch"`). A term
//! that names an existing image file is that image; any other is text.

use std::path::PathBuf;

use crate::scan::is_image_path;
use crate::SearchError;

/// What one term of a query is.
#[derive(Clone, Debug, PartialEq)]
pub enum TermKind {
    /// A text, embedded by the text tower.
    Text(String),
    /// An image file, embedded by the image tower.
    Image(PathBuf),
}

/// A weighted term: the query vector is the normalized sum of `weight ×` each term's unit embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    /// Its weight, negative for a subtracted term.
    pub weight: f32,
    /// Text or image.
    pub kind: TermKind,
}

#[derive(Debug, PartialEq)]
enum Token {
    Plus,
    Minus,
    /// A word, and whether its first character was outside quotes (a weight prefix counts then).
    Word(String, bool),
}

fn tokenize(query: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = query.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        let unquoted_start = c != '"' && c != '\'';
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '"' || c == '\'' {
                let mut closed = false;
                for q in chars.by_ref() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    word.push(q);
                }
                if !closed {
                    return Err(format!("the quote {c} is not closed"));
                }
            } else {
                word.push(c);
            }
        }
        tokens.push(match (word.as_str(), unquoted_start) {
            ("+", true) => Token::Plus,
            ("-", true) => Token::Minus,
            _ => Token::Word(word, unquoted_start),
        });
    }
    Ok(tokens)
}

/// Splits a `W:` weight off an unquoted term start.
fn weight_prefix(word: &str) -> Option<(f32, &str)> {
    let (number, rest) = word.split_once(':')?;
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    number.parse::<f32>().ok().map(|w| (w, rest))
}

/// Parses a query (the words of `clip search`, joined by spaces); a term naming an existing image
/// file is that image.
pub fn parse(query: &str) -> Result<Vec<Term>, SearchError> {
    parse_with(query, true)
}

/// Parses a query whose terms are all text, whatever files exist: what a server takes from a client,
/// who must not make it read files by naming them.
pub fn parse_text(query: &str) -> Result<Vec<Term>, SearchError> {
    parse_with(query, false)
}

fn parse_with(query: &str, files: bool) -> Result<Vec<Term>, SearchError> {
    let bad = |reason: &str| SearchError::BadQuery {
        query: query.to_string(),
        reason: reason.to_string(),
    };
    let tokens = tokenize(query).map_err(|r| bad(&r))?;
    let mut terms = Vec::new();
    let mut sign = 1.0f32;
    let mut words: Vec<String> = Vec::new();
    let mut weight = 1.0f32;
    let finish = |terms: &mut Vec<Term>,
                  words: &mut Vec<String>,
                  sign: f32,
                  weight: f32|
     -> Result<(), SearchError> {
        let text = words.join(" ");
        words.clear();
        if text.trim().is_empty() {
            return Err(bad(
                "a term is empty (two operators in a row, or one at the end?)",
            ));
        }
        let path = PathBuf::from(&text);
        let kind = if files && is_image_path(&path) && path.is_file() {
            TermKind::Image(path)
        } else {
            TermKind::Text(text)
        };
        terms.push(Term {
            weight: sign * weight,
            kind,
        });
        Ok(())
    };
    let mut expect_term = true;
    for token in tokens {
        match token {
            Token::Plus | Token::Minus => {
                if !words.is_empty() {
                    finish(&mut terms, &mut words, sign, weight)?;
                } else if !terms.is_empty() || !expect_term {
                    return Err(bad("two operators in a row"));
                }
                sign = if token == Token::Minus { -1.0 } else { 1.0 };
                weight = 1.0;
                expect_term = true;
            }
            Token::Word(word, unquoted) => {
                let word = match (words.is_empty() && unquoted)
                    .then(|| weight_prefix(&word))
                    .flatten()
                {
                    Some((w, rest)) => {
                        if !(w.is_finite() && w > 0.0) {
                            return Err(bad("a weight must be a positive number"));
                        }
                        weight = w;
                        rest.to_string()
                    }
                    None => word,
                };
                if !word.is_empty() {
                    words.push(word);
                }
                expect_term = false;
            }
        }
    }
    if words.is_empty() {
        return Err(if terms.is_empty() && expect_term && sign > 0.0 {
            bad("the query is empty")
        } else {
            bad("the query ends with an operator or a weight")
        });
    }
    finish(&mut terms, &mut words, sign, weight)?;
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(weight: f32, t: &str) -> Term {
        Term {
            weight,
            kind: TermKind::Text(t.into()),
        }
    }

    #[test]
    fn parses_rclips_syntax() {
        assert_eq!(parse("a blue bag").unwrap(), [text(1.0, "a blue bag")]);
        assert_eq!(
            parse("beach + sunset - 2:people").unwrap(),
            [
                text(1.0, "beach"),
                text(1.0, "sunset"),
                text(-2.0, "people")
            ]
        );
        assert_eq!(
            parse("0.5:\"a t-shirt - red\" + 3:dog").unwrap(),
            [text(0.5, "a t-shirt - red"), text(3.0, "dog")]
        );
        assert_eq!(parse("a t-shirt").unwrap(), [text(1.0, "a t-shirt")]);
        assert_eq!(
            parse("\"12:30 lunch\"").unwrap(),
            [text(1.0, "12:30 lunch")]
        );
        assert_eq!(parse("- cats").unwrap(), [text(-1.0, "cats")]);
    }

    #[test]
    fn an_existing_image_path_is_an_image_term() {
        let dir = tempfile::tempdir().unwrap();
        let photo = dir.path().join("my photo.jpg");
        std::fs::write(&photo, b"x").unwrap();
        let query = format!("\"{}\" - 2:snow", photo.display());
        assert_eq!(
            parse(&query).unwrap(),
            [
                Term {
                    weight: 1.0,
                    kind: TermKind::Image(photo.clone())
                },
                text(-2.0, "snow")
            ]
        );
        // a missing file is just text, and so is every term of a client's query
        assert_eq!(parse("missing.jpg").unwrap(), [text(1.0, "missing.jpg")]);
        let path = photo.display().to_string();
        assert_eq!(
            parse_text(&format!("\"{path}\"")).unwrap(),
            [text(1.0, &path)]
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for (query, reason) in [
            ("", "empty"),
            ("   ", "empty"),
            ("cat +", "ends with"),
            ("cat + + dog", "two operators"),
            ("cat + 2:", "ends with"),
            ("0:cat", "positive"),
            ("\"cat", "not closed"),
        ] {
            let err = parse(query).unwrap_err().to_string();
            assert!(err.contains(reason), "{query:?}: {err}");
        }
    }
}
