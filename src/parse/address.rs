//! Mailboxes from address headers, and whether an address can be used at all.
//!
//! An address with an empty local part or domain (`@customers.example`, `zoe@`), or none at
//! all (`From: Marc`), is never a usable address: storing it would create a customer `""` or
//! `@domain` and queue acknowledgements that cannot be delivered.

use std::fmt;

use mail_parser::{Addr, Address};

use super::{Mailbox, clean_header_text};

/// Why the From header gives no usable address (RFC 5322 §3.4 `addr-spec` is `local@domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnusableFrom {
    /// No From header at all.
    Missing,
    /// A From header naming nobody's address (`From: Marc`, `From: <>`).
    NoAddress,
    /// `@domain`: the local part is empty.
    EmptyLocalPart(String),
    /// `local@`, or no `@` at all (`MAILER-DAEMON`): no domain.
    NoDomain(String),
    /// Something else that is not `local@domain` (white space, brackets, several `@`).
    Malformed(String),
}

impl fmt::Display for UnusableFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no From header"),
            Self::NoAddress => f.write_str("From names no address"),
            Self::EmptyLocalPart(a) => write!(f, "From address {a:?} has no local part"),
            Self::NoDomain(a) => write!(f, "From address {a:?} has no domain"),
            Self::Malformed(a) => write!(f, "From address {a:?} is not local@domain"),
        }
    }
}

/// Checks that `address` (lower-cased, brackets removed) is `local@domain` with both parts
/// present; returns what is wrong otherwise.
pub fn check(address: &str) -> Result<(), UnusableFrom> {
    if address.is_empty() {
        return Err(UnusableFrom::NoAddress);
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(UnusableFrom::NoDomain(address.to_string()));
    };
    if local.is_empty() {
        return Err(UnusableFrom::EmptyLocalPart(address.to_string()));
    }
    if domain.is_empty() {
        return Err(UnusableFrom::NoDomain(address.to_string()));
    }
    let quoted_local = local.len() >= 2 && local.starts_with('"') && local.ends_with('"');
    // RFC 5321 §4.1.3 address literal: `user@[192.0.2.1]`.
    let literal = domain.len() > 2 && domain.starts_with('[') && domain.ends_with(']');
    let bad_char = |c: char| c.is_whitespace() || c.is_control() || "<>()[],;:\\\"@".contains(c);
    let domain_body = if literal {
        &domain[1..domain.len() - 1]
    } else {
        domain
    };
    if domain_body.chars().any(bad_char)
        || domain.starts_with('.')
        || domain.ends_with('.')
        || (!quoted_local && local.chars().any(bad_char))
    {
        return Err(UnusableFrom::Malformed(address.to_string()));
    }
    Ok(())
}

/// The address of `addr` as we store it: trimmed, brackets removed, lower-cased.
fn normalized(addr: &Addr<'_>) -> String {
    addr.address
        .as_deref()
        .unwrap_or("")
        .trim()
        .trim_matches(['<', '>'])
        .trim()
        .to_ascii_lowercase()
}

/// An address with white space in it, made usable the way mail clients read it: white space
/// around dots dropped (RFC 5322 §4.4 obsolete `jdoe@machine.  example`), else the first
/// whitespace-separated word that is an address (`big bug bb@bug.com`, two addresses run
/// together).
fn despaced(address: &str) -> Option<String> {
    if !address.contains(char::is_whitespace) {
        return None;
    }
    let joined: String = {
        let mut out = String::with_capacity(address.len());
        let mut pending_space = false;
        for c in address.chars() {
            if c.is_whitespace() {
                pending_space = true;
                continue;
            }
            let last = out.chars().last();
            if pending_space && !(c == '.' || c == '@' || matches!(last, Some('.' | '@') | None)) {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        }
        out
    };
    if check(&joined).is_ok() {
        return Some(joined);
    }
    address
        .split_whitespace()
        .find(|w| check(w).is_ok())
        .map(str::to_string)
}

/// `addr` as a [`Mailbox`] when its address is usable.
pub fn to_mailbox(addr: &Addr<'_>) -> Option<Mailbox> {
    let mut address = normalized(addr);
    if check(&address).is_err() {
        address = despaced(&address)?;
    }
    Some(Mailbox {
        name: addr
            .name
            .as_ref()
            .map(|n| clean_header_text(n))
            .filter(|n| !n.is_empty()),
        address,
    })
}

/// The first usable mailbox of an address header; for a group, of its members.
pub fn first_mailbox(a: Option<&Address<'_>>) -> Option<Mailbox> {
    a?.iter().find_map(to_mailbox)
}

/// Every usable mailbox of an address header.
pub fn all_mailboxes(a: Option<&Address<'_>>) -> Vec<Mailbox> {
    a.map(|a| a.iter().filter_map(to_mailbox).collect())
        .unwrap_or_default()
}

/// Why `a` (a From header, None when absent) has no usable mailbox: the first address's
/// fault, or [`UnusableFrom::NoAddress`].
pub fn why_unusable(a: Option<&Address<'_>>) -> UnusableFrom {
    let Some(a) = a else {
        return UnusableFrom::Missing;
    };
    a.iter()
        .map(normalized)
        .find(|s| !s.is_empty())
        .and_then(|s| check(&s).err())
        .unwrap_or(UnusableFrom::NoAddress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_without_local_part_or_domain_are_unusable() {
        assert_eq!(check("zoe@customers.example"), Ok(()));
        assert_eq!(check("\"zoe b\"@customers.example"), Ok(()));
        assert_eq!(check("root@[192.0.2.1]"), Ok(()));
        assert_eq!(check(""), Err(UnusableFrom::NoAddress));
        assert!(matches!(
            check("@customers.example"),
            Err(UnusableFrom::EmptyLocalPart(_))
        ));
        assert!(matches!(check("zoe@"), Err(UnusableFrom::NoDomain(_))));
        assert!(matches!(
            check("mailer-daemon"),
            Err(UnusableFrom::NoDomain(_))
        ));
        for bad in [
            "zoe brunet@x.example",
            "jdoe@machine.  example",
            "<zoe@x.example",
            "zoe@x.example>",
            "a@b@",
            "z@.x",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_with_white_space_are_read_as_clients_read_them() {
        assert_eq!(
            despaced("jdoe@machine.  example").as_deref(),
            Some("jdoe@machine.example")
        );
        assert_eq!(
            despaced("big bug bb@bug.com").as_deref(),
            Some("bb@bug.com")
        );
        assert_eq!(
            despaced("tim@powerupdev.com concierge@powerupdev.com").as_deref(),
            Some("tim@powerupdev.com")
        );
        assert_eq!(despaced("zoe @"), None);
        assert_eq!(despaced("zoe@x.example"), None);
    }
}
