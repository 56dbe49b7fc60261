//! Did the sender's domain vouch for this mail? Read from the `Authentication-Results` header
//! our own receiving server wrote (RFC 8601), never from one the sender could have written.
//!
//! Entry point: [`sender_authenticated`]. Mail counts as authenticated when our server saw
//! `dmarc=pass`, or `dkim=pass` for a domain aligned with the From domain, or `spf=pass` for an
//! envelope sender aligned with it (DMARC's relaxed alignment, RFC 7489 §3.1: one domain equal
//! to or a subdomain of the other; without the public suffix list a signature by a bare public
//! suffix would align, which no signer can produce).

use crate::parse::ParsedMessage;

/// What our server's `Authentication-Results` says about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// Passed: the method that vouched (`dmarc`, `dkim header.d=…`, `spf smtp.mailfrom=…`).
    Pass(String),
    /// Our server's header is there, and nothing in it aligned with the From domain passed.
    Fail(String),
    /// No `Authentication-Results` of our server at all.
    Missing,
}

impl Authentication {
    /// Returns true if and only if the mail passed.
    pub fn passed(&self) -> bool {
        matches!(self, Authentication::Pass(_))
    }
}

impl std::fmt::Display for Authentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Authentication::Pass(how) => write!(f, "authenticated ({how})"),
            Authentication::Fail(why) => write!(f, "not authenticated ({why})"),
            Authentication::Missing => {
                f.write_str("not authenticated (no Authentication-Results from our server)")
            }
        }
    }
}

/// Reads the topmost `Authentication-Results` whose authserv-id is `authserv_id` (our server
/// prepends its own above whatever came with the mail, so a forged one with our id sits below
/// it) and judges it against the From domain.
pub fn sender_authenticated(msg: &ParsedMessage, authserv_id: &str) -> Authentication {
    let from_domain = msg
        .from_address()
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    let Some(results) = msg
        .header_all("authentication-results")
        .find(|v| authserv(v).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id)))
    else {
        return Authentication::Missing;
    };
    if from_domain.is_empty() {
        return Authentication::Fail("no From domain".into());
    }
    let mut seen = Vec::new();
    let mut infos = resinfos(results);
    // DMARC's verdict first: it is the one that already judged alignment.
    infos.sort_by_key(|(method, _, _)| method != "dmarc");
    for (method, result, props) in infos {
        seen.push(format!("{method}={result}"));
        if result != "pass" {
            continue;
        }
        match method.as_str() {
            // DMARC itself checked alignment with the From domain.
            "dmarc" => {
                let domain = prop(&props, "header.from").unwrap_or(&from_domain);
                if aligned(domain, &from_domain) {
                    return Authentication::Pass("dmarc".into());
                }
            }
            "dkim" => {
                if let Some(d) = prop(&props, "header.d").or(prop(&props, "header.i"))
                    && aligned(domain_of(d), &from_domain)
                {
                    return Authentication::Pass(format!("dkim header.d={}", domain_of(d)));
                }
            }
            "spf" => {
                if let Some(from) = prop(&props, "smtp.mailfrom")
                    && aligned(domain_of(from), &from_domain)
                {
                    return Authentication::Pass(format!("spf smtp.mailfrom={from}"));
                }
            }
            _ => {}
        }
    }
    Authentication::Fail(if seen.is_empty() {
        "no results".into()
    } else {
        seen.join(" ")
    })
}

/// The authserv-id: the first token, before any version number and the first `;`.
fn authserv(value: &str) -> Option<&str> {
    let head = value.split(';').next()?;
    head.split_whitespace().find(|w| !w.starts_with('('))
}

/// One `method=result` of a header, with its `ptype.property=value` pairs.
type ResInfo = (String, String, Vec<(String, String)>);

/// `method=result` with their `ptype.property=value` pairs, lower-cased, comments dropped.
fn resinfos(value: &str) -> Vec<ResInfo> {
    let text = strip_comments(value);
    text.split(';')
        .skip(1)
        .filter_map(|part| {
            let mut words = part.split_whitespace();
            let (method, result) = words.next()?.split_once('=')?;
            let method = method.split('/').next().unwrap_or(method);
            let props = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| {
                    (
                        k.to_ascii_lowercase(),
                        v.trim_matches('"').to_ascii_lowercase(),
                    )
                })
                .collect();
            Some((
                method.to_ascii_lowercase(),
                result.to_ascii_lowercase(),
                props,
            ))
        })
        .collect()
}

