//! Reading, validating and compiling the rules directory.
//!
//! The files are walked as spanned TOML trees rather than deserialized with serde, because
//! serde stops at the first error while an admin fixing a rules file wants every problem at
//! once, each with its line.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use regex::{Regex, RegexBuilder, RegexSetBuilder};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::fold::{fold_pattern, hint_key};
use super::{Category, Classifier, Field, FieldScan, ResponsePromise, Rule, RuleProblem, Tip};

mod assemble;
mod response;

use assemble::{assemble, cross_check};

use response::response;

/// Each regex may compile to this much; well above what the default rules need.
const REGEX_SIZE_LIMIT: usize = 16 << 20;
/// A field's combined set is bigger than any single pattern; past this, rules run one by one.
const SET_SIZE_LIMIT: usize = 64 << 20;
/// Lazy-DFA cache per set. The default (2 MiB) thrashes on a set of a hundred patterns, and a
/// thrashing DFA hands over to the much slower PikeVM.
const SET_DFA_LIMIT: usize = 16 << 20;
/// Keeps a sum of weights far from overflow and weights readable.
const MAX_WEIGHT: i64 = 1000;

const TOP_KEYS: &str = "id, label, order, response, fallback, aliases, [[rule]], [[tip]]";
const RULE_KEYS: &str = "name, fields, pattern, weight";
const TIP_KEYS: &str = "name, fields, pattern, text";
const DEFAULT_FIELDS: [&str; 2] = ["subject", "body"];

struct Located<T> {
    value: T,
    line: usize,
}

struct RuleSpec {
    name: String,
    fields: Vec<Field>,
    regex: Regex,
    weight: i64,
}

struct TipSpec {
    name: String,
    fields: Vec<Field>,
    regex: Regex,
    text: BTreeMap<String, String>,
}

/// One category file as read. Missing required keys have already been reported, and nothing
/// is assembled from specs unless there are no problems at all.
struct Spec {
    file: PathBuf,
    id: Option<Located<String>>,
    label: Option<Located<BTreeMap<String, String>>>,
    order: Option<Located<i64>>,
    response: Option<ResponsePromise>,
    /// Line of `fallback = true`.
    fallback: Option<usize>,
    aliases: Vec<Located<String>>,
    rules: Vec<RuleSpec>,
    tips: Vec<TipSpec>,
}

pub(super) fn load(dir: &Path) -> Result<Classifier, Vec<RuleProblem>> {
    let mut problems = Vec::new();
    let files = match list_files(dir) {
        Ok(files) => files,
        Err(e) => {
            return Err(vec![problem(
                dir,
                0,
                format!("cannot read the rules directory: {e}"),
            )]);
        }
    };
    if files.is_empty() {
        problems.push(problem(dir, 0, "no *.toml rules file here"));
    }
    let mut specs = Vec::new();
    let mut unreadable = false;
    for file in files {
        match read_text(&file) {
            Ok(src) => match parse_file(&file, &src, &mut problems) {
                Some(spec) => specs.push(spec),
                None => unreadable = true,
            },
            Err(p) => {
                problems.push(p);
                unreadable = true;
            }
        }
    }
    cross_check(dir, &specs, unreadable, &mut problems);
    if !problems.is_empty() {
        // Stable: problems on one line keep the order they were found in.
        problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(problems);
    }
    assemble(specs).map_err(|reason| vec![problem(dir, 0, reason)])
}

