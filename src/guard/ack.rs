//! May we acknowledge this request? The automated-mail verdict ([`super::inspect`]) says whether
//! a message came from a machine; this says whether a person's request may be answered now:
//! not to ourselves, not to an address that bounces, not for mail received long ago, and not
//! more often than the per-sender limits (RFC 3834 §2: "an automatic responder [...] should not
//! respond more than once [...] in a period").
//!
//! Entry point: [`may_acknowledge`], pure logic over an [`AckHistory`] the pipeline answers
//! from the store.

use std::time::Duration;

use crate::store::StoreError;

/// Limits on acknowledgements, from `[guard]` and `[support]`.
#[derive(Debug, Clone)]
pub struct AckPolicy {
    /// Our own addresses, lower-cased: never acknowledged.
    pub own_addresses: Vec<String>,
    /// Acknowledgements to one address in any hour (`guard.max_acks_per_hour`).
    pub max_per_hour: u32,
    /// Acknowledgements to one address in any 24 hours (`guard.max_acks_per_day`).
    pub max_per_day: u32,
    /// Mail the server received longer ago than this gets no acknowledgement
    /// (`guard.max_ack_age`; zero turns the check off).
    pub max_age: Duration,
    /// With `guard.acknowledge = "authenticated"`: our server's authserv-id, whose
    /// `Authentication-Results` must vouch for the sender before we answer.
    pub authenticated_only: Option<String>,
}

impl AckPolicy {
    /// The limits `[guard]` sets, for our own addresses (`[support]` address and aliases).
    pub fn from_config(config: &crate::config::Config) -> AckPolicy {
        AckPolicy {
            own_addresses: config.own_addresses(),
            max_per_hour: config.guard.max_acks_per_hour,
            max_per_day: config.guard.max_acks_per_day,
            max_age: config.guard.max_ack_age,
            authenticated_only: match config.guard.acknowledge {
                crate::config::AcknowledgeMode::Authenticated => config.guard.authserv_id.clone(),
                crate::config::AcknowledgeMode::Always => None,
            },
        }
    }

    /// With `guard.acknowledge = "authenticated"`, why `msg` may not be answered: our server did
    /// not vouch for its sender, who may be forged (an answer would be backscatter).
    pub fn unauthenticated(&self, msg: &crate::parse::ParsedMessage) -> Option<Refusal> {
        let authserv_id = self.authenticated_only.as_deref()?;
        let verdict = super::sender_authenticated(msg, authserv_id);
        (!verdict.passed()).then(|| Refusal::Unauthenticated(verdict.to_string()))
    }
}

/// What is known of earlier mail to an address.
pub trait AckHistory {
    /// Returns true if and only if mail to `address` bounced and nothing has cleared it since.
    ///
    /// # Errors
    /// Database errors.
    fn is_bouncing(&self, address: &str) -> Result<bool, StoreError>;

    /// How many acknowledgements to `address` were decided at or after `since` (unix seconds),
    /// counting those not yet in the outbox.
    ///
    /// # Errors
    /// Database errors.
    fn acks_since(&self, address: &str, since: i64) -> Result<u32, StoreError>;
}

/// Why an acknowledgement is withheld. `Display` gives the reason recorded for the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The message has no usable sender address.
    NoSender,
    /// The mail server received it `age_secs` seconds ago, more than `guard.max_ack_age`.
    TooOld { age_secs: i64 },
    /// The sender is one of our own addresses.
    OwnAddress,
    /// Mail to the sender bounces.
    Bouncing,
    /// The sender had this many acknowledgements in the last hour already.
    HourlyLimit(u32),
    /// The sender had this many acknowledgements in the last day already.
    DailyLimit(u32),
    /// `guard.acknowledge = "authenticated"` and our server did not vouch for the sender.
    Unauthenticated(String),
    /// The guard found human mail that must not be acknowledged; the reason says why
    /// ([`super::Verdict::withhold`]).
    Withheld(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoSender => f.write_str("no sender address"),
            Refusal::TooOld { age_secs } => write!(
                f,
                "received {} ago, over guard.max_ack_age",
                wording_age(*age_secs)
            ),
            Refusal::OwnAddress => f.write_str("sender is our own address"),
            Refusal::Bouncing => f.write_str("address is bouncing"),
            Refusal::HourlyLimit(n) => write!(f, "rate limit: {n} per hour"),
            Refusal::DailyLimit(n) => write!(f, "rate limit: {n} per day"),
            Refusal::Unauthenticated(why) => write!(f, "sender {why}"),
            Refusal::Withheld(reason) => f.write_str(reason),
        }
    }
}

