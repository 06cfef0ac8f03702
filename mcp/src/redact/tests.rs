use super::*;

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn urls_lose_userinfo_query_values_and_fragment() {
    for (given, shown) in [
        ("https://example.com/mcp", "https://example.com/mcp"),
        (
            "https://mcp.example.com/v1/sse?api_key=sk-abc&region=eu",
            "https://mcp.example.com/v1/sse?api_key=***&region=***",
        ),
        (
            "https://user:hunter2@example.com:8443/mcp",
            "https://***@example.com:8443/mcp",
        ),
        ("https://tok@example.com/", "https://***@example.com/"),
        ("http://h/p?flag&x=", "http://h/p?flag&x=***"),
        ("http://h/p#access_token=abc", "http://h/p"),
        ("http://[::1]:9/mcp?k=v", "http://[::1]:9/mcp?k=***"),
        // A random-looking path segment is masked like any text.
        (
            "https://hooks.example.com/mcp/0a1b2c3d4e5f6a7b8c9d/events",
            "https://hooks.example.com/mcp/***/events",
        ),
        // The unexpanded form: references stay, even where they are not yet a valid URL.
        (
            "https://${HOST}/mcp?api_key=${API_KEY}",
            "https://${HOST}/mcp?api_key=${API_KEY}",
        ),
        (
            "https://${USER}:${PASS}@h/mcp?key=${K}&secret=inline",
            "https://***@h/mcp?key=${K}&secret=***",
        ),
        (
            "https://h/mcp?key=%24%7BK%7D",
            "https://h/mcp?key=%24%7BK%7D",
        ),
        ("not a url", "not a url"),
    ] {
        assert_eq!(url(given), shown, "{given}");
    }
}

#[test]
fn option_values_with_secret_names_are_masked_in_both_spellings() {
    let given = strings(&[
        "--api-key=sk-live-1",
        "--token",
        "t0k",
        "--password",
        "${DB_PASSWORD}",
        "--key=${API_KEY}",
        "--verbose",
        "--port",
        "8080",
        "--Auth-Header",
        "--root",
        "/srv/data",
        "-k",
        "plain",
    ]);
    assert_eq!(
        args(&given),
        [
            "--api-key=***",
            "--token",
            "***",
            "--password",
            "${DB_PASSWORD}",
            "--key=${API_KEY}",
            "--verbose",
            "--port",
            "8080",
            // An option followed by another option masks nothing.
            "--Auth-Header",
            "--root",
            "/srv/data",
            "-k",
            "plain",
        ]
    );
}

#[test]
fn assignments_headers_and_urls_in_arguments_are_masked() {
    let given = strings(&[
        "API_KEY=abc",
        "token=xyz",
        "LOG_LEVEL=debug",
        "Authorization: Bearer abc",
        "X-Api-Key:abc",
        "Accept: text/plain",
        "https://u:p@db.example.com/x?sig=1",
        "--db=postgres://admin:pw@db/prod",
        "--endpoint=https://h/mcp?token=abc",
        "localhost:8080",
    ]);
    assert_eq!(
        args(&given),
        [
            "API_KEY=***",
            "token=***",
            "LOG_LEVEL=debug",
            "Authorization: ***",
            "X-Api-Key:***",
            "Accept: text/plain",
            "https://***@db.example.com/x?sig=***",
            "--db=postgres://***@db/prod",
            "--endpoint=https://h/mcp?token=***",
            "localhost:8080",
        ]
    );
}

#[test]
fn random_looking_runs_are_masked_and_ordinary_words_are_not() {
    for secret in [
        "sk-proj-4fGh7Jk2LmN9pQ3rS8tV",
        "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        "AKIAIOSFODNN7EXAMPLE",
        "0123456789abcdef0123456789abcdef",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlMTIzNDU2Nzg5",
    ] {
        let shown = text(secret);
        assert!(shown.contains(MASK), "{secret} shown as {shown}");
        assert!(!shown.contains("4fGh7Jk2"), "{shown}");
    }
    assert_eq!(text("sk-proj-4fGh7Jk2LmN9pQ3rS8tV"), "sk-proj-***");
    assert_eq!(
        text("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlMTIzNDU2Nzg5"),
        "***.***.***"
    );
    for ordinary in [
        "@modelcontextprotocol/server-everything",
        "/home/user/.nvm/versions/node/v20.11.1/bin/node",
        "mcp-server-filesystem-2025",
        "550e8400-e29b-41d4-a716-446655440000",
        "aaaaaaaaaaaaaaaa1111",
        "ThisIsAVeryLongIdentifierName",
        "1234567890123456789",
        "${OPENAI_API_KEY}",
    ] {
        assert_eq!(text(ordinary), ordinary);
    }
    assert_eq!(
        text("prefix-${A_B}-0123456789abcdef01"),
        "prefix-${A_B}-***"
    );
    assert_eq!(text("unterminated ${ab"), "unterminated ${ab");
    assert_eq!(text("π≈3.14 ✓"), "π≈3.14 ✓", "non-ASCII passes through");
}

#[test]
fn a_command_line_shows_program_and_masked_arguments() {
    assert_eq!(
        command_line(
            "npx",
            &strings(&[
                "-y",
                "@scope/server",
                "--api-key",
                "sk-1",
                "--url=https://h/?k=v"
            ]),
        ),
        "npx -y @scope/server --api-key *** --url=https://h/?k=***"
    );
}

#[test]
fn secret_names_are_recognised_case_insensitively() {
    for name in [
        "API_KEY",
        "apiKey",
        "x-api-key",
        "GITHUB_TOKEN",
        "client_secret",
        "PASSWORD",
        "db-passwd",
        "credentials",
        "Authorization",
        "Cookie",
        "sig-signature",
    ] {
        assert!(is_secret_name(name), "{name}");
    }
    for name in ["port", "verbose", "root", "LOG_LEVEL", "region", "Accept"] {
        assert!(!is_secret_name(name), "{name}");
    }
}

#[test]
fn a_shown_target_is_masked_when_built() {
    let command = Shown::command("npx", &strings(&["server", "--token=abc"]));
    assert_eq!(command.line(), "npx server --token=***");
    assert_eq!(
        command.to_json(),
        serde_json::json!({ "command": "npx", "args": ["server", "--token=***"] })
    );
    assert_eq!(command.as_url(), None);
    let url = Shown::url("https://u:p@h/mcp?key=${KEY}&sig=abc");
    assert_eq!(url.as_url(), Some("https://***@h/mcp?key=${KEY}&sig=***"));
    assert_eq!(url.line(), "https://***@h/mcp?key=${KEY}&sig=***");
    assert_eq!(
        url.to_json(),
        serde_json::json!({ "url": "https://***@h/mcp?key=${KEY}&sig=***" })
    );
}
