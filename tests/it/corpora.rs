//! The parser and the guard against real mail nobody on this project wrote
//! (`../shared/corpora`, see its README). `cargo test --test it corpora -- --nocapture` prints
//! the summary table.
//!
//! Thresholds are the measured results: every labelled bounce, auto-reply and report flagged,
//! no human-labelled message flagged. Skipped, with a clear line, when the corpora are absent.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use supportd::config::GuardConfig;
use supportd::guard::{Automated, AutomatedKind, GuardPolicy, inspect};
use supportd::parse::{ParsedMessage, parse};

use crate::helpers::crate_dir;

/// Labelled automated, looked at by hand, and rightly acknowledged: a person forwarding a
/// bounce ("Fwd: Returned mail…", "Forward the message.") is asking for help with it.
const HUMAN_FORWARDS: &[&str] = &["lhost-sendmail-14.eml"];

/// Labelled `is_bounce` in bounceparser/expected.json, but plain spam written to look personal
/// (no DSN, no MTA sender); the upstream tests only check that no bogus reports come out.
/// Acknowledging human-looking spam is accepted.
const SPAM_LABELLED_BOUNCE: &[&str] = &[
    "spam-bogus-email-in-report.msg",
    "spam-lots-of-bogus-addresses.msg",
    "spam-with-image.msg",
];

/// Measured floors for the Message-ID extraction (many sisimai samples are anonymised to the
/// bounce's own id, or return no original at all).
const SISIMAI_BSD_BOUNCES_WITH_ID: usize = 483;
const BOUNCEPARSER_BOUNCES_WITH_ID: usize = 107;

/// Measured floor for the failed recipient: delivery-status fields, `X-Failed-Recipients`, or
/// the MTA's own words (qmail, Exim, Postfix, sendmail, Exchange, Notes, ...). 380 before the
/// plain-text reading.
const SISIMAI_BSD_BOUNCES_WITH_RECIPIENT: usize = 531;

fn corpora() -> Option<PathBuf> {
    let dir = crate_dir().join("../shared/corpora");
    dir.is_dir().then_some(dir)
}

fn policy() -> GuardPolicy {
    GuardPolicy::new(
        vec!["support@example.test".into()],
        "example.test",
        GuardConfig::default().robot_local_parts.regex().clone(),
    )
}

