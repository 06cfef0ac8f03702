//! (stub: filled in by the issue-25 work on this module)

use crate::config::SecurityConfig;

/// Compiled rules.
#[derive(Debug, Default)]
pub struct NetRules {}

impl NetRules {
    /// Compiles the rules of `config`.
    pub fn new(_config: &SecurityConfig) -> Result<Self, String> {
        Ok(Self {})
    }
}
