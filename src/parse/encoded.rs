//! Header bytes to text: RFC 2047 encoded-words and raw 8-bit bytes.
//!
//! mail-parser 0.11 decodes each encoded-word on its own, so a character whose bytes a client
//! split between two words (`=?UTF-8?Q?H=C3?= =?UTF-8?Q?=A9l=C3=A8ne?=`, or base64 words cut
//! every n bytes) comes out as two U+FFFD; and it reads raw 8-bit header bytes as lossy UTF-8.
//! Here a run of adjacent encoded-words in one charset is decoded as one byte string (RFC 2047
//! §2 forbids the split, but Outlook, PHP mailers and CRMs do it), and raw 8-bit text is read
//! as UTF-8 when valid, else by a charset the message declares, else windows-1252.

use std::borrow::Cow;

use base64::Engine as _;
use mail_parser::decoders::charsets::map::charset_decoder;

/// Longest encoded-word accepted (RFC 2047 says 75; real mailers write longer ones, and the
/// limit only bounds the search for the closing `?=`).
const MAX_WORD_LEN: usize = 2048;

/// A header value decoded, and what it took.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decoded {
    /// The text, unfolded, with encoded-words decoded; white space as it was otherwise.
    pub text: String,
    /// True if two or more adjacent encoded-words in one charset were decoded together.
    pub merged: bool,
    /// True if an encoded-word's bytes did not fit its declared charset and were read another
    /// way (UTF-8 or windows-1252).
    pub repaired: bool,
    /// The charset raw 8-bit bytes that are not UTF-8 were read as, if there were any.
    pub eight_bit: Option<String>,
}

impl Decoded {
    /// Returns true if and only if mail-parser's per-word reading may differ from this one:
    /// words merged, bytes read against their label, or raw 8-bit bytes that are not UTF-8.
    pub fn differs_from_per_word(&self) -> bool {
        self.merged || self.repaired || self.eight_bit.is_some()
    }
}

/// One piece of a header value.
enum Piece<'a> {
    /// Text outside encoded-words, raw bytes.
    Raw(&'a [u8]),
    /// An encoded-word: its charset label (RFC 2231 language suffix removed) and its bytes.
    Word { charset: &'a str, bytes: Vec<u8> },
}

/// Removes the line breaks of folded header lines (RFC 5322 §2.2.3), keeping the white space
/// that follows them; a stray CR or LF becomes a space.
pub fn unfold(value: &[u8]) -> Cow<'_, [u8]> {
    if !value.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if b == b'\r' || b == b'\n' {
            let mut j = i;
            while j < value.len() && (value[j] == b'\r' || value[j] == b'\n') {
                j += 1;
            }
            if !matches!(value.get(j), Some(b' ' | b'\t')) {
                out.push(b' ');
            }
            i = j;
            continue;
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

/// Splits `value` (unfolded) into raw text and encoded-words. White space between two
/// encoded-words is dropped, as RFC 2047 §6.2 requires.
fn pieces(value: &[u8]) -> Vec<Piece<'_>> {
    let mut out: Vec<Piece<'_>> = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i + 1 < value.len() {
        if value[i] == b'='
            && value[i + 1] == b'?'
            && let Some((charset, bytes, end)) = encoded_word(value, i)
        {
            let before = &value[text_start..i];
            // White space between two words is not text (RFC 2047 §6.2).
            let between_words = matches!(out.last(), Some(Piece::Word { .. }))
                && before.iter().all(|b| matches!(b, b' ' | b'\t'));
            if !before.is_empty() && !between_words {
                out.push(Piece::Raw(before));
            }
            out.push(Piece::Word { charset, bytes });
            i = end;
            text_start = end;
            continue;
        }
        i += 1;
    }
    if text_start < value.len() {
        out.push(Piece::Raw(&value[text_start..]));
    }
    out
}

