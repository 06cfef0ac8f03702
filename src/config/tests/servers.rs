//! `[[mcp.servers]]` and the sections around them: unknown keys, `${VAR}`, caps, transport
//! applicability, the gateway bind rule and its environment override, and printing the
//! effective config with secrets masked.

use super::*;
use crate::config::{Config, ConfigError, Transport};

const FS: &str = "[mcp]\nenabled = true\n[[mcp.servers]]\nname = \"fs\"\ncommand = \"npx\"\n";

#[test]
fn unknown_keys_are_warnings_with_full_paths() {
    let text = "colour = \"blue\"\n\
                [mcp]\nenabled = true\n\
                [[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\n\
                [[mcp.servers]]\nname = \"b\"\ncomand = \"y\"\ncommand = \"y\"\n\
                restart = { max_restart = 3 }\nenv = { A = \"1\" }\n\
                [gateway]\nhots = \"::1\"\n\
                [session_manager.breaker]\nthreshold = 2\n";
    let loaded = ok(text);
    let mut warnings = loaded.warnings.clone();
    warnings.sort();
    assert_eq!(
        warnings,
        [
            "unknown key colour (ignored)",
            "unknown key gateway.hots (ignored)",
            "unknown key mcp.servers[1].comand (ignored)",
            "unknown key mcp.servers[1].restart.max_restart (ignored)",
            "unknown key session_manager.breaker.threshold (ignored)",
        ]
    );
    assert_eq!(loaded.config.mcp.servers[1].command.as_deref(), Some("y"));
}

#[test]
fn vars_expand_in_args_url_env_and_headers_only() {
    let env = env_of(&[
        ("HOME", "/home/u"),
        ("TOKEN", "s3cr3t"),
        ("HOST", "mcp.example.com"),
        ("DIR", "/data"),
    ]);
    let text = "[[mcp.servers]]\nname = \"local\"\ncommand = \"${DIR}/bin\"\n\
                args = [\"--root=${DIR}\", \"$${DIR}\", \"cost: $5\", \"${DIR}${DIR}\"]\n\
                env = { GITHUB_TOKEN = \"${TOKEN}\", LITERAL = \"a$${b}c\" }\n\
                [[mcp.servers]]\nname = \"remote\"\ntransport = \"http\"\n\
                url = \"https://${HOST}/mcp\"\n\
                headers = { Authorization = \"Bearer ${TOKEN}\" }\n";
    let loaded = parse_with(text, &env).unwrap();
    let [local, remote] = &loaded.config.mcp.servers[..] else {
        panic!("two servers");
    };
    // `command` is not expanded.
    assert_eq!(local.command.as_deref(), Some("${DIR}/bin"));
    assert_eq!(
        local.args,
        ["--root=/data", "${DIR}", "cost: $5", "/data/data"]
    );
    assert_eq!(local.env["GITHUB_TOKEN"], "s3cr3t");
    assert_eq!(local.env["LITERAL"], "a${b}c");
    assert_eq!(remote.url.as_deref(), Some("https://mcp.example.com/mcp"));
    assert_eq!(remote.headers["Authorization"], "Bearer s3cr3t");
}

#[test]
fn a_bad_variable_reference_is_an_error() {
    let cases = [
        ("${}", "`${}` is not a valid variable reference"),
        ("${A-B}", "`${A-B}` is not a valid variable reference"),
        ("${1X}", "`${1X}` is not a valid variable reference"),
    ];
    for (value, want) in cases {
        let text = format!("{FS}args = [\"{value}\"]\n");
        let e = err(&text);
        assert!(
            e.starts_with("/home/u/.revka/config.toml:6:9: mcp.servers[0].args[0]: "),
            "{e}"
        );
        assert!(e.contains(want), "{e}");
    }
}

