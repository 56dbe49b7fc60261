//! Admin-edited regex rules pick a new request's category and the known-problem tips.
//!
//! The rules live in a directory, one TOML file per category (see `rules/billing.toml` for a
//! commented example). A message goes to the category whose matching rules weigh the most;
//! ties go to the lower `order`; no match at all goes to the one `fallback` category. An
//! explicit hint from the customer beats the rules: a plus-address such as
//! `support+billing@…`, or a leading subject tag such as `[Facturation]`.
//!
//! Matching ignores case and accents: the patterns and the message text are both folded
//! (see [`fold`]) before matching, so `prelevement` matches "Prélèvement".
//!
//! Cost: every pattern is compiled once at load. Per message, each field is folded once and
//! scanned once by a `RegexSet` holding all the patterns that look at it; only the rules that
//! set reports are then run on their own to extract the matched text for `--explain`.

mod fold;
mod load;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use regex::{Regex, RegexSet};
use serde::Serialize;

/// The matched text shown by `--explain` is cut to this many characters.
const MATCH_EXCERPT_CHARS: usize = 80;

/// Why a rules directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// One or more problems, each with its file and line.
    #[error("{}", list_problems(.0))]
    Invalid(Vec<RuleProblem>),
}

impl RulesError {
    pub fn problems(&self) -> &[RuleProblem] {
        match self {
            RulesError::Invalid(problems) => problems,
        }
    }
}

fn list_problems(problems: &[RuleProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One thing wrong in the rules directory.
///
/// `line` is 1-based; 0 means the problem concerns the whole file or directory (unreadable
/// file, no fallback category at all), and then `Display` leaves the line out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleProblem {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
        }
    }
}

/// How soon the customer is promised an answer, in hours: a category's `response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ResponsePromise {
    pub min_hours: u32,
    /// The bound a ticket is due by ("24 to 48 hours" is due after 48).
    pub max_hours: u32,
    /// The hours count only inside working hours (`[sla]`), not on the wall clock.
    #[serde(default)]
    pub business: bool,
    /// The promise is a confirmation, which the acknowledgement itself gives: no response
    /// clock runs and nothing escalates.
    #[serde(default)]
    pub confirm_only: bool,
}

/// A ticket category as declared by one rules file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Category {
    pub id: String,
    /// Language code to display name.
    pub label: BTreeMap<String, String>,
    pub order: i64,
    pub response: Option<ResponsePromise>,
    pub fallback: bool,
    pub aliases: Vec<String>,
}

impl Category {
    /// The label in `locale` ("fr", or "fr-CA" falling back to "fr"), else English, else any,
    /// else the id.
    pub fn label_for(&self, locale: &str) -> &str {
        let primary = locale.split(['-', '_']).next().unwrap_or(locale);
        let find = |lang: &str| {
            self.label
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(lang))
                .map(|(_, v)| v.as_str())
        };
        find(locale)
            .or_else(|| find(primary))
            .or_else(|| find("en"))
            .or_else(|| self.label.values().next().map(String::as_str))
            .unwrap_or(&self.id)
    }
}

/// What the classifier looks at in a message.
#[derive(Debug, Clone, Copy)]
pub struct ClassifyInput<'a> {
    pub subject: &'a str,
    /// The new text of the message (quoted history already stripped).
    pub body: &'a str,
    /// Sender address.
    pub from: &'a str,
    /// All To and Cc addresses, lower-case.
    pub to: &'a [String],
    /// Every header as (lower-case name, value).
    pub headers: &'a [(String, String)],
}

/// The outcome for one message, with everything `supportd classify --explain` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Classification {
    /// Category id.
    pub category: String,
    /// Set when an explicit hint decided, e.g. "plus-address support+billing@example.com",
    /// "subject tag [Facturation]", or "form choice billing" (a request filed through the HTTP
    /// intake); the rule scores are still computed, for the explanation.
    pub hint: Option<String>,
    /// Every category with a non-zero total, highest first (ties: lower order first).
    pub scores: Vec<(String, i64)>,
    /// Every rule that matched, by category order then by position in its file.
    pub matches: Vec<RuleMatch>,
    /// Tips of the chosen category whose pattern matched.
    pub tips: Vec<TipMatch>,
}

