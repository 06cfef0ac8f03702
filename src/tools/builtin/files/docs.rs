//! `pdf_read` (text per page, with `lopdf`) and `image_info` (format and size with
//! `imagesize`, EXIF with `kamadak-exif`; no pixel decoding).
//!
//! Part of the file tools ([`super`]): the file is resolved and opened through the path rules
//! and read whole under `max_file_bytes`; parsing runs on the blocking pool inside
//! `catch_unwind`, so a malformed file that makes a parser panic is an error result, never a
//! panic reaching the session.

use std::panic::{AssertUnwindSafe, catch_unwind};

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{Limits, blocking, path_schema, read_capped, resolve, shown};
use crate::security::Effect;
use crate::security::paths::Access;
use crate::tools::BuiltinError;
use crate::tools::builtin::{Args, Cx, PolicyTool, capped, ok_text};

/// EXIF fields returned at most.
const MAX_EXIF_FIELDS: usize = 200;
/// Characters of one EXIF value returned at most.
const MAX_EXIF_VALUE: usize = 256;

/// `pdf_read`.
pub struct PdfRead(pub Limits);

impl PolicyTool for PdfRead {
    fn name(&self) -> &'static str {
        "pdf_read"
    }

    fn description(&self) -> String {
        format!(
            "Extract the text of a PDF file in the workspace, page by page (all pages, or \
             start_page..end_page, 1-based and inclusive). Files over {} bytes are refused; \
             at most {} bytes of text are returned (more is marked truncated). Scanned pages \
             without a text layer come back empty; encrypted or malformed PDFs fail with an \
             error.",
            self.0.file, self.0.output
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": path_schema("The PDF file"),
                "start_page": { "type": "integer", "minimum": 1, "description": "First page (1-based). Default 1." },
                "end_page": { "type": "integer", "minimum": 1, "description": "Last page (inclusive). Default: the last page." },
            },
            "required": ["path"],
            "additionalProperties": false,
        })
    }

    fn effect(&self, _args: &Value) -> Effect {
        Effect::Read
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let limits = self.0;
        blocking(move || pdf_read(&cx, &args, limits))
    }
}

fn pdf_read(cx: &Cx, args: &Value, limits: Limits) -> Result<Value, BuiltinError> {
    let a = Args::new(args)?;
    let raw = a.str("path")?;
    let start = a.opt_u64("start_page")?.unwrap_or(1);
    let end = a.opt_u64("end_page")?;
    if start == 0 {
        return Err(BuiltinError::Arguments(
            "`start_page` is 1-based: the first page is 1".to_owned(),
        ));
    }
    if let Some(end) = end
        && end < start
    {
        return Err(BuiltinError::Arguments(format!(
            "`end_page` ({end}) is before `start_page` ({start})"
        )));
    }
    let path = resolve(cx, raw, Access::Read)?;
    let shown_path = shown(cx, &path);
    let bytes = read_capped(cx, &path, limits.file)?;
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(BuiltinError::Failed(format!(
            "`{shown_path}` is not a PDF (no %PDF- header)"
        )));
    }
    let max_page_bytes = usize::try_from(limits.file).unwrap_or(usize::MAX);
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        let doc = lopdf::Document::load_mem(&bytes).map_err(|e| e.to_string())?;
        if doc.is_encrypted() {
            return Err("it is encrypted".to_owned());
        }
        let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
        let count = pages.len() as u64;
        let mut out = Vec::new();
        let mut room = limits.output;
        let mut truncated = false;
        for page in pages
            .into_iter()
            .filter(|&p| u64::from(p) >= start && end.is_none_or(|e| u64::from(p) <= e))
        {
            if room == 0 {
                truncated = true;
                break;
            }
            match doc.extract_text_with_limit(&[page], max_page_bytes) {
                Ok(text) => {
                    let (text, cut) = capped(text.as_bytes(), room);
                    room = room.saturating_sub(text.len());
                    truncated |= cut;
                    out.push(json!({ "page": page, "text": text }));
                }
                Err(e) => out.push(json!({ "page": page, "text": "", "error": e.to_string() })),
            }
        }
        Ok((count, out, truncated))
    }));
    let (page_count, pages, truncated) = match parsed {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            return Err(BuiltinError::Failed(format!(
                "`{shown_path}` could not be read as a PDF: {e}"
            )));
        }
        Err(_) => {
            return Err(BuiltinError::Failed(format!(
                "`{shown_path}` could not be read as a PDF: the parser gave up on malformed \
                 content"
            )));
        }
    };
    if start > page_count && page_count > 0 {
        return Err(BuiltinError::Arguments(format!(
            "`start_page` ({start}) is past the last page ({page_count})"
        )));
    }
    let mut text = String::new();
    for p in &pages {
        text.push_str(&format!("--- page {} ---\n", p["page"]));
        if let Some(e) = p.get("error").and_then(Value::as_str) {
            text.push_str(&format!("(no text: {e})\n"));
        } else {
            text.push_str(p["text"].as_str().unwrap_or_default());
            text.push('\n');
        }
    }
    if truncated {
        text.push_str(&format!("[truncated at {} bytes of text]", limits.output));
    }
    Ok(ok_text(
        text,
        json!({
            "path": shown_path,
            "page_count": page_count,
            "pages": pages,
            "truncated": truncated,
        }),
    ))
}