/// The encoded-word starting at `value[at]` (which is `=?`): charset, decoded bytes, and the
/// offset just past its closing `?=`.
fn encoded_word(value: &[u8], at: usize) -> Option<(&str, Vec<u8>, usize)> {
    let rest = value.get(at + 2..)?;
    let q1 = rest.iter().take(80).position(|&b| b == b'?')?;
    let label = std::str::from_utf8(&rest[..q1]).ok()?;
    if label.is_empty() || label.bytes().any(|b| b.is_ascii_whitespace() || b == b'=') {
        return None;
    }
    let enc = *rest.get(q1 + 1)?;
    if rest.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q1 + 3;
    let text_len = rest
        .get(text_start..)?
        .iter()
        .take(MAX_WORD_LEN)
        .position(|&b| b == b'?')?;
    let text = &rest[text_start..text_start + text_len];
    if rest.get(text_start + text_len + 1) != Some(&b'=') {
        return None;
    }
    let bytes = match enc {
        b'B' | b'b' => base64_word(text)?,
        b'Q' | b'q' => q_word(text),
        _ => return None,
    };
    // RFC 2231 §5: `charset*language`.
    let charset = label.split('*').next().unwrap_or(label);
    Some((charset, bytes, at + 2 + text_start + text_len + 2))
}

fn base64_word(text: &[u8]) -> Option<Vec<u8>> {
    let clean: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&clean)
        .ok()
        .or_else(|| mail_parser::decoders::base64::base64_decode(text))
}

