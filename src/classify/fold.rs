//! Folding applied to both the rule patterns and the message text: lower case, no accents,
//! ASCII punctuation.
//!
//! Three reasons. Customers write "facturé", "facture" and "FACTURÉ" interchangeably, and rule
//! authors should not have to spell `factur[ée]` everywhere. Case-insensitive regexes defeat
//! the regex crate's literal prefilters (each letter doubles the literals), while lower-casing
//! the text once and matching case-sensitively keeps them. And typical French mail folds to
//! pure ASCII, which the engines scan fastest.

use std::ops::Range;

/// What a non-ASCII `c` becomes, when folding does more than lower-case it.
///
/// Only ever maps to lower-case ASCII, so a folded pattern and a folded text agree byte for
/// byte.
const fn fold_special(c: char) -> Option<&'static str> {
    Some(match c {
        'À'..='Å' | 'à'..='å' => "a",
        'Æ' | 'æ' => "ae",
        'Ç' | 'ç' => "c",
        'È'..='Ë' | 'è'..='ë' => "e",
        'Ì'..='Ï' | 'ì'..='ï' => "i",
        'Ð' | 'ð' => "d",
        'Ñ' | 'ñ' => "n",
        'Ò'..='Ö' | 'Ø' | 'ò'..='ö' | 'ø' => "o",
        'Ù'..='Ü' | 'ù'..='ü' => "u",
        'Ý' | 'ý' | 'ÿ' => "y",
        'Þ' | 'þ' => "th",
        'ß' => "ss",
        // Latin Extended-A, letter by letter (Ā..ą, Ć..č, …).
        '\u{100}'..='\u{105}' => "a",
        '\u{106}'..='\u{10d}' => "c",
        '\u{10e}'..='\u{111}' => "d",
        '\u{112}'..='\u{11b}' => "e",
        '\u{11c}'..='\u{123}' => "g",
        '\u{124}'..='\u{127}' => "h",
        '\u{128}'..='\u{131}' => "i",
        '\u{132}'..='\u{133}' => "ij",
        '\u{134}'..='\u{135}' => "j",
        '\u{136}'..='\u{138}' => "k",
        '\u{139}'..='\u{142}' => "l",
        '\u{143}'..='\u{14b}' => "n",
        '\u{14c}'..='\u{151}' => "o",
        '\u{152}'..='\u{153}' => "oe",
        '\u{154}'..='\u{159}' => "r",
        '\u{15a}'..='\u{161}' | '\u{17f}' => "s",
        '\u{162}'..='\u{167}' => "t",
        '\u{168}'..='\u{173}' => "u",
        '\u{174}'..='\u{175}' => "w",
        '\u{176}'..='\u{178}' => "y",
        '\u{179}'..='\u{17e}' => "z",
        '\u{2018}'..='\u{201b}' | '\u{2032}' | '\u{2035}' => "'",
        '\u{201c}'..='\u{201f}' | '«' | '»' | '\u{2039}' | '\u{203a}' | '\u{2033}' => "\"",
        '\u{2010}'..='\u{2015}' | '\u{2212}' => "-",
        '\u{2026}' => "...",
        '\u{a0}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}' => " ",
        // Invisible in the mail client, but they would split a word in two for the regex.
        '\u{ad}' | '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' => "",
        // Combining accents: mail written on macOS often arrives decomposed (NFD).
        '\u{300}'..='\u{36f}' => "",
        _ => return None,
    })
}

/// `fold_special` for U+0080..U+017F, where nearly all accented letters of French mail are;
/// a table because the `match` costs about 13 ns a character.
static LATIN: [Option<&str>; 0x100] = {
    let mut table = [None; 0x100];
    let mut i = 0;
    while i < table.len() {
        if let Some(c) = char::from_u32(0x80 + i as u32) {
            table[i] = fold_special(c);
        }
        i += 1;
    }
    table
};

/// `fold_special` through the table where it covers `c`.
fn special(c: char) -> Option<&'static str> {
    match (c as usize).checked_sub(0x80) {
        Some(i) if i < LATIN.len() => LATIN[i],
        _ => fold_special(c),
    }
}

/// Appends the folded form of `c` to `out`.
pub(crate) fn push_folded(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
    } else if let Some(s) = special(c) {
        out.push_str(s);
    } else {
        out.extend(c.to_lowercase());
    }
}

/// A text in lower case, without accents, with typographic punctuation made ASCII, and what
/// is needed to find where a piece of it came from.
pub(crate) struct Folded {
    pub(crate) text: String,
    /// One per non-ASCII character of the original, in order: between two of them, the
    /// original and the folded text are the same ASCII bytes.
    marks: Vec<Mark>,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    folded: usize,
    folded_len: usize,
    original: usize,
    original_len: usize,
}