/// One rule that matched.
#[derive(Debug, Clone, Serialize)]
pub struct RuleMatch {
    pub category: String,
    pub rule: String,
    /// The first field, in the rule's own `fields` order, where the pattern matched.
    pub field: String,
    /// The text the pattern matched there, as the customer wrote it (whitespace runs shown as
    /// one space, cut to about 80 characters).
    pub matched: String,
    pub weight: i64,
}

/// A known problem with a known answer, to quote in the acknowledgement.
#[derive(Debug, Clone, Serialize)]
pub struct TipMatch {
    pub category: String,
    pub name: String,
    /// Language code to text.
    pub text: BTreeMap<String, String>,
}

/// Where in the message a pattern looks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Field {
    Subject,
    Body,
    /// The sender address.
    From,
    /// All To and Cc addresses, one per line.
    To,
    /// Every value of one header (lower-case name), one per line.
    Header(String),
}

impl Field {
    fn from_name(name: &str) -> Field {
        match name {
            "subject" => Field::Subject,
            "body" => Field::Body,
            "from" => Field::From,
            "to" => Field::To,
            other => Field::Header(other.to_string()),
        }
    }

    fn name(&self) -> &str {
        match self {
            Field::Subject => "subject",
            Field::Body => "body",
            Field::From => "from",
            Field::To => "to",
            Field::Header(name) => name,
        }
    }

