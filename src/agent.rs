//! Agents answer customers through supportd: who counts as an agent, and the commands an agent
//! writes at the top of a reply.
//!
//! Entry points: [`Agents::recognise`] says whether a message is an agent's (listed in
//! `[agents]` and, when required, vouched for by our own server's `Authentication-Results`);
//! [`Instructions::parse`] takes the `#command` lines off the top of the agent's new text;
//! [`Instructions::resolve`] checks their arguments against the categories and the agents.
//! The pipeline (`pipeline::agent`) acts on the result: relay, note, status, assignment.

use crate::config::{AgentsConfig, Config};
use crate::guard::{self, Authentication};
use crate::parse::ParsedMessage;
use crate::store::TicketStatus;

/// Who the agents are and how their mail is trusted.
#[derive(Debug, Clone)]
pub struct Agents {
    config: AgentsConfig,
    /// `guard.authserv_id`, when set.
    authserv_id: Option<String>,
    require_authentication: bool,
}

/// What [`Agents::recognise`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// An agent's mail, to act on.
    Agent,
    /// From an agent address, but our server did not vouch for it: handled as a customer's
    /// mail and never relayed.
    Unverified(String),
    /// Not an agent address.
    Other,
}

impl Agents {
    /// The agents of `config` (`[agents]`, `[support] agents`, `guard.authserv_id`).
    pub fn from_config(config: &Config) -> Agents {
        Agents {
            config: config.agents.clone(),
            authserv_id: config.guard.authserv_id.clone(),
            require_authentication: config.agents_need_authentication(),
        }
    }

    /// Returns true if and only if `address` (lower-case) is listed as an agent's.
    pub fn is_agent(&self, address: &str) -> bool {
        self.config.is_agent(address)
    }

    /// Whether `msg` is an agent's mail. A message passed in by a trusted door (`trusted`: the
    /// command line) needs no authentication results.
    pub fn recognise(&self, msg: &ParsedMessage, trusted: bool) -> Sender {
        if !self.is_agent(msg.from_address()) {
            return Sender::Other;
        }
        if trusted || !self.require_authentication {
            return Sender::Agent;
        }
        let verdict = match &self.authserv_id {
            Some(id) => guard::sender_authenticated(msg, id),
            None => Authentication::Missing,
        };
        if verdict.passed() {
            Sender::Agent
        } else {
            Sender::Unverified(verdict.to_string())
        }
    }

    /// The name customers see for `address`: `[agents] names`, else the display name of the
    /// agent's own mail, else the local part.
    pub fn display_name(&self, address: &str, from_name: Option<&str>) -> String {
        self.config
            .names
            .get(address)
            .map(String::as_str)
            .or(from_name.filter(|n| !n.trim().is_empty()))
            .map(str::to_owned)
            .unwrap_or_else(|| address.split('@').next().unwrap_or(address).to_owned())
    }

    /// The From display name of a relayed answer (`[agents] from_name`).
    pub fn from_name(&self, agent: &str, support_name: &str) -> String {
        self.config
            .from_name
            .replace("{agent}", agent)
            .replace("{support}", support_name)
    }

    /// The agent an `#assign` argument names: an agent address, or a name from `[agents]
    /// names` (case-insensitive).
    pub fn find(&self, who: &str) -> Option<String> {
        let lower = who.trim().to_ascii_lowercase();
        if lower.contains('@') {
            return self.is_agent(&lower).then_some(lower);
        }
        self.config
            .names
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(who.trim()))
            .map(|(address, _)| address.clone())
    }
}

/// One command line of an agent's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The whole mail is an internal note: stored, shown to the team, never sent.
    Note,
    /// Set the ticket's status.
    Status(TicketStatus),
    /// Move the ticket to another category (a rules file id).
    Category(String),
    /// Give the ticket to an agent (address or name).
    Assign(String),
}

/// The commands and the text of an agent's reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Instructions {
    pub commands: Vec<Command>,
    /// The new text without the command lines: what the customer receives.
    pub text: String,
}