impl Folded {
    pub(crate) fn new(original: &str) -> Folded {
        let mut text = String::with_capacity(original.len());
        let mut marks = Vec::new();
        let mut at = 0;
        let mut rest = original;
        // ASCII runs are copied a slice at a time: most of a message is ASCII, even in French.
        while let Some(i) = first_non_ascii(rest.as_bytes()) {
            let (ascii, tail) = rest.split_at(i);
            text.push_str(ascii);
            at += i;
            let mut chars = tail.chars();
            let Some(c) = chars.next() else { break };
            let folded = text.len();
            push_folded(c, &mut text);
            marks.push(Mark {
                folded,
                folded_len: text.len() - folded,
                original: at,
                original_len: c.len_utf8(),
            });
            at += c.len_utf8();
            rest = chars.as_str();
        }
        text.push_str(rest);
        text.make_ascii_lowercase();
        Folded { text, marks }
    }

    /// The byte range of the original that produced `text[folded]`, widened to whole
    /// characters.
    pub(crate) fn original_range(&self, folded: Range<usize>) -> Range<usize> {
        self.original_offset(folded.start, false)..self.original_offset(folded.end, true)
    }

    fn original_offset(&self, pos: usize, is_end: bool) -> usize {
        let i = self.marks.partition_point(|m| m.folded <= pos);
        let Some(m) = i.checked_sub(1).and_then(|i| self.marks.get(i)) else {
            return pos;
        };
        if pos >= m.folded + m.folded_len {
            m.original + m.original_len + (pos - m.folded - m.folded_len)
        } else if is_end && pos > m.folded {
            m.original + m.original_len
        } else {
            m.original
        }
    }
}

/// Where the first non-ASCII byte is, eight bytes at a time.
fn first_non_ascii(bytes: &[u8]) -> Option<usize> {
    let mut checked = 0;
    for chunk in bytes.chunks_exact(8) {
        let ascii = <[u8; 8]>::try_from(chunk)
            .is_ok_and(|w| u64::from_le_bytes(w) & 0x8080_8080_8080_8080 == 0);
        if !ascii {
            break;
        }
        checked += 8;
    }
    let tail = bytes.get(checked..)?;
    tail.iter().position(|b| !b.is_ascii()).map(|i| checked + i)
}

/// `text` folded; see [`Folded`].
pub(crate) fn fold(text: &str) -> String {
    Folded::new(text).text
}

/// `pattern` rewritten to run on folded text: literal characters folded like the text, the
/// `i` flag dropped (the text is lower case already, and case-insensitive patterns lose the
/// literal prefilters), and `\b`, `\B` made ASCII word boundaries.
///
/// ASCII boundaries because the lazy DFA cannot evaluate a Unicode `\b` on non-ASCII text
/// and hands over to an engine a thousand times slower: one emoji in a message cost 30 ms.
/// After folding, the only difference is at letters of non-Latin scripts.
///
/// Escapes are copied as written (`\W` is not `\w`), and so are group names and flags.
pub(crate) fn fold_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut class_depth = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                match e {
                    'b' | 'B' if class_depth == 0 => {
                        out.push_str("(?-u:\\");
                        out.push(e);
                        out.push(')');
                    }
                    'p' | 'P' | 'x' | 'u' | 'U' if chars.peek() == Some(&'{') => {
                        out.push('\\');
                        out.push(e);
                        for c in chars.by_ref() {
                            out.push(c);
                            if c == '}' {
                                break;
                            }
                        }
                    }
                    'p' | 'P' => {
                        out.push('\\');
                        out.push(e);
                        out.extend(chars.next());
                    }
                    _ => {
                        out.push('\\');
                        out.push(e);
                    }
                }
            }
            '[' if class_depth > 0 && chars.peek() == Some(&':') => {
                // A POSIX class such as [:alpha:], copied through its closing bracket.
                out.push('[');
                for c in chars.by_ref() {
                    out.push(c);
                    if c == ']' {
                        break;
                    }
                }
            }
            '[' => {
                class_depth += 1;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.extend(chars.next());
                }
                // A `]` right after the opening bracket is a literal, not the end.
                if chars.peek() == Some(&']') {
                    out.extend(chars.next());
                }
            }
            ']' if class_depth > 0 => {
                class_depth -= 1;
                out.push(']');
            }
            '(' if class_depth == 0 && chars.peek() == Some(&'?') => {
                chars.next();
                if matches!(chars.peek(), Some('P' | '<')) {
                    out.push_str("(?");
                    for c in chars.by_ref() {
                        out.push(c);
                        if c == '>' {
                            break;
                        }
                    }
                    continue;
                }
                let mut flags = String::new();
                let mut end = None;
                for f in chars.by_ref() {
                    if f == ':' || f == ')' {
                        end = Some(f);
                        break;
                    }
                    if f != 'i' {
                        flags.push(f);
                    }
                }
                let flags = flags.trim_end_matches('-');
                match end {
                    // A bare `(?i)` or `(?-i)` has nothing left to say.
                    Some(')') if flags.is_empty() => {}
                    _ => {
                        out.push_str("(?");
                        out.push_str(flags);
                        out.extend(end);
                    }
                }
            }
            c if class_depth > 0 => push_folded(c, &mut out),
            c => {
                let start = out.len();
                push_folded(c, &mut out);
                // "œ" becomes "oe": grouped, so that a quantifier after it still applies to
                // the whole letter.
                if out[start..].chars().nth(1).is_some() {
                    out.insert_str(start, "(?:");
                    out.push(')');
                }
            }
        }
    }
    out
}

