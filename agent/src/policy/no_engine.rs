//! No engine: this hull-agent was built without the `policy` feature. No policy can be
//! loaded ([`PolicyError::NotBuiltIn`]), so every request is allowed, and an image that
//! carries a default policy is refused at start-up rather than served without it.

use super::PolicyError;

/// Never constructed.
#[derive(Clone)]
pub enum Engine {}

impl Engine {
    /// Always [`PolicyError::NotBuiltIn`].
    pub fn compile(_rego: &str) -> Result<Self, PolicyError> {
        Err(PolicyError::NotBuiltIn)
    }

    pub fn allows_failures(&self) -> bool {
        match *self {}
    }

    pub fn decide(
        &mut self,
        _request: &str,
        _input: &serde_json::Value,
    ) -> Result<(bool, String), PolicyError> {
        match *self {}
    }
}