#[test]
fn tool_timeouts_above_600_are_capped_with_a_warning() {
    let text = format!("{FS}tool_timeout_secs = 900\n[operator]\ntool_timeout_secs = 601\n");
    let loaded = ok(&text);
    assert_eq!(loaded.config.mcp.servers[0].tool_timeout_secs, 600);
    assert_eq!(loaded.config.operator.tool_timeout_secs, 600);
    assert_eq!(
        loaded.warnings,
        [
            "mcp.servers[0].tool_timeout_secs: 900 exceeds the maximum of 600; using 600",
            "operator.tool_timeout_secs: 601 exceeds the maximum of 600; using 600",
        ]
    );
    // 600 itself and the default (180) are untouched.
    let loaded = ok(&format!("{FS}tool_timeout_secs = 600\n"));
    assert_eq!(loaded.config.mcp.servers[0].tool_timeout_secs, 600);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(ok(FS).config.mcp.servers[0].tool_timeout_secs, 180);
}

#[test]
fn keys_that_do_not_apply_to_the_transport_are_warnings() {
    let text = "[mcp]\nenabled = true\n\
                [[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\nurl = \"https://e.com\"\n\
                headers = { A = \"b\" }\n\
                [[mcp.servers]]\nname = \"b\"\ntransport = \"http\"\nurl = \"http://[::1]:8080/mcp\"\n\
                command = \"x\"\nargs = [\"y\"]\nenv = { Z = \"1\" }\n";
    let loaded = ok(text);
    assert_eq!(
        loaded.warnings,
        [
            "mcp.servers[0].url: ignored for transport \"stdio\"",
            "mcp.servers[0].headers: ignored for transport \"stdio\"",
            "mcp.servers[1].command: ignored for transport \"http\"",
            "mcp.servers[1].args: ignored for transport \"http\"",
            "mcp.servers[1].env: ignored for transport \"http\"",
        ]
    );
    assert_eq!(loaded.config.mcp.servers[1].transport, Transport::Http);
}

#[test]
fn servers_with_mcp_disabled_get_a_warning() {
    let loaded = ok("[[mcp.servers]]\nname = \"fs\"\ncommand = \"npx\"\n");
    assert!(!loaded.config.mcp.enabled);
    assert_eq!(
        loaded.warnings,
        ["mcp.enabled is false: none of the 1 configured MCP server(s) will connect"]
    );
    assert!(ok(FS).warnings.is_empty());
}

#[test]
fn urls_are_checked_by_hand() {
    use crate::config::validate::server::check_url;
    for good in [
        "http://localhost",
        "https://example.com/mcp?x=1#f",
        "HTTPS://user:pw@example.com:8443/",
        "http://[::1]:3000/mcp",
        "http://127.0.0.1:/x",
    ] {
        assert_eq!(check_url(good), Ok(()), "{good}");
    }
    for bad in [
        "example.com/mcp",
        "ws://example.com",
        "http://",
        "http://:80/",
        "http://host:99999/",
        "http://exa mple.com",
        "http://[::1/",
        "http://[nope]/",
        "http://a<b>/",
    ] {
        assert!(check_url(bad).is_err(), "{bad} should be rejected");
    }
}

#[test]
fn only_loopback_binds_unless_public_binds_are_allowed() {
    for host in [
        "127.0.0.1",
        "127.3.2.1",
        "::1",
        "[::1]",
        "localhost",
        "LOCALHOST",
    ] {
        let loaded = ok(&format!("[gateway]\nhost = \"{host}\"\n"));
        assert!(loaded.warnings.is_empty(), "{host}: {:?}", loaded.warnings);
    }
    for host in ["0.0.0.0", "::", "192.168.1.2", "example.com"] {
        let e = err(&format!("[gateway]\nhost = \"{host}\"\n"));
        assert!(e.contains("is not a loopback address"), "{host}: {e}");
        let loaded = ok(&format!(
            "[gateway]\nhost = \"{host}\"\nallow_public_bind = true\n"
        ));
        assert_eq!(loaded.config.gateway.host, host);
        assert_eq!(
            loaded.warnings,
            [format!(
                "gateway.host: binding the non-loopback address {host:?} (allow_public_bind = true)"
            )]
        );
    }
}