/// Every message file under `dir`, recursively, sorted; metadata files left out.
fn messages(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let skip = name.ends_with(".json")
                || name.ends_with(".py")
                || name.ends_with(".rb")
                || name.ends_with(".sh")
                || name.starts_with("SOURCE")
                || name.starts_with("LICENSE")
                || name.starts_with("README")
                || name.starts_with('.');
            if !skip {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

struct Row {
    name: String,
    total: usize,
    flagged: usize,
    extra: String,
}

struct Checked {
    path: PathBuf,
    msg: ParsedMessage,
    verdict: Option<Automated>,
}

fn check_all(files: &[PathBuf], policy: &GuardPolicy) -> Vec<Checked> {
    files
        .iter()
        .map(|p| {
            let raw = fs::read(p).unwrap();
            let msg = parse(&raw);
            let verdict = inspect(&msg, policy).automated;
            Checked {
                path: p.clone(),
                msg,
                verdict,
            }
        })
        .collect()
}

fn kinds(checked: &[Checked]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for c in checked {
        if let Some(v) = &c.verdict {
            *by.entry(format!("{:?}", v.kind)).or_default() += 1;
        }
    }
    by.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CORPORA_VERBOSE=1` prints one line per human-corpus message, for looking at by hand.
fn verbose() -> bool {
    std::env::var_os("CORPORA_VERBOSE").is_some()
}

fn name_of(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// What the sisimai label says the guard should call it.
fn sisimai_kind(reason: &str) -> AutomatedKind {
    match reason {
        "feedback" | "delivered" => AutomatedKind::Report,
        "vacation" => AutomatedKind::AutoReply,
        _ => AutomatedKind::Bounce,
    }
}

#[test]
fn real_corpora_are_parsed_and_guarded() {
    let Some(root) = corpora() else {
        println!("corpora absent, skipped (looked for ../shared/corpora beside the crate)");
        return;
    };
    let policy = policy();
    let mut rows: Vec<Row> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut accepted: Vec<String> = Vec::new();

    // sisimai: labelled bounces, auto-replies and feedback reports, three line-ending variants.
    let expected: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("sisimai/expected.json")).unwrap()).unwrap();
    for variant in ["bsd", "dos", "mac"] {
        let dir = root.join("sisimai/maildir").join(variant);
        let checked = check_all(&messages(&dir), &policy);
        let flagged = checked.iter().filter(|c| c.verdict.is_some()).count();
        let bounces: Vec<&Checked> = checked
            .iter()
            .filter(|c| {
                c.verdict
                    .as_ref()
                    .is_some_and(|v| v.kind == AutomatedKind::Bounce)
            })
            .collect();
        let with_ids = bounces
            .iter()
            .filter(|c| !c.msg.bounced_message_ids.is_empty())
            .count();
        let with_rcpt = bounces
            .iter()
            .filter(|c| !c.msg.failed_recipients.is_empty())
            .count();
        if verbose() && variant == "bsd" {
            for c in &bounces {
                println!(
                    "  bounce recipients: {} {:?}",
                    name_of(&root, &c.path),
                    c.msg.failed_recipients
                );
            }
        }
        let with_subject = checked
            .iter()
            .filter(|c| !c.msg.subject.is_empty() && c.msg.header("from").is_some())
            .count();
        let mut agree = 0;
        let mut labelled = 0;
        for c in &checked {
            if verbose() && (c.msg.subject.is_empty() || c.msg.header("from").is_none()) {
                println!(
                    "  no Subject/From: {} {:?}",
                    name_of(&root, &c.path),
                    c.msg.warnings
                );
            }
            let file = c.path.file_name().unwrap().to_string_lossy().to_string();
            if c.verdict.is_none() {
                if HUMAN_FORWARDS.contains(&file.as_str()) {
                    accepted.push(format!(
                        "{} (a person forwarding a bounce)",
                        name_of(&root, &c.path)
                    ));
                } else {
                    problems.push(format!("not flagged: {}", name_of(&root, &c.path)));
                }
            }
            if variant != "bsd" && (c.msg.subject.is_empty() || c.msg.header("from").is_none()) {
                problems.push(format!(
                    "no Subject/From after normalising: {}",
                    name_of(&root, &c.path)
                ));
            }
            let key = format!(
                "maildir/bsd/{}",
                c.path.file_name().unwrap().to_string_lossy()
            );
            if let Some(reason) = expected[&key][0]["reason"].as_str() {
                labelled += 1;
                let want = sisimai_kind(reason);
                match &c.verdict {
                    Some(v) if v.kind == want => agree += 1,
                    Some(v) if variant == "bsd" => println!(
                        "  kind differs from label: {key} label {reason} -> {:?} ({})",
                        v.kind, v.reason
                    ),
                    _ => {}
                }
            }
        }
        if variant == "bsd" && with_rcpt < SISIMAI_BSD_BOUNCES_WITH_RECIPIENT {
            problems.push(format!(
                "sisimai/bsd bounces with a recipient {with_rcpt} < {SISIMAI_BSD_BOUNCES_WITH_RECIPIENT}"
            ));
        }
        if variant == "bsd" && with_ids < SISIMAI_BSD_BOUNCES_WITH_ID {
            problems.push(format!(
                "sisimai/bsd bounces with Message-ID {with_ids} < {SISIMAI_BSD_BOUNCES_WITH_ID}"
            ));
        }
        rows.push(Row {
            name: format!("sisimai/{variant}"),
            total: checked.len(),
            flagged,
            extra: format!(
                "kind = label {agree}/{labelled}; bounces {} with Message-ID {with_ids}, with recipient {with_rcpt}; Subject+From {with_subject}; {}",
                bounces.len(),
                kinds(&checked)
            ),
        });
    }
    let not = check_all(&messages(&root.join("sisimai/maildir/not")), &policy);
    for c in &not {
        if let Some(v) = &c.verdict {
            problems.push(format!(
                "human flagged: {} {:?} {}",
                name_of(&root, &c.path),
                v.kind,
                v.reason
            ));
        }
    }
    rows.push(Row {
        name: "sisimai/not (human)".into(),
        total: not.len(),
        flagged: not.iter().filter(|c| c.verdict.is_some()).count(),
        extra: String::new(),
    });
    let err = check_all(&messages(&root.join("sisimai/maildir/err")), &policy);
    rows.push(Row {
        name: "sisimai/err".into(),
        total: err.len(),
        flagged: err.iter().filter(|c| c.verdict.is_some()).count(),
        extra: kinds(&err),
    });

    // bounceparser: is_bounce / auto_generated labels.
    let labels: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("bounceparser/expected.json")).unwrap())
            .unwrap();
    let bp = check_all(&messages(&root.join("bounceparser/t/corpus")), &policy);
    let (mut bp_auto, mut bp_auto_flagged, mut bp_human, mut bp_human_flagged) = (0, 0, 0, 0);
    let (mut bp_bounce, mut bp_bounce_ids) = (0, 0);
    for c in &bp {
        let file = c.path.file_name().unwrap().to_string_lossy().to_string();
        let l = &labels[&file];
        let is_bounce = l["is_bounce"].as_bool().unwrap_or(false);
        let auto = is_bounce || l["auto_generated"].as_bool().unwrap_or(false);
        if is_bounce {
            bp_bounce += 1;
            if !c.msg.bounced_message_ids.is_empty() {
                bp_bounce_ids += 1;
            }
        }
        if auto {
            bp_auto += 1;
            match &c.verdict {
                Some(_) => bp_auto_flagged += 1,
                None if SPAM_LABELLED_BOUNCE.contains(&file.as_str()) => {
                    accepted.push(format!("bounceparser {file} (spam labelled as a bounce)"))
                }
                None => problems.push(format!("not flagged: bounceparser {file}")),
            }
        } else {
            bp_human += 1;
            if let Some(v) = &c.verdict {
                bp_human_flagged += 1;
                problems.push(format!(
                    "human flagged: bounceparser {file} {:?} {}",
                    v.kind, v.reason
                ));
            }
        }
    }
    if bp_bounce_ids < BOUNCEPARSER_BOUNCES_WITH_ID {
        problems.push(format!(
            "bounceparser bounces with Message-ID {bp_bounce_ids} < {BOUNCEPARSER_BOUNCES_WITH_ID}"
        ));
    }
    rows.push(Row {
        name: "bounceparser (auto)".into(),
        total: bp_auto,
        flagged: bp_auto_flagged,
        extra: format!(
            "is_bounce {bp_bounce}, with Message-ID {bp_bounce_ids}; {}",
            kinds(&bp)
        ),
    });
    rows.push(Row {
        name: "bounceparser (neither)".into(),
        total: bp_human,
        flagged: bp_human_flagged,
        extra: String::new(),
    });

    // Human corpora: must parse; flags are reported (mailing-list traffic is rightly flagged).
    for (name, dir) in [
        ("redmine", "redmine/test/fixtures/mail_handler"),
        ("imap-tools", "imap-tools/tests/messages"),
        ("rt", "rt/t/data/emails"),
        ("mikel-mail", "mikel-mail/spec/fixtures/emails"),
        ("notmuch/default", "notmuch/test/corpora/default"),
    ] {
        let checked = check_all(&messages(&root.join(dir)), &policy);
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for c in &checked {
            if let Some(v) = &c.verdict {
                let r = v.reason.split(':').next().unwrap_or("").to_string();
                *reasons.entry(format!("{:?}/{r}", v.kind)).or_default() += 1;
            }
        }
        if verbose() {
            for c in &checked {
                println!(
                    "  {} | {:?} | subj {:?} | warn {:?} | text {:?}",
                    name_of(&root, &c.path),
                    c.verdict.as_ref().map(|v| (v.kind, v.reason.as_str())),
                    c.msg.subject,
                    c.msg.warnings,
                    c.msg.new_text.chars().take(100).collect::<String>()
                );
            }
        }
        for c in &checked {
            match (&c.verdict, name) {
                // Hand-checked: every redmine fixture is a person writing to a tracker.
                (Some(v), "redmine") => problems.push(format!(
                    "human flagged: {} {:?} {}",
                    name_of(&root, &c.path),
                    v.kind,
                    v.reason
                )),
                // notmuch/default is list traffic and personal mail: lists only.
                (Some(v), "notmuch/default") if v.kind != AutomatedKind::MailingList => problems
                    .push(format!(
                        "notmuch flagged as {:?}: {}",
                        v.kind,
                        name_of(&root, &c.path)
                    )),
                _ => {}
            }
        }
        let warned = checked
            .iter()
            .filter(|c| !c.msg.warnings.is_empty())
            .count();
        let empty_text = checked
            .iter()
            .filter(|c| c.msg.text.trim().is_empty())
            .count();
        rows.push(Row {
            name: name.into(),
            total: checked.len(),
            flagged: reasons.values().sum(),
            extra: format!(
                "{}; with warnings {warned}; empty text {empty_text}",
                reasons
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }

    println!("\n{:<24} {:>6} {:>8}  details", "corpus", "msgs", "flagged");
    for r in &rows {
        println!(
            "{:<24} {:>6} {:>8}  {}",
            r.name, r.total, r.flagged, r.extra
        );
    }
    for a in &accepted {
        println!("accepted, not flagged: {a}");
    }
    for p in &problems {
        println!("PROBLEM {p}");
    }
    assert!(
        problems.is_empty(),
        "{} problems, see above",
        problems.len()
    );
}