fn problem(file: &Path, line: usize, reason: impl Into<String>) -> RuleProblem {
    RuleProblem {
        file: file.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn list_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        // Hidden names are editor droppings (Emacs' `.#billing.toml` lock links, for one),
        // not rules.
        if name.ends_with(".toml") && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_text(file: &Path) -> Result<String, RuleProblem> {
    let bytes = std::fs::read(file).map_err(|e| problem(file, 0, format!("cannot read: {e}")))?;
    match String::from_utf8(bytes) {
        Ok(mut text) => {
            // Windows editors like to start UTF-8 files with a byte-order mark.
            if text.starts_with('\u{feff}') {
                text.replace_range(..'\u{feff}'.len_utf8(), "");
            }
            Ok(text)
        }
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let line = line_of(e.as_bytes(), valid);
            Err(problem(file, line, "not UTF-8 text"))
        }
    }
}

fn line_of(src: &[u8], offset: usize) -> usize {
    let end = offset.min(src.len());
    src[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Reports problems against one file, by byte offset.
struct Ctx<'a> {
    file: &'a Path,
    src: &'a str,
    problems: &'a mut Vec<RuleProblem>,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        line_of(self.src.as_bytes(), offset)
    }

    fn report(&mut self, offset: usize, reason: impl Into<String>) {
        let line = self.line(offset);
        self.problems.push(problem(self.file, line, reason));
    }

    fn wrong_type(&mut self, what: &str, expected: &str, v: &Spanned<DeValue<'_>>) {
        let found = v.get_ref().type_str();
        self.report(
            v.span().start,
            format!("{what} must be {expected}, not {found}"),
        );
    }

    fn string(&mut self, what: &str, v: &Spanned<DeValue<'_>>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) if s.trim().is_empty() => {
                self.report(v.span().start, format!("{what} is empty"));
                None
            }
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(what, "a string", v);
                None
            }
        }
    }

    fn integer(&mut self, what: &str, v: &Spanned<DeValue<'_>>) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.report(v.span().start, format!("{what} is out of range"));
                    None
                }
            },
            _ => {
                self.wrong_type(what, "an integer", v);
                None
            }
        }
    }

    fn boolean(&mut self, what: &str, v: &Spanned<DeValue<'_>>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(what, "true or false", v);
                None
            }
        }
    }

    fn strings(&mut self, what: &str, v: &Spanned<DeValue<'_>>) -> Option<Vec<Located<String>>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(what, "a list of strings", v);
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match self.string(&format!("each item of {what}"), item) {
                Some(value) => out.push(Located {
                    value,
                    line: self.line(item.span().start),
                }),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A `{ fr = "…", en = "…" }` table: language code to non-empty text.
    fn texts(&mut self, what: &str, v: &Spanned<DeValue<'_>>) -> Option<BTreeMap<String, String>> {
        let DeValue::Table(table) = v.get_ref() else {
            self.wrong_type(
                what,
                "a table of language code to text, like { fr = \"…\", en = \"…\" }",
                v,
            );
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, text) in table.iter() {
            let lang: &str = k.get_ref();
            if !is_language_code(lang) {
                self.report(
                    k.span().start,
                    format!("{what}: `{lang}` is not a language code such as fr, en or pt-BR"),
                );
                ok = false;
            }
            match self.string(&format!("{what}.{lang}"), text) {
                Some(text) => {
                    out.insert(lang.to_string(), text);
                }
                None => ok = false,
            }
        }
        if out.is_empty() && ok {
            self.report(v.span().start, format!("{what} has no language"));
            ok = false;
        }
        ok.then_some(out)
    }

    /// The items of a `[[rule]]`-style array of tables, with their `[[…]]` header offsets.
    fn tables<'v, 'i>(
        &mut self,
        key: &str,
        v: &'v Spanned<DeValue<'i>>,
    ) -> Vec<(&'v DeTable<'i>, usize)> {
        let DeValue::Array(items) = v.get_ref() else {
            self.report(
                v.span().start,
                format!("`{key}` must be an array of tables, written [[{key}]]"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(t) => out.push((t, item.span().start)),
                _ => self.wrong_type(&format!("each `{key}`"), "a table, written [[{key}]]", item),
            }
        }
        out
    }

    fn fields(&mut self, what: &str, v: &Spanned<DeValue<'_>>) -> Option<Vec<Field>> {
        let names = self.strings(what, v)?;
        if names.is_empty() {
            self.report(
                v.span().start,
                format!("{what} is empty, so the pattern would never be tried"),
            );
            return None;
        }
        let mut out: Vec<Field> = Vec::new();
        let mut ok = true;
        for name in names {
            let lower = name.value.trim().to_ascii_lowercase();
            let valid = lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !valid {
                self.problems.push(problem(
                    self.file,
                    name.line,
                    format!(
                        "{what}: `{}` is not a field: use subject, body, from, to, or a header name such as x-priority",
                        name.value
                    ),
                ));
                ok = false;
                continue;
            }
            let field = Field::from_name(&lower);
            if !out.contains(&field) {
                out.push(field);
            }
        }
        ok.then_some(out)
    }

    fn pattern(&mut self, what: &str, v: &Spanned<DeValue<'_>>) -> Option<Regex> {
        let pattern = self.string(what, v)?;
        let at = v.span().start;
        // Checked as written first, so that an error's column refers to what the admin typed.
        if let Err(e) = build_regex(&pattern) {
            self.report(
                at,
                format!("{what} is not a valid regex: {}", regex_error(&e)),
            );
            return None;
        }
        let regex = match RegexBuilder::new(&fold_pattern(&pattern))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(regex) => regex,
            Err(e) => {
                self.report(
                    at,
                    format!(
                        "{what} is not a valid regex once lower-cased and stripped of accents: {}",
                        regex_error(&e)
                    ),
                );
                return None;
            }
        };
        if regex.is_match("") {
            self.report(
                at,
                format!("{what} matches empty text, so it would match every message"),
            );
            return None;
        }
        Some(regex)
    }
}

/// The pattern as written, compiled only to check it (see `fold_pattern` for what runs).
fn build_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// The regex crate's multi-line error, made to fit on one `file:line: reason` line.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().collect();
    let Some(message) = lines.iter().rev().find_map(|l| l.strip_prefix("error: ")) else {
        return lines.join(" ");
    };
    // A one-line pattern is shown as "regex parse error:", the pattern, carets, "error: …".
    let column = match lines.as_slice() {
        [_, pattern, carets, _] if pattern.starts_with("    ") => carets
            .find('^')
            .and_then(|byte| carets.get(4..byte))
            .map(|pad| pad.chars().count() + 1),
        _ => None,
    };
    match column {
        Some(column) => format!("{message} (column {column})"),
        None => message.to_string(),
    }
}

