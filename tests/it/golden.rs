//! Golden fixtures, after stalwart's mail-parser: every `fixtures/mail/NN-name.eml` has a
//! `NN-name.expected.json` beside it with the whole outcome of `supportd ingest --json` and the
//! headers of the acknowledgement that ingest queued (`null` when none), so that a change of
//! behaviour shows as a readable diff.
//!
//! Each fixture is ingested into a fresh database, so its outcome depends on nothing else. A
//! reply, the hijack attempt and automated mail about one of our acknowledgements first have
//! their parent (`reply_to` / `refers_to` in `expected.toml`) ingested, and their placeholders
//! filled in from its ticket and acknowledgement; their copy is ingested from the test's
//! temporary folder (`TMP/` in `source`).
//!
//! What varies from run to run is normalised: signed Message-IDs (`sd.ack.NONCE.SIG@...`), ids
//! made from a message's hash (`HASH@sha256.supportd.invalid`), the acknowledgement's `Date`,
//! and the folders (`fixtures/mail/`, `TMP/`).
//!
//! On a mismatch the actual outcome is written to `NN-name.failed` beside the fixture (ignored
//! by git) and the test fails naming it; `UPDATE_GOLDEN=1` rewrites the expected files instead.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use regex::Regex;
use serde_json::{Value, json};

use crate::helpers::app::App;
use crate::helpers::fixtures::{self, Expected};

#[test]
fn every_fixture_ingests_to_its_expected_json() {
    let expected = fixtures::expected();
    let names = eml_files();
    assert!(
        !names.is_empty(),
        "no .eml in {}",
        fixtures::dir().display()
    );
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();

    // One binary run per fixture (two with a parent): spread over the cores.
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(String, Value)>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let exp = expected
                        .get(name)
                        .unwrap_or_else(|| panic!("{name} has no table in expected.toml"));
                    let actual = outcome(name, exp);
                    results
                        .lock()
                        .expect("results")
                        .push((name.clone(), actual));
                }
            });
        }
    });

    let mut results = results.into_inner().expect("results");
    results.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(results.len(), names.len());
    let mut failed = Vec::new();
    for (name, actual) in &results {
        let (expected_path, failed_path) = golden_paths(name);
        let text = format!(
            "{}\n",
            serde_json::to_string_pretty(actual).expect("serialise")
        );
        let stored = std::fs::read_to_string(&expected_path).ok();
        let same = stored
            .as_deref()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .is_some_and(|v| &v == actual);
        if update {
            if !same {
                write(&expected_path, &text);
            }
            remove(&failed_path);
        } else if same {
            remove(&failed_path);
        } else {
            write(&failed_path, &text);
            failed.push(match stored {
                Some(_) => format!(
                    "diff -u {} {}",
                    rel(&expected_path).display(),
                    rel(&failed_path).display()
                ),
                None => format!(
                    "{} is missing (actual in {})",
                    rel(&expected_path).display(),
                    rel(&failed_path).display()
                ),
            });
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} fixtures differ from their expected JSON (UPDATE_GOLDEN=1 to accept):\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}

/// The `.eml` files of `fixtures/mail`, sorted.
fn eml_files() -> Vec<String> {
    let dir = fixtures::dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    names.sort();
    names
}

/// `NN-name.expected.json` and `NN-name.failed` for `NN-name.eml`.
fn golden_paths(name: &str) -> (PathBuf, PathBuf) {
    let stem = name.strip_suffix(".eml").expect(".eml");
    let dir = fixtures::dir();
    (
        dir.join(format!("{stem}.expected.json")),
        dir.join(format!("{stem}.failed")),
    )
}

