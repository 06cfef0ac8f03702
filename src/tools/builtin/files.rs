//! The file tools of the baseline tier: `file_read`, `file_write`, `file_edit` (here),
//! `glob_search` and `content_search` ([`search`]), `pdf_read` and `image_info` ([`docs`]).
//!
//! Each is a [`PolicyTool`] registered by `register`; the guarded wrapper
//! (`src/tools/builtin.rs`) checks autonomy and the action budget first. Every path goes
//! through the policy's path rules (`src/security/paths.rs`): resolved to a canonical path,
//! checked for workspace containment and forbidden paths, then opened component by component
//! without following links, so a refusal names its rule (`path`, `workspace_only`, `git_dir`,
//! `forbidden_paths`). The workspace is the calling session's cwd; paths in results are shown
//! relative to it where inside it. File I/O runs on the blocking pool.

pub mod docs;
pub mod search;

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Args, Cx, PolicyTool, Registrar, capped, failed, ok_text};
use crate::security::paths::{self, Access, PathError};
use crate::tools::BuiltinError;

/// Registers this group's tools.
pub(super) fn register(r: &mut Registrar<'_>) {
    let limits = Limits::of(r.deps.policy.config());
    r.add(FileRead(limits));
    r.add(FileWrite(limits));
    r.add(FileEdit(limits));
    r.add(search::GlobSearch(limits));
    r.add(search::ContentSearch(limits));
    r.add(docs::PdfRead(limits));
    r.add(docs::ImageInfo(limits));
}

/// The `[security]` caps the file tools apply.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `max_output_bytes`.
    pub output: usize,
    /// `max_file_bytes`.
    pub file: u64,
}

impl Limits {
    fn of(config: &crate::config::SecurityConfig) -> Self {
        Self {
            output: usize::try_from(config.max_output_bytes).unwrap_or(usize::MAX),
            file: config.max_file_bytes,
        }
    }
}

/// Resolves and checks `raw` for `access` in the caller's workspace.
pub(crate) fn resolve(cx: &Cx, raw: &str, access: Access) -> Result<PathBuf, BuiltinError> {
    cx.policy
        .paths
        .resolve(cx.workspace(), raw, access)
        .map_err(BuiltinError::Refused)
}

/// How `path` is shown in results.
pub(crate) fn shown(cx: &Cx, path: &Path) -> String {
    paths::display(cx.workspace(), path)
}

/// A path error as the tool's error: the refusal, or what the file system said.
pub(crate) fn path_failed(cx: &Cx, e: PathError) -> BuiltinError {
    match e {
        PathError::Refused(refusal) => BuiltinError::Refused(refusal),
        PathError::Io { path, source } => {
            BuiltinError::Failed(format!("`{}` {}", shown(cx, &path), describe(&source)))
        }
    }
}

/// An I/O error in words.
pub(crate) fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "does not exist".to_owned(),
        io::ErrorKind::PermissionDenied => "cannot be opened: permission denied".to_owned(),
        io::ErrorKind::InvalidInput => e.to_string(),
        _ => format!("failed: {e}"),
    }
}

/// Runs blocking file work off the runtime's threads.
pub(crate) fn blocking<F>(f: F) -> BoxFuture<'static, Result<Value, BuiltinError>>
where
    F: FnOnce() -> Result<Value, BuiltinError> + Send + 'static,
{
    Box::pin(async move {
        tokio::task::spawn_blocking(f)
            .await
            .unwrap_or_else(|e| Err(BuiltinError::Failed(format!("the file task failed: {e}"))))
    })
}

