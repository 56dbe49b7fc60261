//! The real-mail cases of issue 8 (`fixtures/cases`, copied from `../shared/cases`), each run
//! through the CLI as its README says, and for each class at least one input of another shape
//! written here.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::helpers::app::App;
use crate::helpers::crate_dir;

/// `fixtures/cases/NAME`.
fn case(name: &str) -> PathBuf {
    crate_dir().join("fixtures/cases").join(name)
}

/// Ingests `path` from `processes` processes started together on a fresh database, half of them reading the message on stdin as an MTA pipe does. Panics naming any
/// process that did not exit 0.
fn ingest_at_once(app: &App, path: &Path, processes: usize) {
    let raw = std::fs::read(path).expect("message");
    let children: Vec<_> = (0..processes)
        .map(|n| {
            let mut cmd = app.command();
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            if n % 2 == 0 {
                cmd.arg("ingest").arg(path).stdin(Stdio::null());
            } else {
                cmd.args(["ingest", "-"]).stdin(Stdio::piped());
            }
            let mut child = cmd.spawn().expect("spawn supportd");
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                stdin.write_all(&raw).expect("write stdin");
            }
            child
        })
        .collect();
    for (n, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "process {n} of {processes} exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ------------------------------------------------------------------ (13) concurrent first open

#[test]
fn processes_starting_together_on_a_database_that_does_not_exist_all_succeed() {
    let message = case("03-reused-message-id.1.eml");
    for round in 0..6 {
        let app = App::new();
        assert!(!app.database.exists());
        ingest_at_once(&app, &message, 4);
        // The same bytes four times: one ticket, three duplicates, whoever came first.
        let stats = app.stats();
        assert_eq!(
            (stats.messages, stats.tickets, stats.duplicates),
            (1, 1, 3),
            "round {round}"
        );
    }
}
