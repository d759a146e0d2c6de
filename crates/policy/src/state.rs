//! Per-Lua-state context and the data shared by every state of one engine.

use crate::config::InitConfig;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Shared {
    /// `Some` only while the `init` event runs: listener, spool and log
    /// definitions land here.
    pub init: Mutex<Option<InitConfig>>,
    /// `policy-extras.shaping`'s data, shared with delivery.
    pub shaping: Arc<crate::helpers::shaping::Registry>,
    /// `kumo.make_throttle`'s throttles.
    pub throttles: Arc<crate::throttle_object::Throttles>,
    /// Key files (and key directories) the helpers named, with the helper:
    /// start-up checks who may read them.
    pub key_files: Mutex<Vec<(String, PathBuf)>>,
    /// `policy-extras.posture`'s data.
    pub posture: Mutex<Option<Arc<crate::helpers::posture::PostureConfig>>>,
    /// The inbound checks' resolver, once the daemon has one.
    pub authn: std::sync::OnceLock<ironpost_authn::Authenticator>,
    /// Every source `policy-extras.sources` defines, for the SPF record.
    pub defined_sources: Mutex<Vec<crate::egress_source::EgressSource>>,
}

pub struct StateCtx {
    pub shared: Arc<Shared>,
    /// Directory of the policy file; `require` resolves inside it. `None`
    /// for the built-in default policy.
    pub policy_dir: Option<PathBuf>,
}

pub const HANDLERS_KEY: &str = "ironpost.handlers";