fn prop<'a>(props: &'a [(String, String)], name: &str) -> Option<&'a str> {
    props
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `alice@example.com` or `@example.com` or `example.com` to `example.com`.
fn domain_of(value: &str) -> &str {
    value.rsplit_once('@').map_or(value, |(_, d)| d)
}

/// Relaxed alignment: equal, or one a subdomain of the other.
fn aligned(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_end_matches('.'), b.trim_end_matches('.'));
    !a.is_empty()
        && !b.is_empty()
        && (a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}")))
}

/// RFC 5322 comments `( ... )`, nested, removed.
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    for c in value.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn mail(from: &str, results: &[&str]) -> ParsedMessage {
        let mut raw = String::new();
        for r in results {
            raw.push_str(&format!("Authentication-Results: {r}\r\n"));
        }
        raw.push_str(&format!(
            "From: Alice <{from}>\r\nTo: support@example.test\r\nSubject: x\r\nMessage-ID: <a@b>\r\n\r\nhi\r\n"
        ));
        parse(raw.as_bytes())
    }

    const OURS: &str = "mx.example.test";

    #[test]
    fn dmarc_pass_at_our_server_authenticates() {
        let m = mail(
            "alice@example.test",
            &[
                "mx.example.test 1; dkim=pass (2048-bit key) header.d=example.test header.s=s1; spf=pass smtp.mailfrom=alice@example.test; dmarc=pass (p=reject) header.from=example.test",
            ],
        );
        assert_eq!(
            sender_authenticated(&m, OURS),
            Authentication::Pass("dmarc".into())
        );
    }

    #[test]
    fn dkim_or_spf_pass_counts_only_aligned_with_the_from_domain() {
        let dkim = mail(
            "alice@example.test",
            &["mx.example.test; dkim=pass header.d=mail.example.test; spf=softfail"],
        );
        assert!(sender_authenticated(&dkim, OURS).passed());
        let spf = mail(
            "alice@example.test",
            &["mx.example.test; dkim=none; spf=pass smtp.mailfrom=bounces@example.test"],
        );
        assert!(sender_authenticated(&spf, OURS).passed());
        let unaligned = mail(
            "alice@example.test",
            &[
                "mx.example.test; dkim=pass header.d=mailer.example.net; spf=pass smtp.mailfrom=x@mailer.example.net",
            ],
        );
        let verdict = sender_authenticated(&unaligned, OURS);
        assert!(!verdict.passed(), "{verdict}");
        assert_eq!(verdict, Authentication::Fail("dkim=pass spf=pass".into()));
    }

    #[test]
    fn failing_results_do_not_authenticate() {
        let m = mail(
            "alice@example.test",
            &[
                "mx.example.test; dkim=fail header.d=example.test; spf=fail smtp.mailfrom=alice@example.test; dmarc=fail",
            ],
        );
        assert!(!sender_authenticated(&m, OURS).passed());
    }

    #[test]
    fn a_header_added_by_another_server_is_not_believed() {
        // The sender (or a server on the way) wrote a passing result under its own id.
        let m = mail(
            "alice@example.test",
            &["mx.forger.example; dmarc=pass header.from=example.test"],
        );
        assert_eq!(sender_authenticated(&m, OURS), Authentication::Missing);
    }

    #[test]
    fn a_forged_header_with_our_id_below_ours_is_not_believed() {
        // Our server prepends its header; a forged one with our id travelled below it.
        let m = mail(
            "alice@example.test",
            &[
                "mx.example.test; dmarc=fail header.from=example.test",
                "mx.example.test; dmarc=pass header.from=example.test",
            ],
        );
        assert!(!sender_authenticated(&m, OURS).passed());
    }

    #[test]
    fn alignment_is_relaxed_but_not_loose() {
        assert!(aligned("example.test", "example.test"));
        assert!(aligned("mail.example.test", "example.test"));
        assert!(aligned("example.test", "eu.example.test"));
        assert!(!aligned("badexample.test", "example.test"));
        assert!(!aligned("", "example.test"));
    }
}
