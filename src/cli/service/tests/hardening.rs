//! `revka service`: the recorded `PATH`, the reload protocol per systemd version, and the
//! unit's hardening (what is set, what is deliberately absent, and that Node and Python still
//! run under it).

use super::*;

/// Every line of `unit` that sets a directive (comments left out).
fn directives(unit: &str) -> Vec<&str> {
    unit.lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect()
}

fn unit_for(mode: ReloadMode) -> String {
    render_unit(&ServiceParams {
        reload: mode,
        ..golden_params()
    })
    .unwrap()
}

#[test]
fn notify_reload_units_wait_for_the_daemon_and_have_no_exec_reload() {
    let unit = unit_for(ReloadMode::NotifyReload);
    let set = directives(&unit);
    assert!(set.contains(&"Type=notify-reload"), "{unit}");
    assert!(
        !set.iter().any(|l| l.starts_with("ExecReload=")),
        "systemd sends SIGHUP itself and waits for RELOADING=1 … READY=1:\n{unit}"
    );
}

#[test]
fn legacy_unit_matches_golden_and_reloads_through_revka_reload() {
    let unit = unit_for(ReloadMode::ExecReload);
    assert_golden("revka-legacy.service", &unit);
    let set = directives(&unit);
    assert!(set.contains(&"Type=notify"), "{unit}");
    assert!(
        set.contains(&"ExecReload=/opt/revka/bin/revka reload"),
        "returns when the reload is done, fails on a rejected config:\n{unit}"
    );
}

#[test]
fn without_the_gateway_an_old_systemd_reloads_by_signal() {
    let unit = unit_for(ReloadMode::Signal);
    let set = directives(&unit);
    assert!(set.contains(&"Type=notify"), "{unit}");
    assert!(
        set.contains(&"ExecReload=/bin/kill -HUP $MAINPID"),
        "{unit}"
    );
}

#[test]
fn the_reload_mode_follows_the_systemd_version_and_the_gateway() {
    let table = [
        (Some(253), true, ReloadMode::NotifyReload),
        (Some(256), false, ReloadMode::NotifyReload),
        (Some(252), true, ReloadMode::ExecReload),
        (Some(252), false, ReloadMode::Signal),
        (None, true, ReloadMode::ExecReload),
        (None, false, ReloadMode::Signal),
    ];
    for (version, gateway, want) in table {
        assert_eq!(
            ReloadMode::for_systemd(version, gateway),
            want,
            "systemd {version:?}, gateway {gateway}"
        );
    }
    assert_eq!(NOTIFY_RELOAD_SINCE, 253);
}

#[test]
fn systemd_versions_are_parsed_from_systemctl_version() {
    let debian = "systemd 252 (252.38-1~deb12u1)\n+PAM +AUDIT +SELINUX default-hierarchy=unified\n";
    assert_eq!(parse_systemd_version(debian), Some(252));
    assert_eq!(
        parse_systemd_version("systemd 256 (256.7-1-arch)\n"),
        Some(256)
    );
    assert_eq!(parse_systemd_version("systemd 257~rc2\n"), Some(257));
    assert_eq!(parse_systemd_version("not systemd\n"), None);
    assert_eq!(parse_systemd_version(""), None);
    assert_eq!(systemd_version_cmd().to_string(), "systemctl --version");
}

#[test]
fn every_unit_records_the_path_and_the_hardening() {
    for mode in [
        ReloadMode::NotifyReload,
        ReloadMode::ExecReload,
        ReloadMode::Signal,
    ] {
        let unit = unit_for(mode);
        let set = directives(&unit);
        let path = format!("Environment=\"PATH={GOLDEN_PATH}\"");
        for line in [
            path.as_str(),
            "NoNewPrivileges=yes",
            "UMask=0077",
            "RestrictSUIDSGID=yes",
            "LockPersonality=yes",
            "RestrictRealtime=yes",
        ] {
            assert!(set.contains(&line), "{mode:?}: missing `{line}`:\n{unit}");
        }
        // Absent on purpose, each with its reason in the unit's comment.
        for (directive, reason) in [
            ("MemoryDenyWriteExecute=", "Node's JIT"),
            ("ProtectSystem=", "need a user namespace"),
            ("ProtectHome=", "breaks servers that need $HOME"),
            ("PrivateTmp=", "need a user namespace"),
            ("PrivateUsers=", "other users' files then show as owned by"),
            ("SystemCallFilter=", "arbitrary programs"),
            ("RestrictNamespaces=", "sandboxes itself with namespaces"),
        ] {
            assert!(
                !set.iter().any(|l| l.starts_with(directive)),
                "{mode:?}: {directive} must not be set:\n{unit}"
            );
            assert!(
                unit.contains(directive) && unit.contains(reason),
                "{mode:?}: the comment says why {directive} is absent"
            );
        }
    }
}