/// Reads at most `max` bytes of the checked file `path`, failing when it is larger.
pub(crate) fn read_capped(cx: &Cx, path: &Path, max: u64) -> Result<Vec<u8>, BuiltinError> {
    let file = cx
        .policy
        .paths
        .open_read(path)
        .map_err(|e| path_failed(cx, e))?;
    let size = file
        .metadata()
        .map_err(|e| BuiltinError::Failed(format!("`{}` {}", shown(cx, path), describe(&e))))?
        .len();
    if size > max {
        return Err(BuiltinError::Failed(format!(
            "`{}` is {size} bytes, over the limit of {max} ([security] max_file_bytes)",
            shown(cx, path)
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| BuiltinError::Failed(format!("`{}` {}", shown(cx, path), describe(&e))))?;
    if bytes.len() as u64 > max {
        return Err(BuiltinError::Failed(format!(
            "`{}` grew past the limit of {max} bytes while it was read",
            shown(cx, path)
        )));
    }
    Ok(bytes)
}

/// The schema of a `path` argument.
fn path_schema(what: &str) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "description": format!(
            "{what}: relative to the workspace (the session's working directory), or absolute, \
             or ~/…; it must stay inside the workspace after symlinks are resolved"
        ),
    })
}

/// Bytes examined for a NUL to call a file binary.
const BINARY_SNIFF: usize = 8192;

/// `file_read`.
pub struct FileRead(pub Limits);

impl PolicyTool for FileRead {
    fn name(&self) -> &'static str {
        "file_read"
    }

    fn description(&self) -> String {
        format!(
            "Read a text file from the workspace, whole or a range of lines (where it starts: \
             start_line, 1-based, or offset, lines skipped; where it ends: end_line, \
             inclusive, or limit, a line count). Returns the text as it is in the file, with \
             the range read and the file's total line count. At most {} bytes are returned \
             (more is cut at a line boundary and marked truncated); lines are counted over at \
             most the first {} bytes. Binary files (a NUL byte in the first 8 KiB) are refused \
             with their size: use pdf_read or image_info for those. Paths outside the \
             workspace, forbidden paths, symlinks leading out and files with several hard links \
             are refused.",
            self.0.output, self.0.file
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": path_schema("The file to read"),
                "start_line": { "type": "integer", "minimum": 1, "description": "First line to return (1-based). Default 1." },
                "end_line": { "type": "integer", "minimum": 1, "description": "Last line to return (inclusive). Default: the last line." },
                "offset": { "type": "integer", "minimum": 0, "description": "Lines to skip before the first returned (0-based); instead of start_line." },
                "limit": { "type": "integer", "minimum": 1, "description": "Most lines to return; instead of end_line." },
            },
            "required": ["path"],
            "additionalProperties": false,
        })
    }

    fn effect(&self, _args: &Value) -> crate::security::Effect {
        crate::security::Effect::Read
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let limits = self.0;
        blocking(move || file_read(&cx, &args, limits))
    }
}