/// `image_info`.
pub struct ImageInfo(pub Limits);

impl PolicyTool for ImageInfo {
    fn name(&self) -> &'static str {
        "image_info"
    }

    fn description(&self) -> String {
        format!(
            "Describe an image file in the workspace without decoding its pixels: format \
             (jpeg, png, gif, webp, bmp, tiff, ico, heif/avif), width and height in pixels, \
             file size, and its EXIF metadata (camera, date, orientation, GPS, …; at most \
             {MAX_EXIF_FIELDS} fields, values cut at {MAX_EXIF_VALUE} characters) when it has \
             any. Files over {} bytes are refused.",
            self.0.file
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": { "path": path_schema("The image file") },
            "required": ["path"],
            "additionalProperties": false,
        })
    }

    fn effect(&self, _args: &Value) -> Effect {
        Effect::Read
    }

    fn run(&self, cx: Cx, args: Value) -> BoxFuture<'static, Result<Value, BuiltinError>> {
        let limits = self.0;
        blocking(move || image_info(&cx, &args, limits))
    }
}

fn image_info(cx: &Cx, args: &Value, limits: Limits) -> Result<Value, BuiltinError> {
    let a = Args::new(args)?;
    let raw = a.str("path")?;
    let path = resolve(cx, raw, Access::Read)?;
    let shown_path = shown(cx, &path);
    let bytes = read_capped(cx, &path, limits.file)?;
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        let kind = imagesize::image_type(&bytes).ok();
        let size = imagesize::blob_size(&bytes).ok();
        let exif = exif::Reader::new().read_from_container(&mut std::io::Cursor::new(&bytes));
        (kind, size, exif)
    }));
    let Ok((kind, size, exif)) = parsed else {
        return Err(BuiltinError::Failed(format!(
            "`{shown_path}` could not be read as an image: the parser gave up on malformed \
             content"
        )));
    };
    let Some(kind) = kind else {
        return Err(BuiltinError::Failed(format!(
            "`{shown_path}` is not an image format image_info knows (jpeg, png, gif, webp, \
             bmp, tiff, ico, heif/avif)"
        )));
    };
    let format = format_name(kind);
    let (exif, exif_error) = match exif {
        Ok(exif) => (Some(exif_fields(&exif)), None),
        Err(exif::Error::NotFound(_)) => (None, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut text = format!("{shown_path}: {format}");
    if let Some(s) = &size {
        text.push_str(&format!(", {}×{} pixels", s.width, s.height));
    }
    text.push_str(&format!(", {} bytes", bytes.len()));
    match &exif {
        Some(fields) => {
            text.push_str(&format!("\nEXIF ({} fields):", fields.len()));
            for (k, v) in fields {
                text.push_str(&format!("\n  {k}: {}", v.as_str().unwrap_or_default()));
            }
        }
        None => text.push_str("\nNo EXIF metadata."),
    }
    Ok(ok_text(
        text,
        json!({
            "path": shown_path,
            "format": format,
            "width": size.as_ref().map(|s| s.width),
            "height": size.as_ref().map(|s| s.height),
            "size_bytes": bytes.len(),
            "exif": exif,
            "exif_error": exif_error,
        }),
    ))
}

/// The lower-case name of an image type (`jpeg`, `heif`).
fn format_name(kind: imagesize::ImageType) -> String {
    let debug = format!("{kind:?}");
    debug
        .split('(')
        .next()
        .unwrap_or(&debug)
        .to_ascii_lowercase()
}

/// The primary image's EXIF fields as `{tag: value}` (thumbnail IFD and maker notes left out).
fn exif_fields(exif: &exif::Exif) -> Map<String, Value> {
    let mut fields = Map::new();
    for field in exif.fields() {
        if fields.len() >= MAX_EXIF_FIELDS {
            break;
        }
        if field.ifd_num == exif::In::THUMBNAIL || field.tag == exif::Tag::MakerNote {
            continue;
        }
        let value = field.display_value().with_unit(exif).to_string();
        let mut shown: String = value.chars().take(MAX_EXIF_VALUE).collect();
        if shown.len() < value.len() {
            shown.push('…');
        }
        fields.insert(field.tag.to_string(), Value::String(shown));
    }
    fields
}
