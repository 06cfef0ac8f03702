use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_atomic_write_has_exactly_the_mode_asked_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unit.service");
    write_atomic(&path, b"one", 0o644).unwrap();
    assert_eq!(mode(&path), 0o644, "exact, not narrowed by the umask");
    write_atomic(&path, b"two", PRIVATE_FILE).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"two");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(names(dir.path()), ["unit.service"]);
}

#[test]
fn a_failed_atomic_write_leaves_the_target_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    write_atomic(&path, b"old", PRIVATE_FILE).unwrap();
    let err = write_atomic_with(&path, PRIVATE_FILE, |file| {
        file.write_all(b"half")?;
        Err::<(), _>(io::Error::other("disk full"))
    })
    .unwrap_err();
    assert!(err.to_string().contains("cannot write"), "{err}");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    assert_eq!(names(dir.path()), ["tokens.json"]);
    // A missing directory is named in the error.
    let err = write_atomic(&dir.path().join("no/such/file"), b"x", PRIVATE_FILE).unwrap_err();
    assert!(err.to_string().contains("no/such"), "{err}");
}

#[test]
fn an_atomic_write_replaces_a_planted_link_and_never_writes_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    std::fs::write(&target, "precious").unwrap();
    let path = dir.path().join("mcp.json");
    symlink(&target, &path).unwrap();
    write_atomic(&path, b"{}", PRIVATE_FILE).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the link was replaced by the file"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"{}");
}

#[test]
fn a_concurrent_reader_sees_the_old_or_the_new_file_never_a_partial_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc");
    let whole = |n: usize| vec![b'a' + (n % 26) as u8; 64 * 1024];
    write_atomic(&path, &whole(0), PRIVATE_FILE).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let bytes = std::fs::read(&path).expect("always present");
                assert_eq!(bytes.len(), 64 * 1024, "never partial");
                assert!(bytes.iter().all(|&b| b == bytes[0]), "never mixed");
                reads += 1;
            }
            reads
        })
    };
    for n in 1..200 {
        write_atomic(&path, &whole(n), PRIVATE_FILE).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
}

#[test]
fn opening_in_place_refuses_a_planted_link_and_leaves_its_target_alone() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    std::fs::write(&target, "precious").unwrap();
    let path = dir.path().join("daemon.lock");
    symlink(&target, &path).unwrap();
    let append = OpenOptions::new().append(true).create(true).clone();
    let err = open_in_place(&path, &append, PRIVATE_FILE).unwrap_err();
    assert!(matches!(err, FsError::Symlink { .. }), "{err:?}");
    assert!(err.to_string().contains("daemon.lock"), "{err}");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    // Also when asked to create the file exclusively first.
    let new = OpenOptions::new().append(true).create_new(true).clone();
    assert!(open_in_place(&path, &new, PRIVATE_FILE).is_err());
    // A dangling link is not followed to create its target either.
    let dangling = dir.path().join("run.jsonl");
    symlink(outside.path().join("created"), &dangling).unwrap();
    let err = open_in_place(&dangling, &append, PRIVATE_FILE).unwrap_err();
    assert!(matches!(err, FsError::Symlink { .. }), "{err:?}");
    assert!(!outside.path().join("created").exists());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
}

#[test]
fn opening_in_place_refuses_a_hard_link_a_fifo_and_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    std::fs::write(&target, "precious").unwrap();
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .clone();

    let linked = dir.path().join("hard");
    std::fs::hard_link(&target, &linked).unwrap();
    let err = open_in_place(&linked, &rw, PRIVATE_FILE).unwrap_err();
    assert!(err.to_string().contains("2 hard links"), "{err}");

    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let err = open_in_place(&fifo, &rw, PRIVATE_FILE).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");

    let err = open_in_place(
        dir.path(),
        &OpenOptions::new().read(true).clone(),
        PRIVATE_FILE,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn opening_in_place_creates_with_the_mode_and_narrows_a_wider_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let append = OpenOptions::new().append(true).create(true).clone();
    let mut file = open_in_place(&path, &append, PRIVATE_FILE).unwrap();
    file.write_all(b"a\n").unwrap();
    assert_eq!(mode(&path), 0o600);
    std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
    let mut file = open_in_place(&path, &append, PRIVATE_FILE).unwrap();
    file.write_all(b"b\n").unwrap();
    assert_eq!(mode(&path), 0o600);
    let mut text = String::new();
    File::open(&path)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "a\nb\n", "appended, never truncated");
}

#[test]
fn the_private_directory_rule_wants_this_owner_and_no_group_or_world_write() {
    let me = 1000;
    assert_eq!(dir_problem(me, 0o700, me), None);
    assert_eq!(dir_problem(me, 0o755, me), None, "readable is fine");
    assert_eq!(dir_problem(me, 0o770, me), Some(DirProblem::Writable));
    assert_eq!(dir_problem(me, 0o702, me), Some(DirProblem::Writable));
    assert_eq!(dir_problem(me, 0o1777, me), Some(DirProblem::Writable));
    assert_eq!(dir_problem(0, 0o700, me), Some(DirProblem::NotOwned));
    assert_eq!(
        dir_problem(1001, 0o775, me),
        Some(DirProblem::NotOwnedAndWritable)
    );
    // The message names the path, the owner, the mode and the fix.
    let err = FsError::UnsafeDir {
        path: "/home/u/.revka".into(),
        owner: 1001,
        mode: 0o700,
        uid: me,
    };
    let text = err.to_string();
    for want in [
        "refusing to use /home/u/.revka",
        "owned by another user",
        "owner uid 1001",
        "mode 0700",
        "uid 1000",
        "sudo chown 1000 '/home/u/.revka'",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    let err = FsError::UnsafeDir {
        path: "/h".into(),
        owner: me,
        mode: 0o775,
        uid: me,
    };
    assert!(err.to_string().contains("`chmod 700 '/h'`"), "{err}");
}

#[test]
fn a_group_writable_directory_is_refused_and_a_private_one_is_made_0700() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("a/b");
    ensure_private_dir(&home).unwrap();
    assert_eq!(mode(&home), 0o700);
    std::fs::set_permissions(&home, Permissions::from_mode(0o770)).unwrap();
    let err = ensure_private_dir(&home).unwrap_err();
    assert!(
        matches!(err, FsError::UnsafeDir { mode: 0o770, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("chmod 700"), "{err}");
    std::fs::set_permissions(&home, Permissions::from_mode(0o755)).unwrap();
    check_private_dir(&home).unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    assert!(check_private_dir(&file).is_err());
}

#[test]
fn an_fs_error_keeps_its_kind_and_message_as_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = open_in_place(
        &missing,
        &OpenOptions::new().read(true).clone(),
        PRIVATE_FILE,
    )
    .unwrap_err();
    let io: io::Error = err.into();
    assert_eq!(io.kind(), io::ErrorKind::NotFound);
    assert!(io.to_string().contains("missing"), "{io}");
}

#[test]
fn a_private_subdirectory_is_fresh_and_0700_in_a_private_parent() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("agents");
    let made = create_private_subdir(&parent, "fb_1").unwrap();
    assert_eq!(made, parent.join("fb_1"));
    assert_eq!((mode(&parent), mode(&made)), (0o700, 0o700));
    let again = create_private_subdir(&parent, "fb_1").unwrap_err();
    assert!(again.to_string().contains("fb_1"), "{again}");
    std::fs::set_permissions(&parent, Permissions::from_mode(0o777)).unwrap();
    assert!(matches!(
        create_private_subdir(&parent, "fb_2").unwrap_err(),
        FsError::UnsafeDir { .. }
    ));
}
