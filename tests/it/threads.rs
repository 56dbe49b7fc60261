//! Threading checked against an independent threader: for the real mailing-list traffic in
//! `../shared/corpora/notmuch` (threads computed by notmuch 0.37 from References and
//! In-Reply-To), supportd's choice of parent (`ThreadHints`: In-Reply-To first, then References
//! nearest first, the first id that names a stored message) and the threads it builds from it
//! are compared with notmuch's. Prints a table: `cargo test --test it threads -- --nocapture`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use supportd::parse::parse;
use supportd::thread::ThreadHints;

use crate::helpers::crate_dir;

#[derive(Deserialize)]
struct Thread {
    messages: Vec<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    message_id: String,
    file: String,
    parent: Option<String>,
}

fn corpus_root() -> PathBuf {
    crate_dir().join("../shared/corpora/notmuch")
}

/// (json file, folder its `file` paths are relative to)
const SETS: &[(&str, &str)] = &[
    ("threads-default.json", "test/corpora/default"),
    ("threads-lkml.json", "test/corpora/lkml"),
    ("threads-broken.json", "test/corpora/broken"),
    (
        "threads-threading-ghost-root.json",
        "test/corpora/threading/ghost-root",
    ),
    (
        "threads-threading-parent-priority.json",
        "test/corpora/threading/parent-priority",
    ),
];

struct Score {
    messages: usize,
    parent_same: usize,
    thread_same: usize,
    differences: Vec<String>,
}

fn score(json: &Path, dir: &Path) -> Score {
    let threads: Vec<Thread> =
        serde_json::from_str(&std::fs::read_to_string(json).expect("json")).expect("threads json");
    // notmuch's answer: parent per message and thread number per message.
    let mut expected_parent: HashMap<String, Option<String>> = HashMap::new();
    let mut expected_thread: HashMap<String, usize> = HashMap::new();
    let mut files = Vec::new();
    for (n, t) in threads.iter().enumerate() {
        for m in &t.messages {
            expected_parent.insert(m.message_id.clone(), m.parent.clone());
            expected_thread.insert(m.message_id.clone(), n);
            files.push((m.message_id.clone(), dir.join(&m.file)));
        }
    }
    // Our answer: every message is "stored"; a message's parent is the first hint that names one.
    let known: HashSet<&String> = expected_parent.keys().collect();
    let mut our_parent: HashMap<String, Option<String>> = HashMap::new();
    let mut cited: HashMap<String, Vec<String>> = HashMap::new();
    for (id, path) in &files {
        let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let msg = parse(&raw);
        let hints = ThreadHints::from_message(&msg, "CHT", "support@example.test");
        let parent = hints
            .parent_ids
            .iter()
            .find(|p| known.contains(p) && *p != id)
            .cloned();
        our_parent.insert(id.clone(), parent);
        cited.insert(id.clone(), hints.parent_ids.clone());
    }
    // Threads as supportd builds tickets: a message joins its parent's; one whose parents are
    // all unknown joins a message that cites one of the same ids (`message_refs`).
    let index: HashMap<&String, usize> =
        files.iter().enumerate().map(|(i, (m, _))| (m, i)).collect();
    let mut link: Vec<usize> = (0..files.len()).collect();
    fn find(link: &mut [usize], mut i: usize) -> usize {
        while link[i] != i {
            link[i] = link[link[i]];
            i = link[i];
        }
        i
    }
    for (i, (id, _)) in files.iter().enumerate() {
        let other = match &our_parent[id] {
            Some(p) => index.get(p).copied(),
            None => files
                .iter()
                .position(|(m, _)| m != id && cited[m].iter().any(|c| cited[id].contains(c))),
        };
        if let Some(j) = other {
            let (a, b) = (find(&mut link, i), find(&mut link, j));
            link[a] = b;
        }
    }
    let mut our_thread: HashMap<String, usize> = HashMap::new();
    for (i, (id, _)) in files.iter().enumerate() {
        let r = find(&mut link, i);
        our_thread.insert(id.clone(), r);
    }
    let mut s = Score {
        messages: files.len(),
        parent_same: 0,
        thread_same: 0,
        differences: Vec::new(),
    };
    for (id, _) in &files {
        if our_parent[id] == expected_parent[id] {
            s.parent_same += 1;
        } else {
            s.differences.push(format!(
                "{id}: parent ours {:?}, notmuch {:?}",
                our_parent[id], expected_parent[id]
            ));
        }
        // Same thread: the set of messages sharing the thread is the same in both.
        let mates = |map: &HashMap<String, usize>| -> Vec<&String> {
            let mut v: Vec<&String> = files
                .iter()
                .map(|(m, _)| m)
                .filter(|m| map[*m] == map[id])
                .collect();
            v.sort();
            v
        };
        if mates(&our_thread) == mates(&expected_thread) {
            s.thread_same += 1;
        }
    }
    s
}

#[test]
fn threads_match_an_independent_threader_on_real_mailing_list_traffic() {
    let root = corpus_root();
    if !root.is_dir() {
        println!("corpora absent ({}), skipped", root.display());
        return;
    }
    println!(
        "{:<42} {:>8} {:>14} {:>14}",
        "set", "messages", "same parent", "same thread"
    );
    let (mut total, mut parents, mut threads) = (0, 0, 0);
    for (json, dir) in SETS {
        let s = score(&root.join(json), &root.join(dir));
        println!(
            "{:<42} {:>8} {:>14} {:>14}",
            json, s.messages, s.parent_same, s.thread_same
        );
        for d in s.differences.iter().take(5) {
            println!("    {d}");
        }
        total += s.messages;
        parents += s.parent_same;
        threads += s.thread_same;
    }
    println!("{:<42} {:>8} {:>14} {:>14}", "all", total, parents, threads);
    // Measured: 234 of 244 same parent (notmuch sometimes prefers the last References entry to
    // In-Reply-To; either way the message lands in the same thread), 244 of 244 same thread.
    assert!(parents >= 234, "{parents} of {total} with the same parent");
    assert_eq!(
        threads, total,
        "every message in the same thread as notmuch's"
    );
}
