//! What `revka install` installs: the operator package, its launcher and the session
//! manager, either embedded in the binary at compile time or read from a checkout
//! (`--from-source DIR`).
//!
//! Part of `revka install`. The embedded list must name every file of the package; a test
//! compares it with the checkout's directories so a new module cannot be forgotten.

use std::path::Path;

use sha2::{Digest, Sha256};

/// One file to install: its path relative to the destination directory, and its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Relative path (`/`-separated), e.g. `revka_operator/server.py`.
    pub path: String,
    /// The contents.
    pub contents: Vec<u8>,
}

/// Everything the installer may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// Where they came from, for the output (`embedded` or the checkout).
    pub origin: String,
    /// The operator package (`pyproject.toml`, `revka_operator/*.py`), for `operator_mcp/src`.
    pub operator: Vec<SourceFile>,
    /// The launcher, `run_operator_mcp.py`.
    pub launcher: Vec<u8>,
    /// The session manager (`*.js`, `backends/*.js`, `package.json`, `package-lock.json`),
    /// for `operator_mcp/session-manager`.
    pub session_manager: Vec<SourceFile>,
}

macro_rules! embed {
    ($dir:literal, $($name:literal),+ $(,)?) => {
        vec![$(SourceFile {
            path: $name.to_owned(),
            contents: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $dir, "/", $name))
                .as_bytes()
                .to_vec(),
        }),+]
    };
}

impl Sources {
    /// The files compiled into this binary.
    pub fn embedded() -> Self {
        Self {
            origin: "embedded in this binary".to_owned(),
            operator: embed!(
                "sidecars/operator",
                "pyproject.toml",
                "revka_operator/__init__.py",
                "revka_operator/server.py",
                "revka_operator/store.py",
            ),
            launcher: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/sidecars/operator/run_operator_mcp.py"
            ))
            .as_bytes()
            .to_vec(),
            session_manager: embed!(
                "sidecars/session-manager",
                "agents.js",
                "chat.js",
                "http.js",
                "log.js",
                "package-lock.json",
                "package.json",
                "ringlog.js",
                "routes.js",
                "session-manager.js",
                "backends/claude.js",
                "backends/codex.js",
            ),
        }
    }

    /// The same files read from a checkout whose root is `root` (its `sidecars/` directory).
    pub fn from_checkout(root: &Path) -> Result<Self, String> {
        let operator_dir = root.join("sidecars").join("operator");
        if !operator_dir.join("pyproject.toml").is_file() {
            return Err(format!(
                "{} is not a Revka checkout (no sidecars/operator/pyproject.toml)",
                root.display()
            ));
        }
        let mut operator = vec![read(&operator_dir, "pyproject.toml")?];
        operator.extend(read_matching(&operator_dir, "revka_operator", &[".py"])?);
        let launcher = read(&operator_dir, "run_operator_mcp.py")?.contents;
        let sm_dir = root.join("sidecars").join("session-manager");
        let mut session_manager =
            read_matching(&sm_dir, "", &[".js", "package.json", "package-lock.json"])?;
        session_manager.extend(read_matching(&sm_dir, "backends", &[".js"])?);
        Ok(Self {
            origin: format!("checkout {}", root.display()),
            operator,
            launcher,
            session_manager,
        })
    }

    /// The operator package's version (`[project] version` of its `pyproject.toml`).
    pub fn operator_version(&self) -> Result<String, String> {
        let pyproject = self
            .operator
            .iter()
            .find(|f| f.path == "pyproject.toml")
            .ok_or("the operator package has no pyproject.toml")?;
        let text = String::from_utf8_lossy(&pyproject.contents);
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| format!("pyproject.toml: {e}"))?;
        table
            .get("project")
            .and_then(|p| p.get("version"))
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "pyproject.toml has no [project] version".to_owned())
    }

    /// A digest of the operator package (paths and contents), recorded in the venv after a
    /// successful `pip install` so a changed package is reinstalled even at the same version.
    pub fn operator_digest(&self) -> String {
        let mut hash = Sha256::new();
        for file in &self.operator {
            hash.update((file.path.len() as u64).to_le_bytes());
            hash.update(file.path.as_bytes());
            hash.update((file.contents.len() as u64).to_le_bytes());
            hash.update(&file.contents);
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn read(dir: &Path, name: &str) -> Result<SourceFile, String> {
    let path = dir.join(name);
    let contents =
        std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(SourceFile {
        path: name.to_owned(),
        contents,
    })
}

/// The files of `dir/sub` whose names end with one of `suffixes` (not recursive), sorted.
fn read_matching(dir: &Path, sub: &str, suffixes: &[&str]) -> Result<Vec<SourceFile>, String> {
    let base = if sub.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(sub)
    };
    let entries =
        std::fs::read_dir(&base).map_err(|e| format!("cannot read {}: {e}", base.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| suffixes.iter().any(|s| n.ends_with(s)))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(format!("no sidecar files in {}", base.display()));
    }
    names
        .iter()
        .map(|name| {
            let rel = if sub.is_empty() {
                name.clone()
            } else {
                format!("{sub}/{name}")
            };
            read(dir, &rel)
        })
        .collect()
}
