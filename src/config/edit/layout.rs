//! Where added tables go and where removed tables' comments stay, in a toml_edit document.
//!
//! Part of the config editor ([`super::ConfigFile`]). toml_edit renders tables by their
//! position in the original file; a table without one follows the table before it in the
//! document tree. These helpers keep that order predictable: a new top-level table is placed
//! after everything the file holds, and removing a table takes only the comments attached to
//! it.

use toml_edit::{DocumentMut, Item, Table};

/// The top-level table `key`, created when missing; `None` when `key` holds something that is
/// not a table.
///
/// A new table goes after every existing one and after the file's trailing comments (for the
/// template, the whole commented file), separated from them by a blank line.
pub(super) fn ensure_table<'d>(doc: &'d mut DocumentMut, key: &str) -> Option<&'d mut Table> {
    if !doc.contains_key(key) {
        let mut table = Table::new();
        table.set_position(Some(last_position(doc.as_table()) + 1));
        let trailing = doc.trailing().as_str().unwrap_or("").to_owned();
        if !trailing.is_empty() {
            let mut prefix = trailing;
            if !prefix.ends_with('\n') {
                prefix.push('\n');
            }
            if !prefix.ends_with("\n\n") && prefix.trim() != "" {
                prefix.push('\n');
            }
            table.decor_mut().set_prefix(prefix);
            doc.set_trailing("");
        }
        doc.insert(key, Item::Table(table));
    }
    doc.get_mut(key)?.as_table_mut()
}

/// The largest position of any table in `table`'s tree (0 when none has one): a table given
/// the next position is rendered after everything else (also used by `revka client` for
/// Codex's config.toml).
pub(crate) fn last_position(table: &Table) -> isize {
    let mut last = table.position().unwrap_or(0);
    for (_, item) in table.iter() {
        match item {
            Item::Table(t) => last = last.max(last_position(t)),
            Item::ArrayOfTables(aot) => {
                for t in aot.iter() {
                    last = last.max(last_position(t));
                }
            }
            _ => {}
        }
    }
    last
}

/// After `removed` was taken out of `doc`: the comments of its prefix that were set apart
/// from its header by a blank line (a section heading, a note about what follows) belonged to
/// the file, not to the table; they are put back before the next table, or at the end.
pub(super) fn keep_detached_comments(doc: &mut DocumentMut, removed: &Table) {
    let prefix = removed
        .decor()
        .prefix()
        .and_then(|p| p.as_str())
        .unwrap_or("");
    let detached = detached_part(prefix);
    if detached.trim().is_empty() {
        return;
    }
    let detached = format!("{}\n", detached.trim_end_matches(['\n', ' ', '\t', '\r']));
    let after = removed.position().unwrap_or(isize::MAX);
    match next_table(doc.as_table_mut(), after) {
        Some(next) => {
            let old = next
                .decor()
                .prefix()
                .and_then(|p| p.as_str())
                .unwrap_or("\n")
                .to_owned();
            next.decor_mut().set_prefix(format!("{detached}{old}"));
        }
        None => {
            let old = doc.trailing().as_str().unwrap_or("").to_owned();
            doc.set_trailing(format!("{detached}{old}"));
        }
    }
}

/// The part of a table's prefix up to and including its last blank line.
fn detached_part(prefix: &str) -> &str {
    let mut end = 0;
    let mut start = 0;
    for line in prefix.split_inclusive('\n') {
        start += line.len();
        if line.trim().is_empty() && line.ends_with('\n') {
            end = start;
        }
    }
    &prefix[..end]
}

/// The table with the smallest position after `after`.
fn next_table(table: &mut Table, after: isize) -> Option<&mut Table> {
    let best = smallest_after(table, after)?;
    find_at(table, best)
}

fn smallest_after(table: &Table, after: isize) -> Option<isize> {
    let mut best = table.position().filter(|&p| p > after);
    let mut consider = |p: Option<isize>| {
        if let Some(p) = p {
            best = Some(best.map_or(p, |b| b.min(p)));
        }
    };
    for (_, item) in table.iter() {
        match item {
            Item::Table(t) => consider(smallest_after(t, after)),
            Item::ArrayOfTables(aot) => {
                for t in aot.iter() {
                    consider(smallest_after(t, after));
                }
            }
            _ => {}
        }
    }
    best
}

fn find_at(table: &mut Table, position: isize) -> Option<&mut Table> {
    if table.position() == Some(position) {
        return Some(table);
    }
    for (_, item) in table.iter_mut() {
        let found = match item {
            Item::Table(t) => find_at(t, position),
            Item::ArrayOfTables(aot) => aot.iter_mut().find_map(|t| find_at(t, position)),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::detached_part;

    #[test]
    fn the_detached_part_ends_at_the_last_blank_line() {
        assert_eq!(detached_part(""), "");
        assert_eq!(detached_part("# mine\n"), "");
        assert_eq!(detached_part("\n# mine\n"), "\n");
        assert_eq!(
            detached_part("\n# ---- section ----\n\n# mine\n"),
            "\n# ---- section ----\n\n"
        );
        assert_eq!(detached_part("# a\n  \n"), "# a\n  \n");
    }
}