    fn text<'a>(&self, input: &ClassifyInput<'a>) -> Cow<'a, str> {
        match self {
            Field::Subject => Cow::Borrowed(input.subject),
            Field::Body => Cow::Borrowed(input.body),
            Field::From => Cow::Borrowed(input.from),
            Field::To => match input.to {
                [one] => Cow::Borrowed(one.as_str()),
                many => Cow::Owned(many.join("\n")),
            },
            Field::Header(name) => {
                let mut values = input
                    .headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str());
                match (values.next(), values.next()) {
                    (None, _) => Cow::Borrowed(""),
                    (Some(one), None) => Cow::Borrowed(one),
                    (Some(first), Some(second)) => {
                        let mut all = vec![first, second];
                        all.extend(values);
                        Cow::Owned(all.join("\n"))
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    /// Index into `Classifier::categories`.
    category: usize,
    name: String,
    regex: Regex,
    weight: i64,
    /// Indexes into `Classifier::fields`, in the order the rule lists them.
    fields: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Tip {
    name: String,
    regex: Regex,
    fields: Vec<usize>,
    text: BTreeMap<String, String>,
}

/// Every pattern that looks at one field.
#[derive(Debug, Clone)]
struct FieldScan {
    field: Field,
    /// Indexes into `Classifier::rules`; the set's pattern `i` is rule `rules[i]`.
    rules: Vec<usize>,
    /// `None` when there are fewer than two rules, or if the set would not compile within its
    /// size limit (then each rule's own regex is run instead: slower, same result).
    set: Option<RegexSet>,
}

/// The compiled rules; cheap to share behind an `Arc` and swapped whole on reload.
#[derive(Debug, Clone)]
pub struct Classifier {
    /// Sorted by order.
    categories: Vec<Category>,
    fallback: usize,
    /// Grouped by category, in category order, then in file order.
    rules: Vec<Rule>,
    fields: Vec<FieldScan>,
    /// Per category.
    tips: Vec<Vec<Tip>>,
    /// `fold::hint_key` of every id, label and alias, to its category.
    hints: HashMap<String, usize>,
}

/// A field's text as written and as folded for matching.
struct FieldText<'a> {
    original: Cow<'a, str>,
    folded: fold::Folded,
}

impl<'a> FieldText<'a> {
    fn new(original: Cow<'a, str>) -> Self {
        let folded = fold::Folded::new(&original);
        FieldText { original, folded }
    }

    fn folded(&self) -> &str {
        &self.folded.text
    }

    /// The original text behind `folded()[range]`, on one line and cut for display.
    fn excerpt(&self, range: std::ops::Range<usize>) -> String {
        let range = self.folded.original_range(range);
        let raw = self.original.get(range).unwrap_or_default();
        let mut out = String::new();
        for (n, word) in raw.split_whitespace().enumerate() {
            if n > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
        if out.chars().count() > MATCH_EXCERPT_CHARS {
            out = out.chars().take(MATCH_EXCERPT_CHARS - 1).collect();
            out.push('…');
        }
        out
    }
}

impl Classifier {
    /// Loads every `*.toml` in `dir` (in file-name order), or reports every problem found.
    pub fn load_dir(dir: &Path) -> Result<Classifier, RulesError> {
        load::load(dir).map_err(RulesError::Invalid)
    }

    /// Every problem in the rules directory; empty when it would load.
    pub fn check_dir(dir: &Path) -> Vec<RuleProblem> {
        load::load(dir).err().unwrap_or_default()
    }

    pub fn category(&self, id: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    /// Sorted by order.
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    pub fn fallback(&self) -> &Category {
        &self.categories[self.fallback]
    }

    /// Classifies a parsed message by its subject, new text, sender, recipients and headers.
    pub fn classify_message(
        &self,
        msg: &crate::parse::ParsedMessage,
        support_address: &str,
    ) -> Classification {
        self.classify_message_as(msg, support_address, None)
    }

    /// [`Self::classify_message`] for a request whose category the customer chose in a form
    /// (`chosen`, a category id): that choice decides, as `form choice <id>` in `hint`, and the
    /// rules still run for the explanation. An id that names no category is ignored.
    pub fn classify_message_as(
        &self,
        msg: &crate::parse::ParsedMessage,
        support_address: &str,
        chosen: Option<&str>,
    ) -> Classification {
        self.classify_as(
            &ClassifyInput {
                subject: &msg.subject,
                body: &msg.new_text,
                from: msg.from_address(),
                to: &msg.recipients(),
                headers: &msg.headers,
            },
            support_address,
            chosen,
        )
    }

    /// Picks the category of a new request. `support_address` is the plain support address
    /// (`support@example.com`), against which plus-address hints are recognised.
    pub fn classify(&self, input: &ClassifyInput<'_>, support_address: &str) -> Classification {
        self.classify_as(input, support_address, None)
    }

    /// [`Self::classify`], with the category id the customer chose in a form, if any, winning
    /// over the rules and the hints.
    pub fn classify_as(
        &self,
        input: &ClassifyInput<'_>,
        support_address: &str,
        chosen: Option<&str>,
    ) -> Classification {
        let mut texts: Vec<Option<FieldText<'_>>> = Vec::with_capacity(self.fields.len());
        // Position, in the rule's own field list, of the first field where it matched.
        let mut first_hit = vec![usize::MAX; self.rules.len()];
        for (f, scan) in self.fields.iter().enumerate() {
            if scan.rules.is_empty() {
                texts.push(None);
                continue;
            }
            let text = FieldText::new(scan.field.text(input));
            let haystack = text.folded();
            if !haystack.is_empty() {
                let mut hit = |r: usize| {
                    let pos = self.rules[r].fields.iter().position(|&x| x == f);
                    if let Some(pos) = pos {
                        first_hit[r] = first_hit[r].min(pos);
                    }
                };
                match &scan.set {
                    Some(set) => set
                        .matches(haystack)
                        .iter()
                        .for_each(|i| hit(scan.rules[i])),
                    None => scan
                        .rules
                        .iter()
                        .filter(|&&r| self.rules[r].regex.is_match(haystack))
                        .for_each(|&r| hit(r)),
                }
            }
            texts.push(Some(text));
        }

        let mut totals = vec![0i64; self.categories.len()];
        let mut matches = Vec::new();
        for (r, rule) in self.rules.iter().enumerate() {
            let Some(&f) = rule.fields.get(first_hit[r]) else {
                continue;
            };
            let Some(text) = texts.get(f).and_then(Option::as_ref) else {
                continue;
            };
            let Some(m) = rule.regex.find(text.folded()) else {
                continue;
            };
            totals[rule.category] = totals[rule.category].saturating_add(rule.weight);
            matches.push(RuleMatch {
                category: self.categories[rule.category].id.clone(),
                rule: rule.name.clone(),
                field: self.fields[f].field.name().to_string(),
                matched: text.excerpt(m.range()),
                weight: rule.weight,
            });
        }

        // Categories are sorted by order, so a stable sort on the total alone breaks ties by order.
        let mut ranked: Vec<(usize, i64)> = totals
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, t)| t != 0)
            .collect();
        ranked.sort_by_key(|&(_, t)| std::cmp::Reverse(t));
        let by_rules = ranked
            .first()
            .filter(|&&(_, t)| t > 0)
            .map_or(self.fallback, |&(c, _)| c);

        let choice = chosen.and_then(|id| {
            let c = self.categories.iter().position(|c| c.id == id)?;
            Some((c, format!("form choice {id}")))
        });
        let hint = choice.or_else(|| self.hint(input, support_address));
        let chosen = hint.as_ref().map_or(by_rules, |&(c, _)| c);

        let mut tips = Vec::new();
        for tip in &self.tips[chosen] {
            let mut matched = false;
            for &f in &tip.fields {
                if texts[f].is_none() {
                    texts[f] = Some(FieldText::new(self.fields[f].field.text(input)));
                }
                if let Some(text) = &texts[f]
                    && tip.regex.is_match(text.folded())
                {
                    matched = true;
                    break;
                }
            }
            if matched {
                tips.push(TipMatch {
                    category: self.categories[chosen].id.clone(),
                    name: tip.name.clone(),
                    text: tip.text.clone(),
                });
            }
        }

        Classification {
            category: self.categories[chosen].id.clone(),
            hint: hint.map(|(_, how)| how),
            scores: ranked
                .into_iter()
                .map(|(c, t)| (self.categories[c].id.clone(), t))
                .collect(),
            matches,
            tips,
        }
    }

    /// The category the customer named explicitly, and how, if any.
    fn hint(&self, input: &ClassifyInput<'_>, support_address: &str) -> Option<(usize, String)> {
        for address in input.to {
            if let Some(tag) = plus_tag(address, support_address)
                && let Some(&c) = self.hints.get(&fold::hint_key(tag))
            {
                return Some((c, format!("plus-address {}", address.trim())));
            }
        }
        let (tag, name) = subject_tag(input.subject)?;
        let &c = self.hints.get(&fold::hint_key(name))?;
        Some((c, format!("subject tag {tag}")))
    }
}

/// For `<local>+<tag>@<domain>` where `<local>@<domain>` is the support address, the tag.
///
/// Ticket references (`support+CHT-12@…`) come out here too; they simply name no category.
fn plus_tag<'a>(address: &'a str, support_address: &str) -> Option<&'a str> {
    let (s_local, s_domain) = support_address.trim().rsplit_once('@')?;
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, domain) = address.rsplit_once('@')?;
    if !domain.eq_ignore_ascii_case(s_domain) {
        return None;
    }
    // Compared as a prefix rather than split at the first '+', so a support address that
    // itself holds a '+' (team+support@…) still works.
    let base = local.get(..s_local.len())?;
    let tag = local.get(s_local.len()..)?.strip_prefix('+')?;
    (base.eq_ignore_ascii_case(s_local) && !tag.is_empty()).then_some(tag)
}

/// A leading `[tag]` on the subject as written: `("[Facturation]", "Facturation")`.
///
/// Deliberately not looked for after "Re:" or "Fwd:": a tag there was put by someone else
/// (often our own ticket reference), not chosen by the customer for this request.
fn subject_tag(subject: &str) -> Option<(&str, &str)> {
    let subject = subject.trim_start();
    let rest = subject.strip_prefix('[')?;
    let end = rest.find(']')?;
    Some((subject.get(..end + 2)?, rest.get(..end)?))
}