/// The form under which category ids, labels and aliases are compared with explicit hints:
/// "Demande de fonctionnalité", "demande-de-fonctionnalite" and "DEMANDE_DE_FONCTIONNALITE"
/// are the same name, since a plus-address tag cannot hold spaces or accents.
pub(crate) fn hint_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut gap = false;
    for c in fold(name).chars() {
        if c.is_whitespace() || c == '-' || c == '_' || c == '.' {
            gap = true;
            continue;
        }
        if gap && !out.is_empty() {
            out.push(' ');
        }
        gap = false;
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_french_and_typography() {
        assert_eq!(
            fold("Prélèvement reçu « déjà » l’an"),
            "prelevement recu \" deja \" l'an"
        );
        assert_eq!(fold("ŒUVRE cœur Ÿ Ł"), "oeuvre coeur y l");
        assert_eq!(fold("Cafe\u{301} 10\u{a0}€ Ωμέγα"), "cafe 10 € ωμέγα");
        assert_eq!(fold("Plain ASCII"), "plain ascii");
    }

    #[test]
    fn maps_folded_ranges_back() {
        let original = "Le cœur: facturé deux fois, très cher";
        let folded = Folded::new(original);
        let back = |range: Range<usize>| &original[folded.original_range(range)];
        let start = folded.text.find("facture").unwrap_or(0);
        assert_eq!(back(start..start + "facture".len()), "facturé");
        assert_eq!(back(start..start + "factur".len()), "factur");
        let start = folded.text.find("deux").unwrap_or(0);
        assert_eq!(back(start..start + 4), "deux");
        let start = folded.text.find("oe").unwrap_or(0);
        assert_eq!(back(start + 1..start + 2), "œ");
        assert_eq!(back(start..start + 1), "œ");
        assert_eq!(back(0..2), "Le");
        let end = folded.text.len();
        assert_eq!(back(end - 9..end), "très cher");

        let nfd = "e\u{301}te\u{301}x";
        let folded = Folded::new(nfd);
        assert_eq!(folded.text, "etex");
        assert_eq!(&nfd[folded.original_range(0..3)], "e\u{301}te\u{301}");
        assert_eq!(&nfd[folded.original_range(1..4)], "te\u{301}x");
        assert_eq!(first_non_ascii(b"0123456789abcdef\xc3"), Some(16));
        assert_eq!(first_non_ascii(b"01\xc3"), Some(2));
        assert_eq!(first_non_ascii(b"0123456789"), None);
    }

    #[test]
    fn folds_patterns() {
        assert_eq!(
            fold_pattern(r"(?i)\bPrélèvement\b"),
            r"(?-u:\b)prelevement(?-u:\b)"
        );
        assert_eq!(fold_pattern(r"(?i:A)(?-i)(?im)B"), r"(?:a)(?m)b");
        assert_eq!(
            fold_pattern(r"\W\S\D\pL\p{Lu}\x{C9}[^\]A-Z[:upper:]]"),
            r"\W\S\D\pL\p{Lu}\x{C9}[^\]a-z[:upper:]]"
        );
        assert_eq!(fold_pattern(r"(?P<Name>Œ+)[Œ]"), r"(?P<Name>(?:oe)+)[oe]");
        assert_eq!(fold_pattern(r"(?U)X"), r"(?U)x");
        assert_eq!(fold_pattern(r"[]b]\B"), r"[]b](?-u:\B)");
    }

    #[test]
    fn hint_keys() {
        assert_eq!(
            hint_key("Demande de fonctionnalité"),
            "demande de fonctionnalite"
        );
        assert_eq!(
            hint_key(" demande-de_FONCTIONNALITE "),
            "demande de fonctionnalite"
        );
        assert_eq!(hint_key("Feature request"), hint_key("feature-request"));
    }
}