#[test]
fn the_service_path_keeps_absolute_entries_in_order_once() {
    assert_eq!(
        service_path(Some("/home/u/.nvm/bin:/usr/bin::.:bin:/usr/bin:/bin")),
        (
            "/home/u/.nvm/bin:/usr/bin:/bin".to_owned(),
            vec![String::new(), ".".to_owned(), "bin".to_owned()]
        )
    );
    assert_eq!(service_path(None), (FALLBACK_PATH.to_owned(), Vec::new()));
    assert_eq!(
        service_path(Some("")),
        (FALLBACK_PATH.to_owned(), Vec::new())
    );
    assert_eq!(
        service_path(Some("rel:/bad\nline")),
        (
            FALLBACK_PATH.to_owned(),
            vec!["rel".to_owned(), "/bad\nline".to_owned()]
        )
    );
}

#[test]
fn dry_run_shows_the_path_and_the_reload_protocol() {
    let f = fixture(Platform::Systemd);
    let out = install(&f, &mut Recorder::default(), true, false);
    out.result.unwrap();
    assert!(
        out.stdout
            .contains("\nEnvironment=\"PATH=/usr/bin:/bin\"\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("the service's PATH (this shell's): /usr/bin:/bin\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("reload: Type=notify-reload: "),
        "{}",
        out.stderr
    );

    let f = fixture(Platform::Launchd);
    let out = install(&f, &mut Recorder::default(), true, false);
    out.result.unwrap();
    assert!(
        out.stdout
            .contains("<key>PATH</key>\n\t\t<string>/usr/bin:/bin</string>"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("the service's PATH (this shell's): /usr/bin:/bin\n")
    );
    assert!(
        !out.stderr.contains("reload:"),
        "launchd has no reload protocol"
    );
}

#[test]
fn the_plist_names_the_rotation_of_its_log_files() {
    let plist = render_plist(&golden_params()).unwrap();
    assert!(
        plist.contains("the daemon does, past 10 MiB, keeping\n\t     5 (revka.err.log.1"),
        "{plist}"
    );
}

/// Node (its JIT warmed up by a hot loop) and Python start and write a file under `$HOME`
/// with no-new-privileges and umask 0077, as under the unit; the file is owner-only. (The
/// seccomp-based directives, RestrictSUIDSGID=, LockPersonality= and RestrictRealtime=, need
/// systemd to apply them; they refuse syscalls neither runtime makes.)
#[test]
fn node_and_python_run_and_write_under_home_with_the_unit_restrictions() {
    let home = tempfile::tempdir().unwrap();
    let node = "let s = 0; for (let i = 0; i < 5e6; i++) { s += i % 7; } \
                require('fs').writeFileSync(process.env.HOME + '/node.txt', String(s));";
    let python = "import os, pathlib; \
                  pathlib.Path(os.environ['HOME'], 'python.txt').write_text('ok')";
    for (program, args, file) in [
        ("node", vec!["-e", node], "node.txt"),
        ("python3", vec!["-c", python], "python.txt"),
    ] {
        let script = format!("umask 077 && exec {program} \"$@\"");
        let output = Command::new("setpriv")
            .args(["--no-new-privs", "sh", "-c", &script, "sh"])
            .args(&args)
            .env("HOME", home.path())
            .output();
        let output = match output {
            Ok(o) => o,
            Err(e) => {
                eprintln!("skipping {program}: setpriv is not available ({e})");
                continue;
            }
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() == Some(127) {
            eprintln!("skipping {program}: not installed ({stderr})");
            continue;
        }
        assert!(output.status.success(), "{program}: {stderr}");
        let written = home.path().join(file);
        let mode = fs::metadata(&written).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{program} created {file} owner-only");
    }
}
