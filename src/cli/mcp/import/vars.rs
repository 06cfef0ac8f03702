//! Editor variables in imported values, translated to what Revka's config means by them.
//!
//! Part of `revka mcp import` ([`super`]). VS Code and Cursor write `${env:NAME}`,
//! `${userHome}`, `${workspaceFolder}`, `${pathSeparator}` and `${input:id}`; Claude Code
//! writes `${NAME}`. Revka's config expands `${NAME}` from the daemon's environment when it
//! loads, so `${env:NAME}` becomes `${NAME}`, the folders are written out, and what only an
//! editor can supply makes the server unimportable, with the reason.

use crate::config::is_var_name;
use std::path::Path;

/// What the editor's variables resolve to for one source file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Context<'a> {
    /// `${userHome}`.
    pub(super) home: Option<&'a str>,
    /// `${workspaceFolder}`: the project the file belongs to, if any.
    pub(super) workspace: Option<&'a Path>,
}

/// `value` in Revka's syntax, or why it cannot be expressed.
pub(super) fn translate(value: &str, context: &Context<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated `${{` in {value:?}"));
        };
        let name = &after[..end];
        match name {
            "userHome" => {
                let home = context
                    .home
                    .ok_or("`${userHome}` is used but HOME is not set")?;
                out.push_str(&literal(home));
            }
            "workspaceFolder" => {
                let dir = context.workspace.ok_or(
                    "`${workspaceFolder}` is used, but the file belongs to no workspace (import \
                     the project's .vscode/mcp.json or .cursor/mcp.json by path)",
                )?;
                out.push_str(&literal(&dir.to_string_lossy()));
            }
            "pathSeparator" | "/" => out.push('/'),
            _ => {
                let var = name.strip_prefix("env:").unwrap_or(name);
                if name.starts_with("input:") {
                    return Err(format!(
                        "`${{{name}}}` is a prompt only the editor can answer; add the server \
                         with `revka mcp add` and an environment variable instead"
                    ));
                }
                if !is_var_name(var) {
                    return Err(format!("`${{{name}}}` has no equivalent in Revka's config"));
                }
                out.push_str("${");
                out.push_str(var);
                out.push('}');
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Text written into a value as is: a `${` in it must not read as a reference.
fn literal(text: &str) -> String {
    text.replace("${", "$${")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Context, translate};

    #[test]
    fn editor_variables_become_revka_references_or_text() {
        let ctx = Context {
            home: Some("/home/u"),
            workspace: Some(Path::new("/src/app")),
        };
        let t = |v: &str| translate(v, &ctx);
        assert_eq!(t("plain $HOME $1").unwrap(), "plain $HOME $1");
        assert_eq!(t("Bearer ${env:GH_TOKEN}").unwrap(), "Bearer ${GH_TOKEN}");
        assert_eq!(
            t("${GH_TOKEN}").unwrap(),
            "${GH_TOKEN}",
            "Claude Code's syntax"
        );
        assert_eq!(t("${userHome}/notes").unwrap(), "/home/u/notes");
        assert_eq!(t("${workspaceFolder}${/}db").unwrap(), "/src/app/db");
        assert!(t("${input:api-key}").unwrap_err().contains("prompt"));
        assert!(t("${TOKEN:-x}").unwrap_err().contains("no equivalent"));
        assert!(t("${env:}").is_err());
        assert!(t("${oops").unwrap_err().contains("unterminated"));
        let nowhere = Context {
            home: None,
            workspace: None,
        };
        assert!(translate("${workspaceFolder}", &nowhere).is_err());
        assert!(translate("${userHome}", &nowhere).is_err());
        let odd = Context {
            home: Some("/h/${x}"),
            workspace: None,
        };
        assert_eq!(translate("${userHome}", &odd).unwrap(), "/h/$${x}");
    }
}