fn is_language_code(code: &str) -> bool {
    let mut parts = code.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_lowercase())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Reads one file; `None` when it is not valid TOML (every syntax error is reported).
fn parse_file(file: &Path, src: &str, problems: &mut Vec<RuleProblem>) -> Option<Spec> {
    let mut cx = Ctx {
        file,
        src,
        problems,
    };
    let (root, errors) = DeTable::parse_recoverable(src);
    if !errors.is_empty() {
        for e in errors {
            let at = e.span().map_or(0, |s| s.start);
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            cx.report(at, format!("TOML syntax error: {message}"));
        }
        return None;
    }
    let mut spec = Spec {
        file: file.to_path_buf(),
        id: None,
        label: None,
        order: None,
        response: None,
        fallback: None,
        aliases: Vec::new(),
        rules: Vec::new(),
        tips: Vec::new(),
    };
    // Problems about the file as a whole (a missing key) point at its first line.
    let top = 0;
    let mut rule_tables = Vec::new();
    let mut tip_tables = Vec::new();
    for (k, v) in root.get_ref().iter() {
        let key: &str = k.get_ref();
        let line = cx.line(v.span().start);
        match key {
            "id" => {
                if let Some(id) = cx.string("`id`", v) {
                    if is_valid_id(&id) {
                        spec.id = Some(Located { value: id, line });
                    } else {
                        cx.report(
                            v.span().start,
                            format!("`id` {id:?} may only hold a-z, 0-9, _ and - (it is stored on tickets)"),
                        );
                    }
                }
            }
            "label" => {
                spec.label = cx.texts("`label`", v).map(|value| Located { value, line });
            }
            "order" => {
                spec.order = cx
                    .integer("`order`", v)
                    .map(|value| Located { value, line })
            }
            "response" => spec.response = response(&mut cx, v),
            "fallback" => {
                if cx.boolean("`fallback`", v) == Some(true) {
                    spec.fallback = Some(line);
                }
            }
            "aliases" => spec.aliases = cx.strings("`aliases`", v).unwrap_or_default(),
            "rule" => rule_tables = cx.tables(key, v),
            "tip" => tip_tables = cx.tables(key, v),
            _ => cx.report(
                k.span().start,
                format!("unknown key `{key}` (expected {TOP_KEYS})"),
            ),
        }
    }
    if spec.id.is_none() && !has_key(root.get_ref(), "id") {
        cx.report(top, "missing `id`, e.g. id = \"billing\"");
    }
    if spec.label.is_none() && !has_key(root.get_ref(), "label") {
        cx.report(
            top,
            "missing `label`, e.g. label = { fr = \"Facturation\", en = \"Billing\" }",
        );
    }
    if spec.order.is_none() && !has_key(root.get_ref(), "order") {
        cx.report(
            top,
            "missing `order` (an integer; on equal scores the lower order wins)",
        );
    }

    let mut rule_names: HashMap<String, usize> = HashMap::new();
    for (table, at) in rule_tables {
        if let Some(rule) = rule_spec(&mut cx, table, at, &mut rule_names) {
            spec.rules.push(rule);
        }
    }
    let mut tip_names: HashMap<String, usize> = HashMap::new();
    for (table, at) in tip_tables {
        if let Some(tip) = tip_spec(&mut cx, table, at, &mut tip_names) {
            spec.tips.push(tip);
        }
    }
    Some(spec)
}