/// Ingests fixture `name` into a fresh database (after its parent, if it has one) and returns
/// what the expected file holds.
fn outcome(name: &str, exp: &Expected) -> Value {
    let app = App::new();
    let path = match exp.parent() {
        None => fixtures::dir().join(name),
        Some(parent) => {
            let first = app.ingest_one(&fixtures::dir().join(parent));
            let ticket = first["ticket"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: its parent {parent} opened no ticket: {first}"));
            let outbox = app.outbox();
            let ack = outbox
                .iter()
                .find(|o| o["kind"] == "ack" && o["ticket"] == ticket)
                .unwrap_or_else(|| panic!("{name}: {parent} was not acknowledged: {outbox:#?}"));
            let ack_id = ack["message_id"].as_str().expect("message_id");
            app.write(
                name,
                &fixtures::substitute(&fixtures::raw(name), ack_id, ticket),
            )
        }
    };
    let seen = last_id(&app.outbox());
    let ingest = app.ingest_json(&path);
    let acks: Vec<i64> = app
        .outbox()
        .iter()
        .filter(|o| o["kind"] == "ack")
        .filter_map(|o| o["id"].as_i64())
        .filter(|&id| id > seen)
        .collect();
    assert!(acks.len() <= 1, "{name}: {} acknowledgements", acks.len());
    let acknowledgement = acks
        .first()
        .map(|&id| Value::from(headers(&app.outbox_raw(id))));
    let doc = json!({
        "ingested_after": exp.parent(),
        "ingest": ingest,
        "acknowledgement": acknowledgement,
    });
    normalise(doc, &Normaliser::new(app.path()))
}

/// The highest outbox id so far (0 for none).
fn last_id(outbox: &[Value]) -> i64 {
    outbox
        .iter()
        .filter_map(|o| o["id"].as_i64())
        .max()
        .unwrap_or(0)
}

/// The header block of `raw`, one `Name: value` per header, unfolded (RFC 5322 §2.2.3), in
/// the order written; `Date` replaced by `DATE`, and `Thread-Index` (a time and a random
/// GUID) by its length: 22 bytes for a conversation we started, 22 + 5 per reply for one we
/// continue.
fn headers(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let block = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .map_or(text.as_ref(), |(h, _)| h);
    let mut out: Vec<String> = Vec::new();
    for line in block.lines() {
        let line = line.trim_end_matches('\r');
        match out.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => last.push_str(line),
            _ => out.push(line.to_string()),
        }
    }
    for h in &mut out {
        if h.to_ascii_lowercase().starts_with("date:") {
            *h = "Date: DATE".into();
        }
        if let Some(value) = h.strip_prefix("Thread-Index:") {
            use base64::Engine;
            let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
            *h = match base64::engine::general_purpose::STANDARD.decode(compact) {
                Ok(bytes) => format!("Thread-Index: {} bytes", bytes.len()),
                Err(e) => format!("Thread-Index: not base64 ({e})"),
            };
        }
    }
    out
}

/// Replaces what varies per run in every string of a document.
struct Normaliser {
    /// `(pattern, replacement)`, in order.
    rules: Vec<(Regex, String)>,
}

impl Normaliser {
    fn new(temp: &Path) -> Normaliser {
        let folder = |p: &Path| format!("{}/", regex::escape(&p.display().to_string()));
        let rules = [
            (folder(&fixtures::dir()), "fixtures/mail/".to_string()),
            (folder(temp), "TMP/".to_string()),
            // Our HMAC-signed ids: sd.<kind>.<nonce>.<signature>@domain.
            (
                r"\bsd\.([a-z]+)\.[0-9a-f]+\.[0-9a-f]+@".to_string(),
                "sd.$1.NONCE.SIG@".to_string(),
            ),
            // The id made from the bytes of a message without one; a filled-in placeholder
            // changes the bytes.
            (
                r"\b[0-9a-f]+@sha256\.supportd\.invalid\b".to_string(),
                "HASH@sha256.supportd.invalid".to_string(),
            ),
        ];
        Normaliser {
            rules: rules
                .into_iter()
                .map(|(p, r)| (Regex::new(&p).expect("pattern"), r))
                .collect(),
        }
    }

    fn apply(&self, s: &str) -> String {
        self.rules.iter().fold(s.to_string(), |s, (re, with)| {
            re.replace_all(&s, with.as_str()).into_owned()
        })
    }
}

fn normalise(v: Value, n: &Normaliser) -> Value {
    match v {
        Value::String(s) => Value::String(n.apply(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(|x| normalise(x, n)).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, x)| (k, normalise(x, n))).collect())
        }
        other => other,
    }
}

/// `path` relative to the crate, for a message one can paste into a shell there.
fn rel(path: &Path) -> &Path {
    path.strip_prefix(crate::helpers::crate_dir())
        .unwrap_or(path)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn remove(path: &Path) {
    if path.exists() {
        std::fs::remove_file(path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    }
}