/// The commands an agent can write, with what each does, for the answer to a mistake.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "#note",
        "internal note: stored and shown to the team, never sent to the customer",
    ),
    ("#close", "close the ticket"),
    (
        "#pending",
        "waiting on the customer: the response clock pauses",
    ),
    ("#open", "open the ticket again"),
    (
        "#category ID",
        "move the ticket to category ID (a rules file id)",
    ),
    (
        "#assign WHO",
        "give the ticket to an agent (address or name)",
    ),
];

impl Instructions {
    /// Takes the command lines off the top of `new_text`: leading lines (blank lines between
    /// them allowed) whose words each start with `#`, e.g. `#close` or `#assign alice
    /// #pending`. The first other line starts the text.
    ///
    /// # Errors
    /// Every unknown command or missing argument, one message each.
    pub fn parse(new_text: &str) -> Result<Instructions, Vec<String>> {
        let mut commands = Vec::new();
        let mut errors = Vec::new();
        let mut lines = new_text.lines().peekable();
        let mut consumed = 0;
        while let Some(line) = lines.peek() {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                lines.next();
                consumed += 1;
                continue;
            }
            if !trimmed.starts_with('#') {
                break;
            }
            parse_line(trimmed, &mut commands, &mut errors);
            lines.next();
            consumed += 1;
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let text = new_text
            .lines()
            .skip(consumed)
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_owned();
        Ok(Instructions { commands, text })
    }

    /// Checks the arguments: `#category` must name a category in `categories`, `#assign` an
    /// agent; the assignee is replaced by the agent's address.
    ///
    /// # Errors
    /// One message per argument that names nothing.
    pub fn resolve(mut self, categories: &[String], agents: &Agents) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        for command in &mut self.commands {
            match command {
                Command::Category(id) => {
                    let lower = id.to_ascii_lowercase();
                    if categories.contains(&lower) {
                        *id = lower;
                    } else {
                        errors.push(format!(
                            "#category {id}: no such category (one of: {})",
                            categories.join(", ")
                        ));
                    }
                }
                Command::Assign(who) => match agents.find(who) {
                    Some(address) => *who = address,
                    None => errors.push(format!(
                        "#assign {who}: not an agent address or a name in [agents] names"
                    )),
                },
                Command::Note | Command::Status(_) => {}
            }
        }
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(errors)
        }
    }

    /// Returns true if and only if the mail is an internal note.
    pub fn is_note(&self) -> bool {
        self.commands.contains(&Command::Note)
    }

    /// The last status command, if any.
    pub fn status(&self) -> Option<TicketStatus> {
        self.commands.iter().rev().find_map(|c| match c {
            Command::Status(s) => Some(*s),
            _ => None,
        })
    }
}

/// One line of `#word [argument]` groups.
fn parse_line(line: &str, commands: &mut Vec<Command>, errors: &mut Vec<String>) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        // An argument is the next word when it is not itself a command.
        let argument = words.get(i + 1).filter(|w| !w.starts_with('#')).copied();
        let name = word.trim_start_matches('#').to_ascii_lowercase();
        let mut takes_argument = false;
        match name.as_str() {
            "note" => commands.push(Command::Note),
            "close" => commands.push(Command::Status(TicketStatus::Closed)),
            "pending" => commands.push(Command::Status(TicketStatus::Pending)),
            "open" => commands.push(Command::Status(TicketStatus::Open)),
            "category" | "assign" => match argument {
                Some(arg) => {
                    takes_argument = true;
                    commands.push(if name == "category" {
                        Command::Category(arg.to_owned())
                    } else {
                        Command::Assign(arg.to_owned())
                    });
                }
                None => errors.push(format!("{word}: needs an argument")),
            },
            _ if !word.starts_with('#') => {
                errors.push(format!("{word:?}: not a command (commands start with #)"))
            }
            _ => errors.push(format!("{word}: unknown command")),
        }
        i += if takes_argument { 2 } else { 1 };
    }
}