fn file_read(cx: &Cx, args: &Value, limits: Limits) -> Result<Value, BuiltinError> {
    let a = Args::new(args)?;
    let raw = a.str("path")?;
    let (start_line, end_line) = (a.opt_u64("start_line")?, a.opt_u64("end_line")?);
    let (offset, limit) = (a.opt_u64("offset")?, a.opt_u64("limit")?);
    if start_line.is_some() && offset.is_some() {
        return Err(BuiltinError::Arguments(
            "give `start_line` or `offset`, not both".to_owned(),
        ));
    }
    if end_line.is_some() && limit.is_some() {
        return Err(BuiltinError::Arguments(
            "give `end_line` or `limit`, not both".to_owned(),
        ));
    }
    let first = match (start_line, offset) {
        (Some(0), _) => {
            return Err(BuiltinError::Arguments(
                "`start_line` is 1-based: the first line is 1".to_owned(),
            ));
        }
        (Some(n), _) => n,
        (None, Some(o)) => o.saturating_add(1),
        (None, None) => 1,
    };
    let last = match (end_line, limit) {
        (Some(e), _) if e < first => {
            return Err(BuiltinError::Arguments(format!(
                "`end_line` ({e}) is before `start_line` ({first})"
            )));
        }
        (Some(e), _) => e,
        (None, Some(0)) => {
            return Err(BuiltinError::Arguments(
                "`limit` must be at least 1".to_owned(),
            ));
        }
        (None, Some(l)) => first.saturating_add(l - 1),
        (None, None) => u64::MAX,
    };
    let path = resolve(cx, raw, Access::Read)?;
    let file = cx
        .policy
        .paths
        .open_read(&path)
        .map_err(|e| path_failed(cx, e))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let io_err =
        |e: io::Error| BuiltinError::Failed(format!("`{}` {}", shown(cx, &path), describe(&e)));
    let mut reader = BufReader::with_capacity(64 * 1024, file.take(limits.file));
    let head = reader.fill_buf().map_err(io_err)?;
    if head[..head.len().min(BINARY_SNIFF)].contains(&0) {
        let structured = json!({ "path": shown(cx, &path), "binary": true, "size_bytes": size });
        return Ok(failed(
            format!(
                "`{}` is a binary file ({size} bytes); file_read returns text only (use \
                 pdf_read for a PDF, image_info for an image)",
                shown(cx, &path)
            ),
            structured,
        ));
    }
    let mut content = String::new();
    let mut line = Vec::new();
    let (mut number, mut returned, mut truncated) = (0u64, 0u64, false);
    let mut last_returned = None;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io_err)? == 0 {
            break;
        }
        number += 1;
        if number < first || number > last || truncated {
            continue;
        }
        if content.len() + line.len() > limits.output {
            truncated = true;
            if returned == 0 {
                // One line longer than the cap: return its head.
                let (cut, _) = capped(&line, limits.output);
                content.push_str(&cut);
                returned = 1;
                last_returned = Some(number);
            }
            continue;
        }
        content.push_str(&String::from_utf8_lossy(&line));
        returned += 1;
        last_returned = Some(number);
    }
    // Lines past `max_file_bytes` were not counted.
    let counted_all = size <= limits.file;
    let shown_path = shown(cx, &path);
    let structured = json!({
        "path": shown_path,
        "content": content,
        "start_line": first,
        "end_line": last_returned,
        "lines": returned,
        "total_lines": if counted_all { json!(number) } else { Value::Null },
        "size_bytes": size,
        "truncated": truncated || (!counted_all && last > number),
    });
    let mut text = content;
    if returned == 0 && counted_all {
        text = format!(
            "(no lines: `{shown_path}` has {number} line(s), the range starts at line {first})"
        );
    } else if returned == 0 {
        text = format!(
            "(no lines: the first {} bytes of `{shown_path}` ([security] max_file_bytes) hold \
             {number} line(s), the range starts at line {first})",
            limits.file
        );
    } else if truncated {
        text.push_str(&format!(
            "\n[truncated: {} bytes returned of the requested lines; read on from line {}]",
            text.len(),
            last_returned.unwrap_or(first) + 1
        ));
    }
    Ok(ok_text(text, structured))
}

/// `file_write`.
pub struct FileWrite(pub Limits);

impl PolicyTool for FileWrite {
    fn name(&self) -> &'static str {
        "file_write"
    }

    fn description(&self) -> String {
        format!(
            "Create or replace a file in the workspace with the given text, atomically (a \
             temporary file in the same directory renamed over the target, so readers never \
             see half a file). Missing parent directories inside the workspace are created. \
             An existing file keeps its permissions. Content is at most {} bytes. Writing \
             through a symlink, to a file with several hard links, outside the workspace or \
             into a forbidden path is refused; refused under autonomy \"read_only\".",
            self.0.file
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": path_schema("The file to write"),
                "content": { "type": "string", "description": "The whole new content of the file (UTF-8 text)." },
            },
            "required": ["path", "content"],
            "additionalProperties": false,
        })
    }

    fn effect(&self, _args: &Value) -> crate::security::Effect {
        crate::security::Effect::Write
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let limits = self.0;
        blocking(move || {
            let a = Args::new(&args)?;
            let raw = a.str("path")?;
            let content = a.str("content")?;
            if content.len() as u64 > limits.file {
                return Err(BuiltinError::Arguments(format!(
                    "`content` is {} bytes, over the limit of {} ([security] max_file_bytes)",
                    content.len(),
                    limits.file
                )));
            }
            let path = resolve(&cx, raw, Access::Write)?;
            let created = cx
                .policy
                .paths
                .write_atomic(cx.workspace(), &path, content.as_bytes())
                .map_err(|e| path_failed(&cx, e))?;
            let shown_path = shown(&cx, &path);
            Ok(ok_text(
                format!(
                    "{} `{shown_path}` ({} bytes)",
                    if created { "Created" } else { "Replaced" },
                    content.len()
                ),
                json!({ "path": shown_path, "bytes": content.len(), "created": created }),
            ))
        })
    }
}

