//! Raw messages from files, Maildir or plain folders of files, and stdin (the MTA pipe).
//!
//! Entry point: [`collect`]. Every input is read whole; an input that cannot be read is reported
//! with its path and reason instead of stopping the others.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::pipeline::Incoming;

/// Why an input could not become a message.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: cannot read: {error}")]
    Unreadable { path: String, error: std::io::Error },
    #[error("{path}: empty input, nothing to store")]
    Empty { path: String },
}

impl InputError {
    pub fn path(&self) -> &str {
        match self {
            InputError::Unreadable { path, .. } | InputError::Empty { path } => path,
        }
    }
}

/// Reads every message named by `inputs` (`-` is stdin). Folders are walked: a Maildir's `cur`
/// and `new`, or every regular file of a plain folder, in name order; dot files and a Maildir's
/// `tmp` (messages still being written) are skipped.
pub fn collect(inputs: &[String]) -> (Vec<Incoming>, Vec<InputError>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for input in inputs {
        if input == "-" {
            let mut raw = Vec::new();
            match std::io::stdin().lock().read_to_end(&mut raw) {
                Ok(_) => push(&mut found, &mut errors, raw, "stdin".into()),
                Err(error) => errors.push(InputError::Unreadable {
                    path: "stdin".into(),
                    error,
                }),
            }
            continue;
        }
        let path = Path::new(input);
        match files_under(path) {
            Ok(files) => {
                for file in files {
                    let name = file.display().to_string();
                    match std::fs::read(&file) {
                        Ok(raw) => push(&mut found, &mut errors, raw, name),
                        Err(error) => errors.push(InputError::Unreadable { path: name, error }),
                    }
                }
            }
            Err(error) => errors.push(InputError::Unreadable {
                path: input.clone(),
                error,
            }),
        }
    }
    (found, errors)
}

fn push(found: &mut Vec<Incoming>, errors: &mut Vec<InputError>, raw: Vec<u8>, path: String) {
    if raw.iter().all(u8::is_ascii_whitespace) {
        errors.push(InputError::Empty { path });
    } else {
        found.push(Incoming::new(raw, path));
    }
}

fn files_under(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let is_maildir = path.join("cur").is_dir() && path.join("new").is_dir();
    let folders: Vec<PathBuf> = if is_maildir {
        vec![path.join("cur"), path.join("new")]
    } else {
        vec![path.to_path_buf()]
    };
    let mut files = Vec::new();
    for folder in folders {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&folder)?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        entries.sort();
        files.extend(entries);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_reads_cur_and_new_but_not_tmp() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            std::fs::write(
                dir.path().join(sub).join("1"),
                format!("Subject: {sub}\r\n\r\nx"),
            )
            .unwrap();
        }
        let (found, errors) = collect(&[dir.path().display().to_string()]);
        assert!(errors.is_empty());
        assert_eq!(found.len(), 2);
        let tmp = dir.path().join("tmp").display().to_string();
        assert!(found.iter().all(|m| !m.source.starts_with(&tmp)));
    }

    #[test]
    fn empty_and_missing_inputs_are_reported_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.eml");
        std::fs::write(&empty, "\r\n").unwrap();
        let missing = dir.path().join("missing.eml");
        let (found, errors) =
            collect(&[empty.display().to_string(), missing.display().to_string()]);
        assert!(found.is_empty());
        assert!(matches!(errors[0], InputError::Empty { .. }));
        assert!(matches!(errors[1], InputError::Unreadable { .. }));
        assert!(errors[1].to_string().contains("missing.eml"));
    }
}