/// The agent notice's list of commands, one per line.
pub fn command_help() -> String {
    COMMANDS
        .iter()
        .map(|(c, what)| format!("  {c:<14} {what}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agents() -> Agents {
        let mut config = AgentsConfig {
            addresses: vec!["alice@example.test".into(), "bob@example.test".into()],
            names: [("alice@example.test".to_owned(), "Alice".to_owned())].into(),
            ..AgentsConfig::default()
        };
        config.normalise(&[]);
        Agents {
            config,
            authserv_id: Some("mx.example.test".into()),
            require_authentication: true,
        }
    }

    #[test]
    fn leading_command_lines_are_taken_off_and_the_text_kept() {
        let parsed = Instructions::parse(
            "#pending\n\n#assign alice #category Billing\nHello,\n#1 is fixed.",
        )
        .unwrap();
        assert_eq!(
            parsed.commands,
            vec![
                Command::Status(TicketStatus::Pending),
                Command::Assign("alice".into()),
                Command::Category("Billing".into()),
            ]
        );
        assert_eq!(parsed.text, "Hello,\n#1 is fixed.");
    }

    #[test]
    fn mail_without_commands_is_all_text() {
        let parsed = Instructions::parse("Hello,\n\nIt works now.\n").unwrap();
        assert!(parsed.commands.is_empty());
        assert_eq!(parsed.text, "Hello,\n\nIt works now.");
    }

    #[test]
    fn a_note_with_several_commands_on_one_line() {
        let parsed = Instructions::parse("#note #close\nCustomer called, sorted.").unwrap();
        assert!(parsed.is_note());
        assert_eq!(parsed.status(), Some(TicketStatus::Closed));
    }

    #[test]
    fn unknown_commands_and_missing_arguments_are_each_reported() {
        let errors = Instructions::parse("#clsoe #assign\nHello").unwrap_err();
        assert_eq!(
            errors,
            vec!["#clsoe: unknown command", "#assign: needs an argument"]
        );
        let errors = Instructions::parse("#close now\nHello").unwrap_err();
        assert_eq!(
            errors,
            vec!["\"now\": not a command (commands start with #)"]
        );
    }

    #[test]
    fn arguments_must_name_a_category_or_an_agent() {
        let categories = vec!["billing".to_owned(), "technical".to_owned()];
        let ok = Instructions::parse("#category BILLING #assign alice\nx")
            .unwrap()
            .resolve(&categories, &agents())
            .unwrap();
        assert_eq!(
            ok.commands,
            vec![
                Command::Category("billing".into()),
                Command::Assign("alice@example.test".into())
            ]
        );
        let by_address = Instructions::parse("#assign Bob@Example.test\nx")
            .unwrap()
            .resolve(&categories, &agents())
            .unwrap();
        assert_eq!(
            by_address.commands,
            vec![Command::Assign("bob@example.test".into())]
        );
        let errors = Instructions::parse("#category refunds #assign mallory@evil.example\nx")
            .unwrap()
            .resolve(&categories, &agents())
            .unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].starts_with("#category refunds: no such category"));
    }

    #[test]
    fn agent_mail_needs_our_servers_authentication_unless_trusted() {
        let raw = |results: &str| {
            crate::parse::parse(
                format!("{results}From: Alice <alice@example.test>\r\nTo: support@example.test\r\nSubject: x\r\nMessage-ID: <m@x>\r\n\r\nhi\r\n").as_bytes(),
            )
        };
        let a = agents();
        let signed =
            raw("Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\r\n");
        assert_eq!(a.recognise(&signed, false), Sender::Agent);
        let unsigned = raw("");
        assert!(matches!(
            a.recognise(&unsigned, false),
            Sender::Unverified(_)
        ));
        assert_eq!(a.recognise(&unsigned, true), Sender::Agent);
        let customer = crate::parse::parse(b"From: c@customer.example\r\nSubject: x\r\n\r\nhi\r\n");
        assert_eq!(a.recognise(&customer, false), Sender::Other);
    }

    #[test]
    fn display_names_come_from_the_config_then_the_mail_then_the_address() {
        let a = agents();
        assert_eq!(
            a.display_name("alice@example.test", Some("A. Smith")),
            "Alice"
        );
        assert_eq!(
            a.display_name("bob@example.test", Some("Bob Jones")),
            "Bob Jones"
        );
        assert_eq!(a.display_name("bob@example.test", None), "bob");
        assert_eq!(
            a.from_name("Alice", "Support Chatim"),
            "Alice (Support Chatim)"
        );
    }
}