fn has_key(table: &DeTable<'_>, key: &str) -> bool {
    table.iter().any(|(k, _)| k.get_ref() == key)
}

fn name_of(
    cx: &mut Ctx<'_>,
    kind: &str,
    table: &DeTable<'_>,
    at: usize,
    seen: &mut HashMap<String, usize>,
) -> Option<String> {
    let Some((_, v)) = table.iter().find(|(k, _)| k.get_ref() == "name") else {
        cx.report(at, format!("this [[{kind}]] has no `name`"));
        return None;
    };
    let name = cx.string(&format!("`name` of a {kind}"), v)?;
    let line = cx.line(v.span().start);
    if let Some(first) = seen.get(&name) {
        cx.report(
            v.span().start,
            format!("{kind} name {name:?} is already used at line {first}"),
        );
        return None;
    }
    seen.insert(name.clone(), line);
    Some(name)
}

fn rule_spec(
    cx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    at: usize,
    seen: &mut HashMap<String, usize>,
) -> Option<RuleSpec> {
    let name = name_of(cx, "rule", table, at, seen);
    let what = |key: &str| match &name {
        Some(name) => format!("`{key}` of rule {name:?}"),
        None => format!("`{key}`"),
    };
    let mut fields = Some(default_fields());
    let mut regex = None;
    let mut pattern_seen = false;
    let mut weight = Some(1);
    for (k, v) in table.iter() {
        match k.get_ref().as_ref() {
            "name" => {}
            "fields" => fields = cx.fields(&what("fields"), v),
            "pattern" => {
                pattern_seen = true;
                regex = cx.pattern(&what("pattern"), v);
            }
            "weight" => {
                weight = cx.integer(&what("weight"), v);
                match weight {
                    Some(0) => {
                        cx.report(
                            v.span().start,
                            format!("{} is 0, so the rule counts for nothing", what("weight")),
                        );
                        weight = None;
                    }
                    Some(w) if w.abs() > MAX_WEIGHT => {
                        cx.report(
                            v.span().start,
                            format!(
                                "{} must be between -{MAX_WEIGHT} and {MAX_WEIGHT}",
                                what("weight")
                            ),
                        );
                        weight = None;
                    }
                    _ => {}
                }
            }
            other => cx.report(
                k.span().start,
                format!("unknown key `{other}` in a [[rule]] (expected {RULE_KEYS})"),
            ),
        }
    }
    if !pattern_seen {
        cx.report(at, format!("{} is missing", what("pattern")));
    }
    Some(RuleSpec {
        name: name?,
        fields: fields?,
        regex: regex?,
        weight: weight?,
    })
}

fn tip_spec(
    cx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    at: usize,
    seen: &mut HashMap<String, usize>,
) -> Option<TipSpec> {
    let name = name_of(cx, "tip", table, at, seen);
    let what = |key: &str| match &name {
        Some(name) => format!("`{key}` of tip {name:?}"),
        None => format!("`{key}`"),
    };
    let mut fields = Some(default_fields());
    let mut regex = None;
    let mut text = None;
    let (mut pattern_seen, mut text_seen) = (false, false);
    for (k, v) in table.iter() {
        match k.get_ref().as_ref() {
            "name" => {}
            "fields" => fields = cx.fields(&what("fields"), v),
            "pattern" => {
                pattern_seen = true;
                regex = cx.pattern(&what("pattern"), v);
            }
            "text" => {
                text_seen = true;
                text = cx.texts(&what("text"), v);
            }
            other => cx.report(
                k.span().start,
                format!("unknown key `{other}` in a [[tip]] (expected {TIP_KEYS})"),
            ),
        }
    }
    if !pattern_seen {
        cx.report(at, format!("{} is missing", what("pattern")));
    }
    if !text_seen {
        cx.report(
            at,
            format!(
                "{} is missing, e.g. text = {{ fr = \"…\", en = \"…\" }}",
                what("text")
            ),
        );
    }
    Some(TipSpec {
        name: name?,
        fields: fields?,
        regex: regex?,
        text: text?,
    })
}

fn default_fields() -> Vec<Field> {
    DEFAULT_FIELDS.iter().map(|f| Field::from_name(f)).collect()
}
