//! The owner token: written 0600 to `gateway.token`, rotated at each daemon start.

use std::fs;

use super::super::{OWNER_TOKEN_FILE, Role, StoreError, Verified, read_owner_token};
use super::{home, mode, open};

#[test]
fn the_owner_token_is_rotated_at_each_start() {
    let home = home();
    let file = home.path().join(OWNER_TOKEN_FILE);

    // First daemon start.
    let store = open(home.path());
    let first_id = store.ensure_owner_token(home.path()).expect("owner");
    let first = read_owner_token(home.path()).expect("read");
    assert_eq!(
        fs::read_to_string(&file).expect("read"),
        format!("{first}\n")
    );
    assert_eq!(mode(&file), 0o600);
    assert_eq!(store.verify(&first), Some(first_id.clone()));
    let paired = store.issue("browser", Role::Operator).expect("issue");
    drop(store);

    // Second start: a new token; the old file's token is useless.
    let store = open(home.path());
    assert_eq!(
        store.verify(&first),
        Some(first_id.clone()),
        "valid until rotated"
    );
    let second_id = store.ensure_owner_token(home.path()).expect("owner");
    let second = read_owner_token(home.path()).expect("read");
    assert_ne!(second, first);
    assert_ne!(second_id, first_id);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(store.verify(&first), None);
    assert_eq!(store.verify(&second), Some(second_id.clone()));
    assert_eq!(
        store.verify(&paired.token),
        Some(paired.id.clone()),
        "others kept"
    );
    // The role comes with the verification: the gateway's route table uses it.
    assert_eq!(
        store.verify_caller(&second),
        Some(Verified {
            id: second_id.clone(),
            role: Role::Owner
        })
    );
    assert_eq!(
        store.verify_caller(&paired.token),
        Some(Verified {
            id: paired.id.clone(),
            role: Role::Operator
        })
    );
    assert_eq!(store.verify_caller(&first), None);

    let owners: Vec<_> = store
        .list()
        .into_iter()
        .filter(|info| info.file_token)
        .map(|info| (info.id, info.label, info.revoked, info.role))
        .collect();
    assert_eq!(
        owners,
        [
            (first_id, "owner".to_owned(), true, Some(Role::Owner)),
            (
                second_id.clone(),
                "owner".to_owned(),
                false,
                Some(Role::Owner)
            )
        ]
    );
    // And persisted.
    assert_eq!(open(home.path()).verify(&second), Some(second_id));
    assert_eq!(open(home.path()).verify(&first), None);
}

#[test]
fn read_owner_token_errors() {
    let home = home();
    let file = home.path().join(OWNER_TOKEN_FILE);
    let err = read_owner_token(home.path()).expect_err("missing");
    assert!(
        matches!(&err, StoreError::Read { path, .. } if *path == file),
        "{err:?}"
    );

    for bad in [
        "",
        "garbage\n",
        "rvk_abc\n",
        &format!("rvk_{}\n", "A".repeat(64)),
    ] {
        fs::write(&file, bad).expect("write");
        let err = read_owner_token(home.path()).expect_err(bad);
        assert_eq!(
            err.to_string(),
            format!(
                "{}: corrupt gateway token file: expected rvk_ followed by 64 lowercase hex digits",
                file.display()
            )
        );
    }
}
