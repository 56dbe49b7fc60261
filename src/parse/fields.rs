//! The header block as it stands in the raw bytes, read beside mail-parser.
//!
//! mail-parser 0.11 reads an obsolete one- or two-letter zone (`Date: … 09:12:44 Z`, RFC 5322
//! §4.3) by taking the next two bytes whatever they are; at the end of the line those are the
//! line break, and it then swallows the whole next header line (the From, in the case reported
//! to other helpdesks), or with the Date last, the blank line and the first line of the body.
//! [`pad_date_zones`] gives such a Date two spaces of room before mail-parser sees it, and
//! [`scan`] finds every header field by itself so that one mail-parser still loses can be read
//! on its own.

/// One header field of the top-level header block, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawField<'a> {
    /// The field name as written (ASCII, no white space).
    pub name: &'a str,
    /// Everything after the colon up to the field's last line break (folding kept).
    pub value: &'a [u8],
    /// Offset of the field's last line break (or the end of the input), where text can be
    /// added to the field.
    pub end: usize,
}

/// The top-level header fields of `bytes`, in order. The block ends at the first empty line;
/// a line that is neither a field nor a continuation is skipped, as mail-parser does.
pub fn scan(bytes: &[u8]) -> Vec<RawField<'_>> {
    let mut out: Vec<RawField<'_>> = Vec::new();
    let mut open: Option<(usize, &str, usize)> = None; // (field index, name, value start)
    let mut pos = 0;
    while pos < bytes.len() {
        let nl = bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| pos + p);
        let mut line_end = nl;
        if line_end > pos && bytes[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        let line = &bytes[pos..line_end];
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some((idx, name, start)) = open {
                out[idx] = RawField {
                    name,
                    value: &bytes[start..line_end],
                    end: line_end,
                };
            }
        } else {
            open = None;
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                let name = trim_end(&line[..colon]);
                if !name.is_empty()
                    && name.iter().all(|&b| b.is_ascii_graphic())
                    && let Ok(name) = std::str::from_utf8(name)
                {
                    let start = pos + colon + 1;
                    out.push(RawField {
                        name,
                        value: &bytes[start..line_end],
                        end: line_end,
                    });
                    open = Some((out.len() - 1, name, start));
                }
            }
        }
        pos = nl + 1;
    }
    out
}

fn trim_end(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && b[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    &b[..end]
}

/// Returns true if and only if this Date value ends in a one- or two-letter word (`Z`, `UT`,
/// a military zone), which mail-parser 0.11 reads past the end of the line.
fn zone_overruns(value: &[u8]) -> bool {
    let v = trim_end(value);
    let letters = v
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    (1..=2).contains(&letters)
}

/// `bytes` with two spaces added at the end of every Date or Resent-Date field that
/// mail-parser would read past (see the module doc); None when there is none, so the usual
/// message costs no copy. The spaces change nothing else: trailing white space in a Date is
/// folding white space (RFC 5322 §3.3).
pub fn pad_date_zones(bytes: &[u8]) -> Option<Vec<u8>> {
    let at: Vec<usize> = scan(bytes)
        .iter()
        .filter(|f| {
            (f.name.eq_ignore_ascii_case("date") || f.name.eq_ignore_ascii_case("resent-date"))
                && zone_overruns(f.value)
        })
        .map(|f| f.end)
        .collect();
    if at.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() + 2 * at.len());
    let mut from = 0;
    for end in at {
        out.extend_from_slice(&bytes[from..end]);
        out.extend_from_slice(b"  ");
        from = end;
    }
    out.extend_from_slice(&bytes[from..]);
    Some(out)
}

/// The raw fields whose name mail-parser's `parsed` list (lower-case names) does not hold at
/// all, each with its position in the raw block.
pub fn lost<'a>(raw: &[RawField<'a>], parsed: &[String]) -> Vec<(usize, RawField<'a>)> {
    raw.iter()
        .enumerate()
        .filter(|(_, f)| !parsed.iter().any(|p| p.eq_ignore_ascii_case(f.name)))
        .map(|(i, f)| (i, f.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_fields_continuations_and_stops_at_the_blank_line() {
        let raw = b"Subject: a\r\n b\r\nnot a field\r\nFrom : x@y.example\nTo:z@y.example\r\n\r\nBody: no\r\n";
        let f = scan(raw);
        let names: Vec<&str> = f.iter().map(|f| f.name).collect();
        assert_eq!(names, ["Subject", "From", "To"]);
        assert_eq!(f[0].value, b" a\r\n b");
        assert_eq!(f[1].value, b" x@y.example");
        assert_eq!(&raw[f[2].end..f[2].end + 2], b"\r\n");
    }

    #[test]
    fn only_dates_ending_in_a_short_zone_are_padded() {
        let raw = b"Date: Tue, 24 Nov 2026 09:12:44 Z\r\nFrom: a@b.example\r\n\r\nx";
        let padded = pad_date_zones(raw).unwrap();
        assert!(padded.starts_with(b"Date: Tue, 24 Nov 2026 09:12:44 Z  \r\nFrom:"));
        for date in ["+0000", "GMT", "-0500 (EST)", "+0100 (CET)", "EDT"] {
            let raw =
                format!("Date: Tue, 24 Nov 2026 09:12:44 {date}\r\nFrom: a@b.example\r\n\r\n");
            assert_eq!(pad_date_zones(raw.as_bytes()), None, "{date}");
        }
        assert!(pad_date_zones(b"From: a@b.example\nDate: 24 Nov 2026 09:12 UT\n\nx").is_some());
    }
}
