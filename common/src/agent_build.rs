//! What a hull-agent binary was built with, as `hull-agent --version` prints it: a first
//! line naming the agent and its version, then a line listing the cargo features compiled
//! in (`features: policy`, or `features: none`). hull-image reads it to refuse an image
//! policy for an agent built without the policy engine.

use alloc::string::String;
use alloc::vec::Vec;

/// The flag that makes hull-agent print its build and exit.
pub const VERSION_FLAG: &str = "--version";

/// The agent policy engine (cargo feature `policy` of hull-agent).
pub const POLICY_FEATURE: &str = "policy";

const FEATURES_PREFIX: &str = "features:";
const NO_FEATURES: &str = "none";

/// The `--version` text of an agent of `version` built with `features`.
pub fn version_text(version: &str, features: &[&str]) -> String {
    let listed = if features.is_empty() {
        String::from(NO_FEATURES)
    } else {
        features.join(" ")
    };
    alloc::format!("hull-agent {version}\n{FEATURES_PREFIX} {listed}\n")
}

/// The features listed in a `--version` text; `None` when it has no features line (not a
/// hull-agent, or one older than the line).
pub fn features_of(version_text: &str) -> Option<Vec<String>> {
    let line = version_text
        .lines()
        .find_map(|line| line.trim().strip_prefix(FEATURES_PREFIX))?;
    Some(
        line.split_whitespace()
            .filter(|feature| *feature != NO_FEATURES)
            .map(String::from)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_features_read_back_are_the_ones_written() {
        let with = version_text("0.1.0", &[POLICY_FEATURE]);
        assert_eq!(with, "hull-agent 0.1.0\nfeatures: policy\n");
        assert_eq!(
            features_of(&with),
            Some(alloc::vec![String::from("policy")])
        );
        let without = version_text("0.1.0", &[]);
        assert_eq!(without, "hull-agent 0.1.0\nfeatures: none\n");
        assert_eq!(features_of(&without), Some(Vec::new()));
        assert_eq!(features_of("kata-agent version 3.2\n"), None);
        assert_eq!(features_of(""), None);
    }
}
