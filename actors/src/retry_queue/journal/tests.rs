//! The journal's files: links planted at the journal, its inbox or the old compaction
//! temporary are never followed.

use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;

/// A file outside the queue's directory that a planted link points at.
fn victim(dir: &Path) -> PathBuf {
    let path = dir.join("victim");
    std::fs::write(&path, "precious").unwrap();
    path
}

#[test]
fn a_link_planted_at_the_journal_is_refused_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = victim(outside.path());
    let path = dir.path().join("retry_queue.jsonl");
    symlink(&target, &path).unwrap();
    let err = Journal::open(&path, "retry queue journal", |_| {}).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(err.to_string().contains("retry_queue.jsonl"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    // The inbox is opened the same way.
    let inbox = inbox_path(&path);
    symlink(&target, &inbox).unwrap();
    assert!(Journal::open(&inbox, "retry queue journal", |_| {}).is_err());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
}

#[test]
fn a_compaction_writes_no_file_a_planted_link_points_at() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = victim(outside.path());
    let path = dir.path().join("retry_queue.jsonl");
    let (mut journal, _) = Journal::open(&path, "retry queue journal", |_| {}).unwrap();
    let started = |id: &str| Record::Started { id: id.into() };
    journal
        .append_durable(&[started("a"), started("b")])
        .unwrap();
    // The name the compaction's temporary file used to have.
    symlink(&target, dir.path().join("retry_queue.jsonl.tmp")).unwrap();
    journal.compact([started("b")]).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    journal.append_durable(&[started("c")]).unwrap();
    let mut replayed = Vec::new();
    Journal::open(&path, "retry queue journal", |r| replayed.push(r)).unwrap();
    assert_eq!(replayed, [started("b"), started("c")]);
}
