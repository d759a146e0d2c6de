//! Starting the policy engine on a policy text, for the policy test files.
#![allow(dead_code)]

use ironpost_policy::{EngineOptions, InitConfig, PolicyEngine, PolicySource};

/// Starts an engine on `policy` (written as `policy.lua` in a fresh
/// directory, so errors name `policy.lua:N`); the error's text on failure.
pub fn start(policy: &str) -> Result<(PolicyEngine, InitConfig), String> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy.lua");
    std::fs::write(&p, policy).unwrap();
    PolicyEngine::start(
        PolicySource::File(p),
        EngineOptions {
            pool_size: 1,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())
}
