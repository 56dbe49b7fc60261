//! `[agents]`: who answers customers through supportd, and how the customer sees them.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The team members whose mail to a ticket is relayed to its customer.
///
/// An address is an agent's when it is listed in `addresses` or its domain in `domains`
/// (compared lower-case). `[support] agents = [...]`, the older key, is merged into
/// `addresses` when the file is read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// Agents' addresses.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Domains all of whose addresses are agents (`example.test`, without `@`).
    #[serde(default)]
    pub domains: Vec<String>,
    /// The name a customer sees for an agent, by address: `{ "alice@example.test" = "Alice" }`.
    /// Without one, the display name of the agent's own mail is used, else the address's local
    /// part.
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    /// Take mail from an agent address as the agent's only when our own receiving server's
    /// `Authentication-Results` (`guard.authserv_id`) shows DMARC, or DKIM or SPF aligned with
    /// the From domain, passing. Default: on when `guard.authserv_id` is set.
    pub require_authentication: Option<bool>,
    /// The From display name of a relayed answer; `{agent}` and `{support}` (the support name)
    /// are replaced: `"{agent} ({support})"` gives `"Alice (Support Chatim)" <support@...>`.
    #[serde(default = "default_from_name")]
    pub from_name: String,
}

fn default_from_name() -> String {
    "{agent} ({support})".into()
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            addresses: Vec::new(),
            domains: Vec::new(),
            names: BTreeMap::new(),
            require_authentication: None,
            from_name: default_from_name(),
        }
    }
}

impl AgentsConfig {
    /// Lower-cases the lists and the names' keys, so lookups compare like with like.
    pub(crate) fn normalise(&mut self, legacy: &[String]) {
        let lower = |v: &mut Vec<String>| {
            for a in v.iter_mut() {
                *a = a.trim().trim_start_matches('@').to_ascii_lowercase();
            }
        };
        self.addresses.extend(legacy.iter().cloned());
        lower(&mut self.addresses);
        self.addresses.sort();
        self.addresses.dedup();
        lower(&mut self.domains);
        self.names = std::mem::take(&mut self.names)
            .into_iter()
            .map(|(a, n)| (a.trim().to_ascii_lowercase(), n))
            .collect();
    }

    /// Returns true if and only if `address` (lower-case) is an agent's.
    pub fn is_agent(&self, address: &str) -> bool {
        if address.is_empty() {
            return false;
        }
        self.addresses.iter().any(|a| a == address)
            || address
                .rsplit_once('@')
                .is_some_and(|(_, d)| self.domains.iter().any(|a| a == d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_listed_addresses_or_addresses_in_listed_domains_compared_lower_case() {
        let mut agents = AgentsConfig {
            addresses: vec!["Alice@Example.test".into()],
            domains: vec!["@Team.Example.test".into()],
            ..AgentsConfig::default()
        };
        agents.normalise(&["bob@example.test".into()]);
        assert!(agents.is_agent("alice@example.test"));
        assert!(agents.is_agent("bob@example.test"));
        assert!(agents.is_agent("carol@team.example.test"));
        assert!(!agents.is_agent("carol@example.test"));
        assert!(!agents.is_agent("mallory@notteam.example.test"));
        assert!(!agents.is_agent(""));
    }
}