/// RFC 2047 §4.2: `_` is a space, `=XX` a byte, anything else itself.
fn q_word(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'_' => out.push(b' '),
            b'=' => match (hex(text.get(i + 1)), hex(text.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'='),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// The value of one hex digit.
pub fn hex(b: Option<&u8>) -> Option<u8> {
    match *b? {
        b @ b'0'..=b'9' => Some(b - b'0'),
        b @ b'a'..=b'f' => Some(b - b'a' + 10),
        b @ b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `label` names UTF-8.
pub fn is_utf8_label(label: &str) -> bool {
    let l = label.trim().trim_matches(['"', '\'']);
    l.eq_ignore_ascii_case("utf-8") || l.eq_ignore_ascii_case("utf8")
}

/// Whether `label` names US-ASCII, which carries no 8-bit bytes to decode.
fn is_ascii_label(label: &str) -> bool {
    let l = label.trim();
    l.eq_ignore_ascii_case("us-ascii") || l.eq_ignore_ascii_case("ascii")
}

/// windows-1252, a superset of ISO-8859-1 that never fails: the last resort for unlabelled
/// Western bytes (RT's `@EmailInputEncodings` makes the same bet). The five bytes it leaves
/// undefined become the C1 controls of the same value, as in the WHATWG Encoding Standard,
/// not U+FFFD.
pub fn windows_1252(bytes: &[u8]) -> String {
    let Some(decode) = charset_decoder(b"windows-1252") else {
        return bytes.iter().map(|&b| char::from(b)).collect();
    };
    let text = decode(bytes);
    if !text.contains('\u{FFFD}') {
        return text;
    }
    // A single-byte charset: one char per byte.
    text.chars()
        .zip(bytes)
        .map(|(c, &b)| if c == '\u{FFFD}' { char::from(b) } else { c })
        .collect()
}

/// `bytes` in charset `label`: the text, and whether the bytes fitted the label. Bytes that
/// do not fit are read as UTF-8 when they are UTF-8, else as windows-1252, so no U+FFFD comes
/// out of bytes that any of these can read.
pub fn decode_charset(label: &str, bytes: &[u8]) -> (String, bool) {
    let utf8 = std::str::from_utf8(bytes).ok();
    if is_utf8_label(label) || is_ascii_label(label) {
        if let Some(s) = utf8 {
            return (s.to_string(), is_utf8_label(label) || s.is_ascii());
        }
    } else if let Some(decode) = charset_decoder(label.trim().as_bytes()) {
        // Always through the decoder: ISO-2022-JP is all 7-bit, escapes included.
        let text = decode(bytes);
        if !text.contains('\u{FFFD}') {
            return (text, true);
        }
    } else if let Some(s) = utf8.filter(|s| s.is_ascii()) {
        // An unknown label over ASCII bytes costs nothing.
        return (s.to_string(), true);
    }
    // Mislabelled, unknown or ASCII-labelled 8-bit bytes.
    match utf8 {
        Some(s) => (s.to_string(), false),
        None => (windows_1252(bytes), false),
    }
}

/// The charset raw 8-bit bytes of this message are read in when they are not UTF-8: the first
/// declared charset (top-level Content-Type, then the text parts) that is neither UTF-8 nor
/// ASCII and that we can decode.
pub fn charset_hint<'a>(labels: impl IntoIterator<Item = &'a str>) -> Option<String> {
    labels
        .into_iter()
        .map(|c| c.trim().trim_matches(['"', '\'', ';']).trim())
        .find(|c| {
            !is_utf8_label(c) && !is_ascii_label(c) && charset_decoder(c.as_bytes()).is_some()
        })
        .map(str::to_string)
}

/// Raw header bytes (no encoded-words) to text: UTF-8 when valid, else `hint`, else
/// windows-1252. The second value names the charset used for bytes that were not UTF-8.
pub fn decode_raw<'a>(bytes: &'a [u8], hint: Option<&str>) -> (Cow<'a, str>, Option<String>) {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return (Cow::Borrowed(s), None);
    }
    if let Some(label) = hint
        && let Some(decode) = charset_decoder(label.as_bytes())
    {
        let text = decode(bytes);
        if !text.contains('\u{FFFD}') {
            return (Cow::Owned(text), Some(label.to_string()));
        }
    }
    (Cow::Owned(windows_1252(bytes)), Some("windows-1252".into()))
}

/// Decodes a header value (raw bytes after the colon, folded or not): encoded-words in runs
/// of one charset, raw 8-bit by `hint` (see [`decode_raw`]).
pub fn decode(value: &[u8], hint: Option<&str>) -> Decoded {
    let value = unfold(value);
    let mut out = Decoded::default();
    let mut pieces = pieces(&value).into_iter().peekable();
    while let Some(piece) = pieces.next() {
        match piece {
            Piece::Raw(bytes) => {
                let (text, used) = decode_raw(bytes, hint);
                out.text.push_str(&text);
                if used.is_some() {
                    out.eight_bit = used;
                }
            }
            Piece::Word { charset, mut bytes } => {
                while let Some(Piece::Word { charset: next, .. }) = pieces.peek()
                    && next.eq_ignore_ascii_case(charset)
                {
                    if let Some(Piece::Word { bytes: more, .. }) = pieces.next() {
                        bytes.extend_from_slice(&more);
                        out.merged = true;
                    }
                }
                let (text, fits) = decode_charset(charset, &bytes);
                out.repaired |= !fits;
                out.text.push_str(&text);
            }
        }
    }
    out
}

/// `value` rewritten so that a parser decoding each encoded-word alone reads it right: every
/// run of encoded-words becomes one UTF-8 base64 word, raw 8-bit text becomes UTF-8. Structure
/// (quotes, angle brackets, commas) outside the words is left as it was, and what a word
/// hid stays inside a word, so an address parser sees the same structure.
pub fn normalize(value: &[u8], hint: Option<&str>) -> Vec<u8> {
    let value = unfold(value);
    let mut out = Vec::with_capacity(value.len() + 16);
    let mut pieces = pieces(&value).into_iter().peekable();
    while let Some(piece) = pieces.next() {
        match piece {
            Piece::Raw(bytes) => out.extend_from_slice(decode_raw(bytes, hint).0.as_bytes()),
            Piece::Word { charset, bytes } => {
                // Every word of the run becomes one word for the parser (the white space
                // between them is not text); bytes are joined per charset, as in `decode`.
                let mut text = String::new();
                let (mut label, mut run) = (charset, bytes);
                while matches!(pieces.peek(), Some(Piece::Word { .. })) {
                    let Some(Piece::Word { charset, bytes }) = pieces.next() else {
                        break;
                    };
                    if charset.eq_ignore_ascii_case(label) {
                        run.extend_from_slice(&bytes);
                    } else {
                        text.push_str(&decode_charset(label, &run).0);
                        (label, run) = (charset, bytes);
                    }
                }
                text.push_str(&decode_charset(label, &run).0);
                out.extend_from_slice(b"=?UTF-8?B?");
                out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(text.as_bytes())
                        .as_bytes(),
                );
                out.extend_from_slice(b"?=");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_between_two_base64_words_comes_out_whole() {
        // "Problème de r" / "ésiliation": the split falls inside è and é.
        let d = decode(
            b" =?utf-8?B?UHJvYmzD?=\r\n =?utf-8?B?qG1lIGRlIHLD?=\r\n =?UTF-8?B?qXNpbGlhdGlvbg==?=",
            None,
        );
        assert_eq!(d.text.trim(), "Problème de résiliation");
        assert!(d.merged && !d.repaired);
    }

    #[test]
    fn a_character_split_between_two_q_words_comes_out_whole() {
        let d = decode(b"=?UTF-8?Q?H=C3?=\t=?UTF-8?Q?=A9l=C3=A8ne_B?=", None);
        assert_eq!(d.text, "Hélène B");
    }

    #[test]
    fn words_in_a_legacy_charset_are_merged_too() {
        let d = decode(b"=?iso-8859-1?q?Fran=E7?= =?ISO-8859-1?Q?ois?=", None);
        assert_eq!(d.text, "François");
        // Shift_JIS split inside the second character (a double-byte one).
        let d = decode(
            b"=?shift_jis?B?k/qW?= =?Shift_JIS?B?e4zqgsyDZYNYg2c=?=",
            None,
        );
        assert_eq!(d.text, "日本語のテスト");
        let d = decode(
            b"=?koi8-r?B?8NLJ1w==?=\r\n\t=?koi8-r?B?xdTT1NfVwA==?=",
            None,
        );
        assert_eq!(d.text, "Приветствую");
    }

    #[test]
    fn text_between_words_is_kept_and_white_space_between_words_dropped() {
        let d = decode(b"=?utf-8?q?a?= b =?utf-8?q?c?=  =?utf-8?q?d?=", None);
        assert_eq!(d.text, "a b cd");
        // Words of two charsets side by side: each its own, the space between still dropped.
        let d = decode(b"=?iso-8859-1?q?=E9?= =?utf-8?q?=C3=A9?=", None);
        assert_eq!(d.text, "éé");
    }

    #[test]
    fn raw_8bit_is_utf8_when_valid_else_the_hint_else_windows_1252() {
        assert_eq!(decode("Zoé".as_bytes(), Some("iso-8859-1")).text, "Zoé");
        let latin1 = b"Fran\xe7ois Lema\xeetre";
        let d = decode(latin1, Some("iso-8859-15"));
        assert_eq!(d.text, "François Lemaître");
        assert_eq!(d.eight_bit.as_deref(), Some("iso-8859-15"));
        let d = decode(b"caf\xe9 \x80", None);
        assert_eq!(d.text, "café €");
        assert_eq!(windows_1252(b"\x81\x9d\x9c"), "\u{81}\u{9d}œ");
        assert_eq!(d.eight_bit.as_deref(), Some("windows-1252"));
    }

    #[test]
    fn a_utf8_labelled_word_holding_latin1_bytes_is_repaired() {
        let d = decode(b"=?utf-8?q?r=E9siliation?=", None);
        assert_eq!(d.text, "résiliation");
        assert!(d.repaired);
    }

    #[test]
    fn malformed_words_stay_text() {
        for raw in [
            "=?utf-8?x?abc?=",
            "=?utf-8?q?no end",
            "a =? b ?= c",
            "=??q?x?=",
        ] {
            assert_eq!(decode(raw.as_bytes(), None).text, raw, "{raw}");
        }
    }

    #[test]
    fn normalize_keeps_structure_and_merges_runs() {
        let n = normalize(
            b"=?UTF-8?Q?H=C3?=\r\n =?UTF-8?Q?=A9l=C3=A8ne?= <h@x.example>",
            None,
        );
        let n = String::from_utf8(n).unwrap();
        assert!(n.ends_with(" <h@x.example>"), "{n}");
        assert_eq!(decode(n.as_bytes(), None).text, "Hélène <h@x.example>");
        // A run in two charsets, the second split inside a character.
        let n = normalize(
            b"=?iso-8859-1?q?Ren=E9e_?= =?utf-8?q?B=C3?= =?utf-8?q?=A9?= <r@x>",
            None,
        );
        assert_eq!(decode(&n, None).text, "Renée Bé <r@x>");
        let n = normalize(b"\"Lema\xeetre, F\" <f@x.example>", Some("iso-8859-1"));
        assert_eq!(n, "\"Lemaître, F\" <f@x.example>".as_bytes());
    }
}
