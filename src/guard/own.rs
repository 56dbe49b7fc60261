//! What in a message names us: our own addresses in loop headers (our mail coming back), list
//! headers of a group or list that stands in front of the support address (a person writing to
//! us through it), and the DMARC rewrite such a group makes of the sender.
//!
//! Addresses compare lower-cased, with a `+detail` ignored (`support+billing@` is ours), and a
//! list's own service addresses (`help-owner@`, `help+owners@`, `help-request@`) count as the
//! list's.

use crate::parse::{Mailbox, ParsedMessage};

use super::GuardPolicy;

/// Every `local@domain` in a header value, lower-cased, with any `mailto:` and brackets gone.
pub(super) fn addresses_in(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>' | '"' | '(' | ')'))
        .map(|w| {
            let w = w.trim_matches(['\'', '`', '[', ']', '.', ':']);
            let w = w
                .strip_prefix("mailto:")
                .or_else(|| w.strip_prefix("MAILTO:"))
                .unwrap_or(w);
            // A mailto: URL's query (`?subject=...`) is not part of the address.
            w.split('?').next().unwrap_or("").to_ascii_lowercase()
        })
        .filter(|w| {
            w.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'))
        })
}

/// The service addresses Mailman, ezmlm and Sympa put beside a list `name@` as `name-<service>@`.
const LIST_SERVICE: &[&str] = &[
    "admin",
    "bounces",
    "confirm",
    "digest",
    "help",
    "join",
    "leave",
    "owner",
    "owners",
    "request",
    "subscribe",
    "unsubscribe",
];

/// `local` without a `+detail`.
fn base_local(local: &str) -> &str {
    local.split_once('+').map_or(local, |(l, _)| l)
}

impl GuardPolicy {
    /// Whether `address` (lower-case) is one of our own addresses, a `+detail` of one included.
    pub fn is_own(&self, address: &str) -> bool {
        let Some((local, domain)) = address.rsplit_once('@') else {
            return false;
        };
        self.own_addresses.iter().any(|own| {
            own == address
                || own
                    .rsplit_once('@')
                    .is_some_and(|(ol, od)| od == domain && base_local(ol) == base_local(local))
        })
    }

    /// The own address a list address belongs to: the address itself, or a list's service
    /// address beside it (`help-owner@`, `help-request@`, `help+owners@`).
    fn own_list_address(&self, address: &str) -> Option<&str> {
        let (local, domain) = address.rsplit_once('@')?;
        self.own_addresses
            .iter()
            .find(|own| {
                own.rsplit_once('@').is_some_and(|(ol, od)| {
                    od == domain
                        && base_local(local)
                            .strip_prefix(base_local(ol))
                            .is_some_and(|rest| {
                                rest.is_empty()
                                    || rest
                                        .strip_prefix('-')
                                        .is_some_and(|s| LIST_SERVICE.contains(&s))
                            })
                })
            })
            .map(String::as_str)
    }

    /// The own address a List-Id names: Google Groups and Mailman spell the list
    /// `help@example.test` as `<help.example.test>` (RFC 2919 §2: local part, a dot, domain).
    fn own_list_id(&self, id: &str) -> Option<&str> {
        self.own_addresses
            .iter()
            .find(|own| {
                own.as_str() == id
                    || own
                        .rsplit_once('@')
                        .is_some_and(|(l, d)| format!("{}.{d}", base_local(l)) == id)
            })
            .map(String::as_str)
    }
}

/// Our own address in a loop header (`X-Loop` and its kin: `X-OTRS-Loop`, `X-Zammad-Loop`,
/// `X-RT-Loop-Prevention`, `X-Mailer-Loop`, Exchange's `X-MS-Exchange-Inbox-Rules-Loop`, ...),
/// or the same own address delivered to three times (`Delivered-To`, RFC 9228: each delivery
/// adds one). Twice is not enough: a message re-sent as it was stored (a copy an admin injects
/// again, a customer redirecting our mail back with its headers) carries our first one, and
/// Dovecot's LMTP adds the second; a loop goes round more than once.
/// Returns the reason.
pub(super) fn loop_naming_us(msg: &ParsedMessage, policy: &GuardPolicy) -> Option<String> {
    for (name, value) in &msg.headers {
        if name.starts_with("x-")
            && name.contains("loop")
            && name != "x-supportd-loop"
            && let Some(own) = addresses_in(value).find(|a| policy.is_own(a))
        {
            return Some(format!("{name}: {own}"));
        }
    }
    let mut seen: Vec<String> = Vec::new();
    for value in msg.header_all("delivered-to") {
        for address in addresses_in(value).filter(|a| policy.is_own(a)) {
            if seen.iter().filter(|s| **s == address).count() >= 2 {
                return Some(format!("delivered-to three times: {address}"));
            }
            seen.push(address);
        }
    }
    None
}