/// `file_edit`.
pub struct FileEdit(pub Limits);

impl PolicyTool for FileEdit {
    fn name(&self) -> &'static str {
        "file_edit"
    }

    fn description(&self) -> String {
        format!(
            "Replace an exact string in a text file of the workspace: old_string must occur \
             exactly once (or set replace_all to replace every occurrence); zero or several \
             matches fail without changing anything. The file is rewritten atomically and \
             keeps its permissions; the result is a unified diff of the change (cut at {} \
             bytes). Files over {} bytes, non-UTF-8 files, symlinks, files with several hard \
             links, paths outside the workspace and forbidden paths are refused; refused \
             under autonomy \"read_only\".",
            self.0.output, self.0.file
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": path_schema("The file to edit"),
                "old_string": { "type": "string", "minLength": 1, "description": "The exact text to replace (whitespace and line breaks included)." },
                "new_string": { "type": "string", "description": "The text to put in its place (may be empty to delete)." },
                "replace_all": { "type": "boolean", "default": false, "description": "Replace every occurrence instead of requiring exactly one." },
            },
            "required": ["path", "old_string", "new_string"],
            "additionalProperties": false,
        })
    }

    fn effect(&self, _args: &Value) -> crate::security::Effect {
        crate::security::Effect::Write
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let limits = self.0;
        blocking(move || file_edit(&cx, &args, limits))
    }
}

fn file_edit(cx: &Cx, args: &Value, limits: Limits) -> Result<Value, BuiltinError> {
    let a = Args::new(args)?;
    let raw = a.str("path")?;
    let old = a.str("old_string")?;
    let new = a.str("new_string")?;
    let replace_all = a.opt_bool("replace_all")?.unwrap_or(false);
    if old.is_empty() {
        return Err(BuiltinError::Arguments(
            "`old_string` must not be empty".to_owned(),
        ));
    }
    if old == new {
        return Err(BuiltinError::Arguments(
            "`old_string` and `new_string` are the same: nothing would change".to_owned(),
        ));
    }
    let path = resolve(cx, raw, Access::Write)?;
    let shown_path = shown(cx, &path);
    let bytes = read_capped(cx, &path, limits.file)?;
    let before = String::from_utf8(bytes).map_err(|_| {
        BuiltinError::Failed(format!(
            "`{shown_path}` is not UTF-8 text; file_edit edits text files only"
        ))
    })?;
    let count = before.matches(old).count();
    if count == 0 {
        return Ok(failed(
            format!(
                "`old_string` was not found in `{shown_path}` (it must match exactly, \
                 whitespace and line breaks included); nothing was changed"
            ),
            json!({ "path": shown_path, "replacements": 0, "matches": 0 }),
        ));
    }
    if count > 1 && !replace_all {
        return Ok(failed(
            format!(
                "`old_string` occurs {count} times in `{shown_path}`; give more context so it \
                 matches once, or set replace_all; nothing was changed"
            ),
            json!({ "path": shown_path, "replacements": 0, "matches": count }),
        ));
    }
    let after = if replace_all {
        before.replace(old, new)
    } else {
        before.replacen(old, new, 1)
    };
    if after.len() as u64 > limits.file {
        return Err(BuiltinError::Failed(format!(
            "the edited `{shown_path}` would be {} bytes, over the limit of {} \
             ([security] max_file_bytes)",
            after.len(),
            limits.file
        )));
    }
    let diff = similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{shown_path}"), &format!("b/{shown_path}"))
        .to_string();
    cx.policy
        .paths
        .write_atomic(cx.workspace(), &path, after.as_bytes())
        .map_err(|e| path_failed(cx, e))?;
    let (diff, diff_truncated) = capped(diff.as_bytes(), limits.output);
    let replacements = if replace_all { count } else { 1 };
    Ok(ok_text(
        diff.clone(),
        json!({
            "path": shown_path,
            "replacements": replacements,
            "diff": diff,
            "diff_truncated": diff_truncated,
        }),
    ))
}
