//! (stub: filled in by the issue-25 work on this module)

use super::Registrar;

/// Registers this group's tools.
pub(super) fn register(_r: &mut Registrar<'_>) {}
