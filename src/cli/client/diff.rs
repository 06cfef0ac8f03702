//! What an edit changes, as a unified diff of lines, for `--dry-run` and for a refused
//! replacement.
//!
//! Part of `revka client` ([`super`]). The edits `revka client` makes touch one region of a
//! file, so one hunk is enough: the lines the two texts share at the start and at the end
//! are context (three of each are shown), everything between is the change.

/// Lines of context around the change.
const CONTEXT: usize = 3;

/// The diff from `old` (`None`: no file) to `new`, labelled with `name`; empty when equal.
pub(super) fn unified(name: &str, old: Option<&str>, new: &str) -> String {
    let before: Vec<&str> = old.map(lines).unwrap_or_default();
    let after = lines(new);
    if old == Some(new) {
        return String::new();
    }
    let head = before
        .iter()
        .zip(&after)
        .take_while(|(a, b)| a == b)
        .count();
    let tail = before[head..]
        .iter()
        .rev()
        .zip(after[head..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let from = head.saturating_sub(CONTEXT);
    let old_to = (before.len() - tail + CONTEXT).min(before.len());
    let new_to = (after.len() - tail + CONTEXT).min(after.len());
    let mut out = match old {
        Some(_) => format!("--- {name}\n+++ {name}\n"),
        None => format!("--- /dev/null\n+++ {name}\n"),
    };
    out.push_str(&format!(
        "@@ -{} +{} @@\n",
        range(from, old_to),
        range(from, new_to)
    ));
    for line in &before[from..head] {
        out.push_str(&format!(" {line}\n"));
    }
    for line in &before[head..before.len() - tail] {
        out.push_str(&format!("-{line}\n"));
    }
    for line in &after[head..after.len() - tail] {
        out.push_str(&format!("+{line}\n"));
    }
    for line in &after[after.len() - tail..new_to] {
        out.push_str(&format!(" {line}\n"));
    }
    out
}

/// The lines of `text`, without their endings.
fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// A hunk range: `start,count` (1-based; `0,0` for nothing).
fn range(from: usize, to: usize) -> String {
    let count = to - from;
    let start = if count == 0 { from } else { from + 1 };
    format!("{start},{count}")
}

#[cfg(test)]
mod tests {
    use super::unified;

    #[test]
    fn one_hunk_with_three_lines_of_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\n";
        let new = "a\nb\nc\nd\nX\nY\ne\nf\ng\n";
        assert_eq!(
            unified("f.json", Some(old), new),
            "--- f.json\n+++ f.json\n@@ -2,6 +2,8 @@\n b\n c\n d\n+X\n+Y\n e\n f\n g\n"
        );
        assert_eq!(
            unified("f.json", Some("a\nb\n"), "a\nc\n"),
            "--- f.json\n+++ f.json\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
        );
        assert_eq!(unified("f.json", Some(old), old), "");
    }

    #[test]
    fn a_new_file_is_all_additions() {
        assert_eq!(
            unified("n.toml", None, "x = 1\ny = 2\n"),
            "--- /dev/null\n+++ n.toml\n@@ -0,0 +1,2 @@\n+x = 1\n+y = 2\n"
        );
    }
}