#[test]
fn the_environment_overrides_the_gateway_timeout() {
    let text = "[gateway]\nrequest_timeout_secs = 10\n";
    let with = |value: &str| {
        parse_with(
            text,
            &env_of(&[("HOME", "/home/u"), ("REVKA_GATEWAY_TIMEOUT_SECS", value)]),
        )
    };
    assert_eq!(ok(text).config.gateway.request_timeout_secs, 10);
    assert_eq!(with("45").unwrap().config.gateway.request_timeout_secs, 45);
    assert_eq!(with(" 7 ").unwrap().config.gateway.request_timeout_secs, 7);
    // Set but empty counts as unset.
    assert_eq!(with("").unwrap().config.gateway.request_timeout_secs, 10);
    for bad in ["abc", "0", "-3", "1.5"] {
        let e = with(bad).unwrap_err();
        assert!(matches!(e, ConfigError::EnvOverride { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "environment variable REVKA_GATEWAY_TIMEOUT_SECS: {bad:?} is not a positive \
                 whole number of seconds (it overrides gateway.request_timeout_secs)"
            )
        );
    }
}

#[test]
fn printing_round_trips_and_display_masks_secrets() {
    // A value no key name contains (`require_token` contains `tok`).
    let env = env_of(&[("HOME", "/home/u"), ("T", "t0k-s3cret")]);
    let text = "[mcp]\nenabled = true\nroots = [\"/w\"]\n\
                [[mcp.servers]]\nname = \"gh\"\ncommand = \"npx\"\nargs = [\"-y\"]\n\
                env = { GITHUB_TOKEN = \"${T}\", API_KEY = \"k\", db_password = \"p\", LOG = \"debug\" }\n\
                restart = { max_restarts = 9 }\n\
                [[mcp.servers]]\nname = \"r\"\ntransport = \"sse\"\nurl = \"https://e.com/sse\"\n\
                headers = { Authorization = \"Bearer ${T}\" }\n";
    let config = parse_with(text, &env).unwrap().config;
    let exact = config.to_toml();
    assert_eq!(parse_with(&exact, &env).unwrap().config, config);

    let shown = config.display_toml();
    let back: Config = toml::from_str(&shown).unwrap();
    let [gh, r] = &back.mcp.servers[..] else {
        panic!("two servers")
    };
    assert_eq!(gh.env["GITHUB_TOKEN"], "***");
    assert_eq!(gh.env["API_KEY"], "***");
    assert_eq!(gh.env["db_password"], "***");
    assert_eq!(gh.env["LOG"], "debug");
    assert_eq!(r.headers["Authorization"], "***");
    assert!(!shown.contains("t0k-s3cret"), "{shown}");
}

/// What the config shows of `args` and `url` (in `config check`, in error messages, and to
/// the daemon's logs and introspection through the server spec) is the file's own text,
/// masked: never a variable's value.
#[test]
fn args_and_url_are_shown_as_written_never_expanded() {
    let env = env_of(&[
        ("HOME", "/home/u"),
        ("K", "key-value-1"),
        ("U", "pw-value-2"),
    ]);
    let text = "[[mcp.servers]]\nname = \"s\"\ncommand = \"srv\"\n\
                args = [\"--api-key=${K}\", \"--token\", \"sk-4fGh7Jk2LmN9pQ3rS8tV\", \"plain\"]\n\
                [[mcp.servers]]\nname = \"r\"\ntransport = \"http\"\n\
                url = \"https://x:${U}@e.com/mcp?key=${K}&sig=abc\"\n";
    let config = parse_with(text, &env).unwrap().config;
    let [s, r] = &config.mcp.servers[..] else {
        panic!("two servers")
    };
    assert_eq!(s.args[0], "--api-key=key-value-1", "expanded for use");
    assert_eq!(
        s.shown().to_json(),
        serde_json::json!({
            "command": "srv",
            "args": ["--api-key=${K}", "--token", "***", "plain"],
        })
    );
    assert_eq!(
        r.shown().as_url(),
        Some("https://***@e.com/mcp?key=${K}&sig=***")
    );
    let spec = crate::config::server_spec(r, &config.mcp).unwrap();
    assert_eq!(spec.shown(), r.shown());
    let shown = config.display_toml();
    assert!(shown.contains("--api-key=${K}"), "{shown}");
    assert!(
        shown.contains("https://***@e.com/mcp?key=${K}&sig=***"),
        "{shown}"
    );
    for secret in ["key-value-1", "pw-value-2", "4fGh7Jk2", "abc"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // An invalid URL is named as written, masked.
    let bad = "[[mcp.servers]]\nname = \"r\"\ntransport = \"http\"\n\
               url = \"ftp://x:${U}@e.com/?key=${K}\"\n";
    let loaded = parse_with(bad, &env).unwrap();
    let reason = &loaded.config.mcp.invalid_servers[0].reason;
    assert!(
        reason.contains("invalid URL \"ftp://***@e.com/?key=${K}\""),
        "{reason}"
    );
    assert!(
        !reason.contains("pw-value-2") && !reason.contains("key-value-1"),
        "{reason}"
    );
}

#[test]
fn tool_filters_take_names_and_trailing_star_prefixes() {
    let loaded = ok(&format!(
        "{FS}allowed_tools = [\"read_*\", \"list_directory\"]\ndenied_tools = [\"read_secret*\"]\n\
         [[mcp.servers]]\nname = \"none\"\ncommand = \"x\"\nallowed_tools = []\n"
    ));
    let [fs, none] = &loaded.config.mcp.servers[..] else {
        panic!("two servers");
    };
    let filter = fs.tool_filter();
    assert_eq!(filter.rejects("fs", "read_file"), None);
    assert_eq!(filter.rejects("fs", "list_directory"), None);
    assert!(filter.rejects("fs", "read_secrets").is_some());
    assert!(filter.rejects("fs", "write_file").is_some());
    // An empty allowlist registers nothing, and says so.
    assert!(none.tool_filter().rejects("none", "anything").is_some());
    assert_eq!(
        loaded.warnings,
        ["mcp.servers[1].allowed_tools: empty, so none of this server's tools is registered"]
    );
    // No filter at all is open.
    assert!(ok(FS).config.mcp.servers[0].tool_filter().is_open());

    for (pattern, want) in [
        ("", "must not be empty"),
        ("re*ad", "`*` is only allowed once, at the end"),
        ("read**", "`*` is only allowed once, at the end"),
        (" read", "no leading or trailing spaces"),
        ("read\\t", "no leading or trailing spaces"),
    ] {
        let text = format!("{FS}denied_tools = [\"ok\", \"{pattern}\"]\n");
        let message = err(&text);
        assert!(
            message.contains("mcp.servers[0].denied_tools[1]") && message.contains(want),
            "{pattern:?}: {message}"
        );
    }
}

#[test]
fn provider_api_keys_are_masked_when_shown() {
    let loaded = ok(
        "[tools.web_search]\nprovider = \"brave\"\napi_key = \"sk-live-0123456789\"\n\
         [tools.weather]\napi_key = \"${OWM_KEY}\"\n",
    );
    let shown = loaded.config.display_toml();
    assert!(!shown.contains("sk-live"), "{shown}");
    assert!(!shown.contains("OWM_KEY"), "{shown}");
    assert!(shown.contains("provider = \"brave\""), "{shown}");
    assert!(!format!("{:?}", loaded.config.tools).contains("sk-live"));
}

/// OAuth: an http server without an Authorization header gets it by default (store under
/// `$REVKA_HOME/oauth`, hint naming the server); `[mcp.servers.oauth]` tunes it with
/// `client_secret` expanded and masked; a header, `enabled = false` or another transport has
/// none; every bad table is a precise error naming its key.
#[test]
fn oauth_tables_are_checked_and_built_into_the_spec() {
    let env = env_of(&[
        ("HOME", "/home/u"),
        ("REVKA_HOME", "/rh"),
        ("SEC", "s3cr3t-value"),
    ]);
    let text = "[mcp.oauth]\nclient_metadata_url = \"https://revka.example/client.json\"\n\
                [[mcp.servers]]\nname = \"plain\"\ntransport = \"http\"\nurl = \"https://a.example/mcp\"\n\
                [[mcp.servers]]\nname = \"tuned\"\ntransport = \"http\"\nurl = \"https://b.example/mcp\"\n\
                [mcp.servers.oauth]\nclient_id = \"id-1\"\nclient_secret = \"${SEC}\"\nscopes = [\"a\", \"b\"]\n\
                [[mcp.servers]]\nname = \"keyed\"\ntransport = \"http\"\nurl = \"https://c.example/mcp\"\n\
                headers = { Authorization = \"Bearer x\" }\n\
                [[mcp.servers]]\nname = \"off\"\ntransport = \"http\"\nurl = \"https://d.example/mcp\"\n\
                oauth = { enabled = false }\n\
                [[mcp.servers]]\nname = \"local\"\ncommand = \"srv\"\n";
    let config = parse_with(text, &env).unwrap().config;
    let spec = |name: &str| {
        let server = config.mcp.servers.iter().find(|s| s.name == name).unwrap();
        crate::config::server_spec(server, &config.mcp)
            .unwrap()
            .oauth
    };
    let plain = spec("plain").unwrap();
    assert_eq!(plain.store_dir, std::path::Path::new("/rh/oauth"));
    assert_eq!(plain.login_hint, "run `revka mcp login plain`");
    assert_eq!(
        plain.client_metadata_url.as_deref(),
        Some("https://revka.example/client.json")
    );
    let tuned = spec("tuned").unwrap();
    assert_eq!(tuned.client_id.as_deref(), Some("id-1"));
    assert_eq!(
        tuned.client_secret.as_ref().unwrap().expose(),
        "s3cr3t-value"
    );
    assert_eq!(tuned.scopes, ["a", "b"]);
    assert!(
        !format!("{tuned:?}").contains("s3cr3t"),
        "the secret never prints"
    );
    assert!(spec("keyed").is_none() && spec("off").is_none() && spec("local").is_none());

    let http =
        "[[mcp.servers]]\nname = \"r\"\ntransport = \"http\"\nurl = \"https://r.example/mcp\"\n";
    for (table, want) in [
        (
            "[mcp.servers.oauth]\ngrant = \"password\"\n",
            "oauth.grant: \"password\" is not",
        ),
        (
            "[mcp.servers.oauth]\nclient_secret = \"x\"\n",
            "oauth.client_secret: needs oauth.client_id",
        ),
        (
            "[mcp.servers.oauth]\nprivate_key_file = \"/k.pem\"\n",
            "oauth.private_key_file: only with grant",
        ),
        (
            "[mcp.servers.oauth]\ngrant = \"client_credentials\"\nclient_id = \"c\"\n",
            "needs client_id and client_secret or private_key_file",
        ),
        (
            "[mcp.servers.oauth]\nsigning_alg = \"HS256\"\n",
            "oauth.signing_alg: \"HS256\" is not",
        ),
        (
            "[mcp.servers.oauth]\nclient_metadata_url = \"http://x.example/c.json\"\n",
            "is not an https URL with a path",
        ),
        (
            "headers = { authorization = \"Bearer x\" }\n[mcp.servers.oauth]\nclient_id = \"c\"\n",
            "does not use OAuth (remove one of them)",
        ),
    ] {
        let e = err(&format!("{http}{table}"));
        assert!(e.contains(want), "{table}: {e}");
    }
    let e = err(
        "[[mcp.servers]]\nname = \"s\"\ncommand = \"x\"\n[mcp.servers.oauth]\nclient_id = \"c\"\n",
    );
    assert!(
        e.contains("oauth: only for the http transport (this server's is \"stdio\")"),
        "{e}"
    );
    let e = err("[mcp.oauth]\nlogin_timeout_secs = 0\n");
    assert!(
        e.contains("mcp.oauth.login_timeout_secs: must be between 1 and 3600"),
        "{e}"
    );
}