/// Decides whether an acknowledgement may go to `to` (lower-cased) for mail the server received
/// at `delivered_at` (unix seconds, when known), at `now`. `withhold` is the guard's reason to
/// answer this person's mail with nothing ([`super::Verdict::withhold`]).
///
/// Checks run cheapest first, so the history is asked only when it matters.
///
/// # Errors
/// The history could not be read; the caller decides nothing then.
pub fn may_acknowledge(
    policy: &AckPolicy,
    history: &impl AckHistory,
    to: &str,
    withhold: Option<&str>,
    delivered_at: Option<i64>,
    now: i64,
) -> Result<Result<(), Refusal>, StoreError> {
    if to.is_empty() {
        return Ok(Err(Refusal::NoSender));
    }
    let max_age = i64::try_from(policy.max_age.as_secs()).unwrap_or(i64::MAX);
    if let Some(at) = delivered_at {
        let age_secs = now.saturating_sub(at);
        if max_age > 0 && age_secs > max_age {
            return Ok(Err(Refusal::TooOld { age_secs }));
        }
    }
    if policy.own_addresses.iter().any(|a| a == to) {
        return Ok(Err(Refusal::OwnAddress));
    }
    if let Some(reason) = withhold {
        return Ok(Err(Refusal::Withheld(reason.to_string())));
    }
    if history.is_bouncing(to)? {
        return Ok(Err(Refusal::Bouncing));
    }
    if history.acks_since(to, now - 3600)? >= policy.max_per_hour {
        return Ok(Err(Refusal::HourlyLimit(policy.max_per_hour)));
    }
    if history.acks_since(to, now - 86400)? >= policy.max_per_day {
        return Ok(Err(Refusal::DailyLimit(policy.max_per_day)));
    }
    Ok(Ok(()))
}

