//! MIME parameters read from the raw header: attachment file names.
//!
//! mail-parser 0.11 decodes each RFC 2231 continuation (`filename*0*=`, `filename*1*=`) and
//! each encoded-word in a quoted `filename="=?UTF-8?B?…?= =?UTF-8?B?…?="` on its own, so a
//! character split between two pieces comes out as U+FFFD. Here the pieces are put back
//! together as bytes first and decoded once.

use super::encoded;

/// One `name*N*=value` parameter as written.
struct Param {
    /// Lower-case name without the RFC 2231 section and `*` (e.g. "filename").
    name: String,
    /// RFC 2231 section number; None for a parameter not split in sections.
    section: Option<u32>,
    /// True for `name*=` / `name*N*=`: charset'language'%XX form.
    extended: bool,
    /// The value with quotes and escapes removed, still encoded.
    value: Vec<u8>,
}

/// The parameters of a Content-Type or Content-Disposition value (raw bytes after the colon),
/// in order. The leading type token is skipped.
fn params(value: &[u8]) -> Vec<Param> {
    let mut out = Vec::new();
    let mut i = match value.iter().position(|&b| b == b';') {
        Some(p) => p + 1,
        None => return out,
    };
    while i < value.len() {
        // Name up to '='.
        while i < value.len() && (value[i].is_ascii_whitespace() || value[i] == b';') {
            i += 1;
        }
        let name_start = i;
        while i < value.len() && value[i] != b'=' && value[i] != b';' {
            i += 1;
        }
        if i >= value.len() || value[i] == b';' {
            continue;
        }
        let raw_name = String::from_utf8_lossy(&value[name_start..i])
            .trim()
            .to_ascii_lowercase();
        i += 1;
        while i < value.len() && matches!(value[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        let value_start = i;
        let mut v = Vec::new();
        if value.get(i) == Some(&b'"') {
            i += 1;
            while i < value.len() && value[i] != b'"' {
                if value[i] == b'\\' && i + 1 < value.len() {
                    i += 1;
                }
                if value[i] != b'\r' && value[i] != b'\n' {
                    v.push(value[i]);
                }
                i += 1;
            }
            i += 1;
            // Anything after the closing quote up to ';' is garbage; skip it.
            while i < value.len() && value[i] != b';' {
                i += 1;
            }
        } else {
            while i < value.len() && value[i] != b';' {
                i += 1;
            }
            v.extend(
                value[value_start..i]
                    .iter()
                    .filter(|&&b| b != b'\r' && b != b'\n'),
            );
            while v.last().is_some_and(|b| b.is_ascii_whitespace()) {
                v.pop();
            }
        }
        let (name, section, extended) = split_name(&raw_name);
        if !name.is_empty() {
            out.push(Param {
                name,
                section,
                extended,
                value: v,
            });
        }
    }
    out
}

/// `filename*1*` -> ("filename", Some(1), true).
fn split_name(raw: &str) -> (String, Option<u32>, bool) {
    let (raw, extended) = match raw.strip_suffix('*') {
        Some(r) => (r, true),
        None => (raw, false),
    };
    if let Some((name, n)) = raw.rsplit_once('*')
        && let Ok(n) = n.parse::<u32>()
    {
        return (name.to_string(), Some(n), extended);
    }
    (raw.to_string(), None, extended)
}

/// `%XX` decoded; other bytes as they are.
fn percent_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%'
            && let (Some(hi), Some(lo)) = (encoded::hex(v.get(i + 1)), encoded::hex(v.get(i + 2)))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

/// Parameter `name` (lower-case, e.g. "filename") of a raw Content-Type or
/// Content-Disposition value, decoded: RFC 2231 sections joined as bytes and decoded once in
/// their charset; otherwise the plain value with its encoded-words decoded in runs (RFC 2047
/// words in a quoted string are not allowed, but Outlook and webmails write them) and raw
/// 8-bit read by `hint` (see [`encoded::decode_raw`]). None when absent or empty.
pub fn param(value: &[u8], name: &str, hint: Option<&str>) -> Option<String> {
    let all = params(value);
    let mine: Vec<&Param> = all.iter().filter(|p| p.name == name).collect();
    // RFC 2231: the extended or sectioned form supersedes the plain one.
    let mut sections: Vec<&Param> = mine
        .iter()
        .copied()
        .filter(|p| p.section.is_some() || p.extended)
        .collect();
    if !sections.is_empty() {
        sections.sort_by_key(|p| p.section.unwrap_or(0));
        let mut charset = None;
        let mut bytes = Vec::new();
        for (k, p) in sections.iter().enumerate() {
            if p.extended {
                let mut v: &[u8] = &p.value;
                if k == 0 {
                    // charset'language'value
                    let mut parts = p.value.splitn(3, |&b| b == b'\'');
                    if let (Some(cs), Some(_lang), Some(rest)) =
                        (parts.next(), parts.next(), parts.next())
                    {
                        charset = Some(String::from_utf8_lossy(cs).into_owned());
                        v = rest;
                    }
                }
                bytes.extend(percent_decode(v));
            } else {
                bytes.extend_from_slice(&p.value);
            }
        }
        let text = match charset.as_deref().filter(|c| !c.is_empty()) {
            Some(cs) => encoded::decode_charset(cs, &bytes).0,
            None => encoded::decode(&bytes, hint).text,
        };
        let text = text.trim().to_string();
        if !text.is_empty() {
            return Some(text);
        }
    }
    let plain = mine.iter().find(|p| p.section.is_none() && !p.extended)?;
    let text = encoded::decode(&plain.value, hint).text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::param;

    #[test]
    fn rfc2231_sections_split_inside_a_character_are_joined_as_bytes() {
        let v = b" attachment;\r\n filename*0*=UTF-8''Facture%20r%C3;\r\n filename*1*=%A9sili%C3%A9e.pdf";
        assert_eq!(
            param(v, "filename", None).as_deref(),
            Some("Facture résiliée.pdf")
        );
        // Sections out of order, one of them not encoded.
        let v = b"attachment; filename*1=\"-2026.pdf\"; filename*0*=iso-8859-1'fr'Re%E7u";
        assert_eq!(param(v, "filename", None).as_deref(), Some("Reçu-2026.pdf"));
    }

    #[test]
    fn the_extended_form_wins_over_the_plain_one() {
        let v = b"attachment; filename=\"Facture_r_sili_e.pdf\"; filename*=utf-8''Facture%20r%C3%A9sili%C3%A9e.pdf";
        assert_eq!(
            param(v, "filename", None).as_deref(),
            Some("Facture résiliée.pdf")
        );
    }

    #[test]
    fn encoded_words_in_a_quoted_name_are_decoded_in_runs() {
        let v =
            b"application/pdf;\r\n name=\"=?UTF-8?B?UsM=?=\r\n =?UTF-8?B?qXNpbGlhdGlvbi5wZGY=?=\"";
        assert_eq!(param(v, "name", None).as_deref(), Some("Résiliation.pdf"));
    }

    #[test]
    fn raw_8bit_names_use_the_hint() {
        let v = b"attachment; filename=\"Pi\xe8ce jointe.pdf\"";
        assert_eq!(
            param(v, "filename", Some("iso-8859-1")).as_deref(),
            Some("Pièce jointe.pdf")
        );
        let v = "attachment; filename=\"Pièce.pdf\"".as_bytes();
        assert_eq!(
            param(v, "filename", Some("iso-8859-1")).as_deref(),
            Some("Pièce.pdf")
        );
    }

    #[test]
    fn plain_tokens_quotes_and_absence() {
        assert_eq!(
            param(b"attachment; filename=report.txt", "filename", None).as_deref(),
            Some("report.txt")
        );
        assert_eq!(
            param(
                b"attachment; filename=\"a \\\"b\\\".txt\"; size=3",
                "filename",
                None
            )
            .as_deref(),
            Some("a \"b\".txt")
        );
        assert_eq!(param(b"inline", "filename", None), None);
        assert_eq!(param(b"attachment; filename=\"\"", "filename", None), None);
    }
}