/// Headers that say which list relayed a message (RFC 2369, RFC 2919, Mailman's `X-BeenThere`,
/// ezmlm's `Mailing-List`, `X-Mailing-List`). List-Unsubscribe and the like are left out: list
/// hosts put their own management addresses there (Google Groups: `googlegroups-manage+...`).
const LIST_IDENTITY: &[&str] = &[
    "list-id",
    "x-beenthere",
    "list-post",
    "mailing-list",
    "x-mailing-list",
];

/// Every header that only list software sets.
pub(super) const LIST_HEADERS: &[&str] = &[
    "list-id",
    "list-post",
    "list-subscribe",
    "list-help",
    "list-owner",
    "list-archive",
    "mailing-list",
    "x-mailing-list",
    "x-mlserver",
    "x-ml-name",
    "x-beenthere",
    "x-google-group-id",
];

/// Who runs the list that relayed a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ListOwner {
    /// No list header names a list.
    Unnamed,
    /// Every list named is ours (a group or list in front of the support address); the reason
    /// names the header and our address.
    Ours(String),
    /// A list of someone else's.
    Foreign,
}

/// Which list the list headers name. A list is ours when at least one identity header names
/// one of our addresses and none names another list (our group relaying someone else's list
/// traffic is that list's traffic).
pub(super) fn list_owner(msg: &ParsedMessage, policy: &GuardPolicy) -> ListOwner {
    let mut ours: Option<String> = None;
    let mut foreign = false;
    for &name in LIST_IDENTITY {
        for value in msg.header_all(name) {
            if name == "list-id" {
                let id = list_id(value);
                if id.is_empty() {
                    continue;
                }
                match policy.own_list_id(&id) {
                    Some(own) => {
                        ours.get_or_insert_with(|| format!("{name} <{id}> names {own}"));
                    }
                    None => foreign = true,
                }
                continue;
            }
            for address in addresses_in(value) {
                match policy.own_list_address(&address) {
                    Some(own) => {
                        ours.get_or_insert_with(|| format!("{name} names {own}"));
                    }
                    None => foreign = true,
                }
            }
        }
    }
    match (ours, foreign) {
        (_, true) => ListOwner::Foreign,
        (Some(reason), false) => ListOwner::Ours(reason),
        (None, false) => ListOwner::Unnamed,
    }
}

/// The identifier of a List-Id value (`"Help" <help.example.test>` or a bare id), lower-case.
fn list_id(value: &str) -> String {
    let inner = match (value.rfind('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value,
    };
    inner.trim().to_ascii_lowercase()
}

/// The person behind our own group's DMARC rewrite: when a group or list in front of the
/// support address relays mail from a domain with a strict DMARC policy, it sends it `From:
/// 'Name' via Group <group@...>` and keeps the author in `X-Original-From` (Google Groups) or
/// `Reply-To` (Google Groups, Mailman's `from_is_list`). Returns that author when From is one of
/// our addresses and the author is not; `Reply-To` counts only with a sign of the relay (list
/// headers, or the "via" name), since a colleague writing from the support address may set it.
pub(super) fn dmarc_author(msg: &ParsedMessage, policy: &GuardPolicy) -> Option<Mailbox> {
    let from = msg.from.as_ref()?;
    if !policy.is_own(&from.address) {
        return None;
    }
    if let Some(author) = msg
        .header_all("x-original-from")
        .find_map(mailbox_in)
        .filter(|m| !policy.is_own(&m.address))
    {
        return Some(author);
    }
    let relayed = LIST_HEADERS.iter().any(|h| msg.header(h).is_some())
        || from
            .name
            .as_deref()
            .is_some_and(|n| n.to_ascii_lowercase().contains(" via "));
    msg.reply_to
        .clone()
        .filter(|m| relayed && !policy.is_own(&m.address))
}

/// The first mailbox of a header value: `Name <local@domain>`, `"Name" <...>` or a bare address.
fn mailbox_in(value: &str) -> Option<Mailbox> {
    let address = addresses_in(value).next()?;
    let name = value
        .find('<')
        .map(|i| {
            value[..i]
                .trim()
                .trim_matches(['"', '\''])
                .trim()
                .to_string()
        })
        .filter(|n| !n.is_empty() && !n.contains('@'));
    Some(Mailbox { name, address })
}