/// "3 days", "5 hours": for a reason an admin reads.
fn wording_age(secs: i64) -> String {
    match secs {
        s if s >= 2 * 86400 => format!("{} days", s / 86400),
        s if s >= 2 * 3600 => format!("{} hours", s / 3600),
        s => format!("{} minutes", s / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const NOW: i64 = 1_800_000_000;

    /// Acknowledgements sent at the given times; `bouncing` addresses bounce. Counts how often
    /// it was asked, to show the cheap checks come first.
    #[derive(Default)]
    struct Past {
        acks: Vec<(&'static str, i64)>,
        bouncing: Vec<&'static str>,
        asked: Cell<u32>,
    }

    impl AckHistory for Past {
        fn is_bouncing(&self, address: &str) -> Result<bool, StoreError> {
            self.asked.set(self.asked.get() + 1);
            Ok(self.bouncing.contains(&address))
        }
        fn acks_since(&self, address: &str, since: i64) -> Result<u32, StoreError> {
            self.asked.set(self.asked.get() + 1);
            Ok(self
                .acks
                .iter()
                .filter(|(a, t)| *a == address && *t >= since)
                .count() as u32)
        }
    }

    fn policy() -> AckPolicy {
        AckPolicy {
            own_addresses: vec!["support@example.test".into(), "help@example.test".into()],
            max_per_hour: 3,
            max_per_day: 10,
            max_age: Duration::from_secs(7 * 86400),
            authenticated_only: None,
        }
    }

    fn decide(past: &Past, to: &str, delivered_at: Option<i64>) -> Result<(), Refusal> {
        may_acknowledge(&policy(), past, to, None, delivered_at, NOW).unwrap()
    }

    #[test]
    fn a_first_request_from_a_person_is_acknowledged() {
        assert_eq!(
            decide(&Past::default(), "ann@example.net", Some(NOW - 5)),
            Ok(())
        );
    }

    #[test]
    fn no_sender_and_our_own_addresses_are_never_acknowledged_and_the_store_is_not_asked() {
        let past = Past::default();
        assert_eq!(decide(&past, "", None), Err(Refusal::NoSender));
        assert_eq!(
            decide(&past, "help@example.test", None),
            Err(Refusal::OwnAddress)
        );
        assert_eq!(past.asked.get(), 0);
    }

    #[test]
    fn mail_received_long_ago_is_not_acknowledged_and_the_reason_says_how_long() {
        let refusal = decide(&Past::default(), "ann@example.net", Some(NOW - 9 * 86400));
        assert_eq!(
            refusal,
            Err(Refusal::TooOld {
                age_secs: 9 * 86400
            })
        );
        assert_eq!(
            refusal.unwrap_err().to_string(),
            "received 9 days ago, over guard.max_ack_age"
        );
        // Unknown delivery time, or the check turned off: answered.
        assert_eq!(decide(&Past::default(), "ann@example.net", None), Ok(()));
        let off = AckPolicy {
            max_age: Duration::ZERO,
            ..policy()
        };
        let old = may_acknowledge(
            &off,
            &Past::default(),
            "ann@example.net",
            None,
            Some(0),
            NOW,
        );
        assert_eq!(old.unwrap(), Ok(()));
    }

    #[test]
    fn a_bouncing_address_gets_nothing() {
        let past = Past {
            bouncing: vec!["gone@example.net"],
            ..Past::default()
        };
        assert_eq!(
            decide(&past, "gone@example.net", None),
            Err(Refusal::Bouncing)
        );
        assert_eq!(decide(&past, "ann@example.net", None), Ok(()));
    }

    #[test]
    fn mail_the_guard_withholds_gets_nothing_with_the_guards_reason_and_the_store_is_not_asked() {
        let past = Past::default();
        let reason = "the sender asked for no automatic reply (x-auto-response-suppress: All)";
        let refusal = may_acknowledge(&policy(), &past, "ann@example.net", Some(reason), None, NOW);
        assert_eq!(refusal.unwrap(), Err(Refusal::Withheld(reason.into())));
        assert_eq!(Refusal::Withheld(reason.into()).to_string(), reason);
        assert_eq!(past.asked.get(), 0);
        // Our own address stays refused as such.
        let own = may_acknowledge(
            &policy(),
            &past,
            "help@example.test",
            Some(reason),
            None,
            NOW,
        );
        assert_eq!(own.unwrap(), Err(Refusal::OwnAddress));
    }

    #[test]
    fn the_hourly_limit_counts_the_last_hour_and_the_daily_limit_the_last_day() {
        let hour = Past {
            acks: vec![("ann@example.net", NOW - 10); 3],
            ..Past::default()
        };
        let refusal = decide(&hour, "ann@example.net", None);
        assert_eq!(refusal, Err(Refusal::HourlyLimit(3)));
        assert_eq!(refusal.unwrap_err().to_string(), "rate limit: 3 per hour");
        // Three over an hour ago: the hour is free again, the day is not full.
        let earlier = Past {
            acks: vec![("ann@example.net", NOW - 7200); 3],
            ..Past::default()
        };
        assert_eq!(decide(&earlier, "ann@example.net", None), Ok(()));
        let day = Past {
            acks: vec![("ann@example.net", NOW - 7200); 10],
            ..Past::default()
        };
        assert_eq!(
            decide(&day, "ann@example.net", None),
            Err(Refusal::DailyLimit(10))
        );
        // Other senders' acknowledgements do not count.
        assert_eq!(decide(&day, "bob@example.net", None), Ok(()));
    }
}

#[cfg(test)]
mod authenticated_only {
    use super::*;

    #[test]
    fn only_senders_our_server_vouched_for_are_answered_when_so_configured() {
        let policy = AckPolicy {
            own_addresses: Vec::new(),
            max_per_hour: 3,
            max_per_day: 10,
            max_age: Duration::ZERO,
            authenticated_only: Some("mx.example.test".into()),
        };
        let mail = |results: &str| {
            crate::parse::parse(
                format!("{results}From: ann@example.net\r\nSubject: x\r\n\r\nhello\r\n").as_bytes(),
            )
        };
        let vouched =
            mail("Authentication-Results: mx.example.test; dmarc=pass header.from=example.net\r\n");
        assert_eq!(policy.unauthenticated(&vouched), None);
        let forged = mail(
            "Authentication-Results: mx.example.test; spf=fail smtp.mailfrom=ann@example.net\r\n",
        );
        let refusal = policy.unauthenticated(&forged).expect("refused");
        assert_eq!(refusal.to_string(), "sender not authenticated (spf=fail)");
        let always = AckPolicy {
            authenticated_only: None,
            ..policy
        };
        assert_eq!(always.unauthenticated(&forged), None);
    }
}
